"""GenEval's image folder layout: one numbered folder per prompt, its metadata, and its numbered samples.

    <out>/<index:05d>/metadata.jsonl        the prompt's metadata line, as ONE JSON object (GenEval's name)
    <out>/<index:05d>/samples/<j:05d>.png   the j-th image of the prompt

GenEval's `evaluate_images.py` scores every sub-folder whose name is all digits, and in its `samples/`
every file whose name starts with digits followed by `.png` (`re.match(r"\\d+\\.png", name)`); the
listing functions here select the same files, in numeric order.
"""

import json
import re
from pathlib import Path
from typing import Any

from models.errors import GenEvalFileError
from models.files import write_atomic

METADATA_NAME = "metadata.jsonl"
SAMPLES_NAME = "samples"
# A prefix match, as GenEval's re.match is: it selects the same files GenEval scores.
IMAGE_NAME = re.compile(r"\d+\.png")


def prompt_folder(out: Path, index: int) -> Path:
    """The folder of prompt `index` (its line number in the metadata file, from 0)."""
    return out / f"{index:05d}"


def sample_path(out: Path, index: int, sample: int) -> Path:
    """Where image `sample` (from 0) of prompt `index` goes."""
    return prompt_folder(out, index) / SAMPLES_NAME / f"{sample:05d}.png"


def write_prompt_metadata(out: Path, index: int, metadata: dict[str, Any]) -> Path:
    """Write prompt `index`'s metadata file atomically (the folders are created) and return its path."""
    path = prompt_folder(out, index) / METADATA_NAME
    text = json.dumps(metadata, ensure_ascii=False) + "\n"
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return path


def read_prompt_metadata(folder: Path) -> dict[str, Any]:
    """Read one prompt folder's metadata file (one JSON object).

    Raises:
        GenEvalFileError: the file is missing or does not hold one JSON object.
    """
    path = folder / METADATA_NAME
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise GenEvalFileError(f"{path}:{error.lineno}: not one JSON object ({error.msg})") from None
    if not isinstance(data, dict):
        raise GenEvalFileError(f"{path}: expected one JSON object with tag, include and prompt")
    return data


def prompt_folders(out: Path) -> list[tuple[int, Path]]:
    """The (index, folder) of every prompt folder GenEval would score under `out`, by index."""
    if not out.is_dir():
        raise GenEvalFileError(f"{out}: no such folder; expected a GenEval image folder (<index:05d>/samples/*.png)")
    found = [
        (int(child.name), child)
        for child in out.iterdir()
        if child.is_dir() and child.name.isascii() and child.name.isdigit()
    ]
    return sorted(found)


def sample_images(folder: Path) -> list[Path]:
    """The images of one prompt folder that GenEval scores, in numeric order of their leading digits."""
    samples = folder / SAMPLES_NAME
    if not samples.is_dir():
        return []
    images = [path for path in samples.iterdir() if path.is_file() and IMAGE_NAME.match(path.name)]
    return sorted(images, key=lambda path: (int(IMAGE_NAME.match(path.name).group()[: -len(".png")]), path.name))


def read_text(path: Path) -> str:
    """A GenEval text file's content, with one clear error when it cannot be read."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise GenEvalFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise GenEvalFileError(f"{path}: is a folder, expected a file") from None
    except UnicodeDecodeError as error:
        raise GenEvalFileError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
