"""Where each image goes, whether an existing file is a finished image of this run, and atomic writes.

`-o/--output` is one of: a folder (files named by `DEFAULT_TEMPLATE` inside it), a `.png` file name (only
when one image is made), or a template with `{index}`, `{seed}`, `{prompt_slug}` and `{class}` placeholders
(format specs work: `{index:05d}`). Files are written to a temp file beside the target and renamed, so a
crash, a full disk or Ctrl-C never leaves a truncated PNG; an existing PNG that holds the same image recipe
is a finished image and is skipped, which is how re-running a command resumes it.
"""

import os
import re
import string
import tempfile
import unicodedata
from pathlib import Path

from models.errors import MetadataError, OutputError
from models.pipeline.requests import ImageRequest
from models.runs.metadata import ImageMetadata, png_info, read_metadata

PNG_SUFFIX = ".png"
LATENTS_SUFFIX = ".latents.safetensors"
DEFAULT_TEMPLATE = "{index:05d}-{seed}-{prompt_slug}.png"
PLACEHOLDERS = ("index", "seed", "prompt_slug", "class")
SLUG_LENGTH = 48  # keeps file names readable and far below the 255-byte limit of common file systems


def prompt_slug(job: ImageRequest) -> str:
    """`a-cat-on-a-sofa` for a prompt, `class-207` for a class id (ASCII letters, digits and dashes)."""
    if job.prompt is None:
        return f"class-{job.class_label}"
    ascii_text = unicodedata.normalize("NFKD", job.prompt).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    return slug[:SLUG_LENGTH].rstrip("-") or "prompt"


def _template_fields(template: str) -> list[str]:
    try:
        return [field for _, field, _, _ in string.Formatter().parse(template) if field is not None]
    except ValueError as error:
        raise OutputError(f"output template {template!r} is malformed: {error}") from error


def _render(template: str, job: ImageRequest) -> str:
    values = {"index": job.index, "seed": job.seed, "prompt_slug": prompt_slug(job), "class": job.class_label}
    if job.class_label is None and "class" in _template_fields(template):
        raise OutputError(f"output template {template!r} uses {{class}}, but this run has prompts, not class ids")
    try:
        return template.format(**values)
    except (ValueError, TypeError) as error:
        raise OutputError(f"output template {template!r} cannot be filled: {error}") from error


def plan_outputs(output: str | Path, jobs: list[ImageRequest]) -> dict[int, Path]:
    """Map each job's index to its PNG path, or raise OutputError if the output cannot hold these images.

    Args:
        output: the `-o/--output` value (folder, `.png` file name, or template).
        jobs: every image of the run (all ranks), so the check is the same on every rank.
    """
    text = str(output)
    fields = _template_fields(text)
    unknown = sorted(set(fields) - set(PLACEHOLDERS))
    if unknown or "" in fields:
        raise OutputError(
            f"output template {text!r} has unknown placeholders {unknown or ['{}']}; use "
            + ", ".join(f"{{{name}}}" for name in PLACEHOLDERS)
        )
    is_file = text.lower().endswith(PNG_SUFFIX)
    if fields and not is_file:
        raise OutputError(f"output template {text!r} must end in {PNG_SUFFIX}")
    if is_file and not fields:
        if len(jobs) != 1:
            raise OutputError(
                f"-o {text} names one file but this run makes {len(jobs)} images; use a folder or a template "
                "such as out/{index:05d}.png"
            )
        return {jobs[0].index: Path(text)}
    template = text if fields else str(Path(text) / DEFAULT_TEMPLATE)
    paths = {job.index: Path(_render(template, job)) for job in jobs}
    if len(set(paths.values())) != len(paths):
        raise OutputError(f"output template {text!r} gives several images the same file name; add {{index}}")
    return paths


def check_writable(folders: set[Path]) -> None:
    """Create the output folders and prove a file can be made in each (before any model is loaded)."""
    for folder in sorted(folders):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(dir=folder, prefix=".lina-write-test-")
            os.close(fd)
            os.unlink(probe)
        except OSError as error:
            raise OutputError(f"cannot write to output folder {folder}: {error.strerror or error}") from error


def latents_path(png_path: Path) -> Path:
    """`out/00001-5-cat.png` → `out/00001-5-cat.latents.safetensors`."""
    return png_path.with_name(png_path.name[: -len(PNG_SUFFIX)] + LATENTS_SUFFIX)


def is_finished(path: Path, metadata: ImageMetadata, *, overwrite: bool) -> bool:
    """Whether `path` already holds this image; raise OutputError if it holds something else.

    Args:
        path: target PNG.
        metadata: the recipe of the image meant for `path`.
        overwrite: replace whatever is there (always returns False).
    """
    if overwrite or not path.exists():
        return False
    try:
        existing = read_metadata(path)
    except MetadataError as error:
        raise OutputError(f"{path} exists and is not an image of this run ({error}); it is never overwritten") from error
    if existing.recipe() != metadata.recipe():
        raise OutputError(f"{path} exists with other settings (seed, prompt, model or sampler); it is never overwritten")
    return True


def save_png(image, path: Path, metadata: ImageMetadata) -> None:
    """Write a PIL image as PNG with its `parameters` and `lina` text chunks, atomically (temp file + rename)."""
    from models.files import write_atomic

    write_atomic(path, lambda tmp: image.save(tmp, format="PNG", pnginfo=png_info(metadata)))
