"""Turn prompt arguments, prompts files and class ids into a run's conditions (`models.pipeline.requests`)."""

import json
import re
from pathlib import Path
from typing import Any

from models.errors import InvalidClassLabelError, InvalidPromptError, PromptsFileError
from models.pipeline.requests import Condition

JSONL_SUFFIXES = (".jsonl", ".ndjson")
_CLASS_RANGE = re.compile(r"(\d+)(?:-(\d+))?")


def gather_conditions(
    prompts: list[str] | None, prompts_file: Path | None, class_values: list[str] | None
) -> list[Condition]:
    """The run's conditions from prompt arguments, a prompts file (after them) or `--class` values."""
    if class_values and (prompts or prompts_file):
        raise InvalidPromptError("give prompts (text-to-image) or --class ids (class-conditional), not both")
    if class_values:
        return [Condition(class_label=label) for label in parse_class_ids(class_values)]
    if any(not prompt.strip() for prompt in prompts or []):
        raise InvalidPromptError("a prompt is empty; pass non-empty text, or --class ids for a class-conditional model")
    conditions = [Condition(prompt=prompt.strip()) for prompt in prompts or []]
    if prompts_file is not None:
        conditions += read_prompts_file(prompts_file)
    if not conditions:
        raise InvalidPromptError("nothing to generate: give a prompt, --prompts-file or --class ids")
    return conditions


def parse_class_ids(values: list[str]) -> list[int]:
    """Class ids from `--class` values: `207`, a range `0-999` (inclusive) or a comma list `1,2,5-7`."""
    labels = []
    for value in values:
        for part in str(value).split(","):
            match = _CLASS_RANGE.fullmatch(part.strip())
            if match is None:
                raise InvalidClassLabelError(f"--class {value!r}: expected an id like 207 or a range like 0-999")
            first, last = int(match.group(1)), int(match.group(2) or match.group(1))
            if last < first:
                raise InvalidClassLabelError(f"--class {value!r}: the range {first}-{last} is empty")
            labels.extend(range(first, last + 1))
    return labels


def read_prompts_file(path: Path) -> list[Condition]:
    """Read prompts: `.jsonl` = one JSON object per line, anything else = one prompt per non-blank line.

    A JSON line needs a non-empty string `prompt`; optional keys are `negative_prompt` (string), `seed`
    (integer ≥ 0) and `n` (images for this prompt, ≥ 1). Other keys are ignored, so GenEval's
    `metadata.jsonl` can be used as it is.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as error:
        raise PromptsFileError(f"prompts file {path} is not UTF-8 text: {error}") from error
    except OSError as error:
        raise PromptsFileError(f"cannot read prompts file {path}: {error.strerror or error}") from error
    if Path(path).suffix.lower() in JSONL_SUFFIXES:
        conditions = [_parse_json_line(line, path, number) for number, line in enumerate(text.splitlines(), 1) if line.strip()]
    else:
        conditions = [Condition(prompt=line.strip()) for line in text.splitlines() if line.strip()]
    if not conditions:
        raise PromptsFileError(f"prompts file {path} has no prompts (it is empty or blank)")
    return conditions


def _parse_json_line(line: str, path: Path, number: int) -> Condition:
    where = f"{path}:{number}"
    try:
        data = json.loads(line)
    except json.JSONDecodeError as error:
        raise PromptsFileError(f"{where}: not valid JSON ({error.msg} at column {error.colno})") from error
    if not isinstance(data, dict):
        raise PromptsFileError(f"{where}: expected a JSON object like {{\"prompt\": \"a cat\"}}")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise PromptsFileError(f"{where}: \"prompt\" must be a non-empty string")
    negative = _typed(data, "negative_prompt", str, where)
    seed = _typed(data, "seed", int, where)
    count = _typed(data, "n", int, where)
    if seed is not None and seed < 0:
        raise PromptsFileError(f"{where}: \"seed\" must be ≥ 0")
    if count is not None and count < 1:
        raise PromptsFileError(f"{where}: \"n\" must be ≥ 1")
    return Condition(prompt=prompt.strip(), negative_prompt=negative, seed=seed, num_images=count)


def _typed(data: dict[str, Any], key: str, kind: type, where: str) -> Any:
    value = data.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise PromptsFileError(f"{where}: \"{key}\" must be {'an integer' if kind is int else 'a string'}")
    return value
