"""The shapes benchmark: generate a prompt set in GenEval's layout, score it with the shapes detector.

`evaluate_shapes` makes `images_per_prompt` images of each of `evaluation_prompts()` (or of your own set,
read by `read_prompt_file`) with a pipeline and writes them in GenEval's folder layout
(`<out>/<index:05d>/metadata.jsonl`, `samples/<j:05d>.png`);
`score_shapes_folder` judges every image of such a folder with GenEval's rules on the detector's
detections, writes GenEval's `results.jsonl` and returns GenEval's summary (per-task accuracy, overall =
their mean). `write_ground_truth` renders the prompts themselves, which a correct scorer must pass.
"""

import random
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from models.data.shapes import DEFAULT_IMAGE_SIZE
from models.data.shapes_prompts import evaluation_prompts
from models.data.shapes_render import render_scene
from models.data.shapes_vocab import COLOUR_NAMES, SHAPES
from models.errors import GenEvalFileError, OutputError
from models.eval.geneval.layout import (
    METADATA_NAME,
    prompt_folders,
    read_prompt_metadata,
    sample_images,
    sample_path,
    write_prompt_metadata,
)
from models.eval.geneval.prompts import metadata_problem, read_metadata
from models.eval.geneval.results import ResultLine, write_results
from models.eval.geneval.rules import Detection, Verdict, evaluate, filter_detections
from models.eval.geneval.summary import Summary, summarize
from models.eval.shapes.detector import detect_shapes
from models.files import write_atomic

if TYPE_CHECKING:
    from models.pipeline.pipeline import LinaPipeline
    from models.runs.generation import GenerationEvents

RESULTS_NAME = "results.jsonl"
DEFAULT_IMAGES_PER_PROMPT = 4


def read_prompt_file(path: Path) -> list[dict[str, Any]]:
    """Read a prompt set of your own: GenEval's `evaluation_metadata.jsonl` format, in the shapes' words.

    One metadata dict per non-blank line, `{"tag", "include": [...], "exclude"?: [...], "prompt"}`, the form
    `evaluation_prompts()` returns; line i (from 0, blank lines skipped) becomes prompt folder i. Every
    `class` must be one of `SHAPES` and every `color` one of the palette's `COLOUR_NAMES`, since the
    detector sees nothing else; tags are free (GenEval's six are reported first).

    Returns:
        The dicts as read, key order kept (prompt folders and results store them verbatim).

    Raises:
        GenEvalFileError: the file is missing, unreadable or holds no prompt, or a line is not valid JSON,
            not valid GenEval metadata, or names a shape or colour the detector does not know; the message
            names the file and line and says what to write instead.
    """
    # The vocabulary first: an unknown colour should be told the palette, not GenEval's longer list.
    return read_metadata(Path(path), check=_vocabulary_problem)


def _vocabulary_problem(entry: Any) -> str | None:
    """A clause's shape or colour that the detector cannot see, in words with the fix; None when there is none.

    Only well-formed parts are looked at: what is malformed is `metadata_problem`'s to report.
    """
    clauses = [
        (f"{kind} clause {index}", clause)
        for kind in ("include", "exclude")
        if isinstance(entry, dict) and isinstance(entry.get(kind), list)
        for index, clause in enumerate(entry[kind])
        if isinstance(clause, dict)
    ]
    for where, clause in clauses:
        shape, colour = clause.get("class"), clause.get("color")
        if isinstance(shape, str) and shape not in SHAPES:
            return f"{where} has shape {shape!r}; use a shape the detector knows: {', '.join(SHAPES)}"
        if colour is not None and colour not in COLOUR_NAMES:
            return f"{where} has colour {colour!r}; use a palette colour: {', '.join(COLOUR_NAMES)}"
    return None


def score_image(image: Image.Image, metadata: dict[str, Any]) -> tuple[dict[str, list[Detection]], Verdict]:
    """GenEval's verdict on one image: the detector's detections, filtered for the prompt's task, then judged.

    Returns:
        The kept detections by shape and the verdict. Colours come classified on the detections (nearest
        palette colour), so GenEval's colour callback is not needed.
    """
    kept = filter_detections(detect_shapes(image), metadata["tag"])
    return kept, evaluate(kept, metadata)


def score_shapes_folder(folder: Path, results: Path | None = None) -> Summary:
    """Score every image of a GenEval-layout folder and write GenEval's `results.jsonl`.

    Args:
        folder: `<index:05d>/metadata.jsonl` and `<index:05d>/samples/*.png` per prompt.
        results: where the results go; default `<folder>/results.jsonl`.

    Returns:
        GenEval's summary: per-task accuracy and their mean, the overall score.

    Raises:
        GenEvalFileError: the folder holds no images, or a metadata file cannot be read or judged.
    """
    folder = Path(folder)
    lines = []
    for _, prompt_folder in prompt_folders(folder):
        metadata = read_prompt_metadata(prompt_folder)
        problem = metadata_problem(metadata)
        if problem:
            raise GenEvalFileError(f"{prompt_folder / METADATA_NAME}: {problem}")
        for path in sample_images(prompt_folder):
            with Image.open(path) as image:
                kept, verdict = score_image(image, metadata)
            lines.append(ResultLine.from_verdict(str(path), metadata, kept, verdict))
    if not lines:
        raise GenEvalFileError(f"{folder}: no images to score; expected <index:05d>/samples/<j:05d>.png folders")
    write_results(results if results is not None else folder / RESULTS_NAME, lines)
    return summarize(lines)


def evaluate_shapes(
    pipe: "LinaPipeline",
    out_dir: Path,
    images_per_prompt: int = DEFAULT_IMAGES_PER_PROMPT,
    seed: int = 0,
    *,
    ar_steps: int | None = None,
    diffusion_steps: int | None = None,
    cfg: float | None = None,
    prompts: list[dict[str, Any]] | None = None,
    batch_size: int = 1,
    events: "GenerationEvents | None" = None,
) -> Summary:
    """Generate the shapes prompt set with a text-to-image pipeline into `out_dir`, then score it.

    Generation goes through the resumable engine of `lina generate` (`models.eval.geneval.run.generate_geneval`):
    image j of prompt p uses seed `seed + p · images_per_prompt + j`, and running again finishes an interrupted
    folder.

    Args:
        pipe: a text-to-image pipeline, e.g. `load_pipeline("lina-shapes")`.
        out_dir: the GenEval-layout folder to write; `results.jsonl` goes in it too.
        images_per_prompt: images per prompt (GenEval uses 4).
        seed: the seed of the first image.
        ar_steps, diffusion_steps, cfg: sampler settings; None takes the model's defaults.
        prompts: GenEval-style metadata to generate (e.g. `read_prompt_file(path)`); default `evaluation_prompts()`.
        batch_size: images sampled together.
        events: receives the engine's progress (`models.runs.generation.GenerationEvents`); None: nothing.

    Returns:
        GenEval's summary of the images.

    Raises:
        OutputError: `out_dir` holds prompt folders of another prompt set (see `check_output_folder`).
    """
    from models.eval.geneval.run import generate_geneval
    from models.runs.generation import NoEvents, RunOptions

    out_dir = Path(out_dir)
    prompts = evaluation_prompts() if prompts is None else prompts
    check_output_folder(out_dir, prompts)
    generate_geneval(
        pipe, prompts, out_dir, settings=pipe.sampling_settings(ar_steps, diffusion_steps, cfg),
        options=RunOptions(batch_size=batch_size), events=events or NoEvents(),
        model=pipe.source.name if pipe.source is not None else "pipeline", images_per_prompt=images_per_prompt,
        seed=seed,
    )
    return score_shapes_folder(out_dir)


def check_output_folder(out_dir: Path, prompts: list[dict[str, Any]]) -> None:
    """Refuse a folder whose prompt folders are not those of `prompts` (same index, same metadata).

    Their images would be scored with the new ones; a folder of the same prompt set is a run to finish.

    Raises:
        OutputError: a prompt folder beyond the set, or one whose metadata is another prompt's.
    """
    if not Path(out_dir).is_dir():
        return
    for index, folder in prompt_folders(Path(out_dir)):
        if index >= len(prompts) or read_prompt_metadata(folder) != prompts[index]:
            raise OutputError(
                f"{out_dir} holds prompt folders of another prompt set (first: {folder.name}); choose a new or empty "
                f"folder, or score the images there alone (lina eval shapes --score-only {out_dir})"
            )


def write_ground_truth(
    out_dir: Path, size: int = DEFAULT_IMAGE_SIZE, images_per_prompt: int = DEFAULT_IMAGES_PER_PROMPT, seed: int = 0
) -> None:
    """Render the prompt set itself into GenEval's layout: what a perfect model would make.

    Image j of prompt p is drawn from its own `random.Random`, seeded by (seed, p, j).
    """
    out_dir = Path(out_dir)
    for index, metadata in enumerate(evaluation_prompts()):
        write_prompt_metadata(out_dir, index, metadata)
        for sample in range(images_per_prompt):
            rng = random.Random(f"shapes-eval/{seed}/{index}/{sample}")
            _save_png(render_scene(metadata, size, rng), sample_path(out_dir, index, sample))




def _save_png(image: Image.Image, path: Path) -> None:
    write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))
