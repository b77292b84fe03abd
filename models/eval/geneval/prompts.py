"""GenEval's prompts: its `evaluation_metadata.jsonl`, and the authors' file of rewritten (dense) prompts.

`evaluation_metadata.jsonl` (github.com/djghosh13/geneval, `prompts/`) holds one JSON object per line:
`{"tag": ..., "include": [{"class", "count", "color"?, "position"?: [relation, group]}], "exclude"?: [{"class",
"count"}], "prompt": ...}`; the line number (from 0) is the prompt's index and names its output folder.
The LINA authors condition on LLM-rewritten prompts (their repository's `evaluations/geneval/prompts.json`,
a JSON list of `{"id", "prompt", "dense_prompt"}`) while scoring against the original metadata.
"""

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import GenEvalFileError
from models.eval.geneval.layout import read_text
from models.eval.geneval.rules import COLOURS, RELATIONS

TAGS = ("single_object", "two_object", "counting", "colors", "position", "color_attr")


@dataclass(frozen=True)
class RewrittenPrompt:
    """One entry of a rewritten-prompts file: the original prompt and the dense one generated from it."""

    id: int
    prompt: str
    dense_prompt: str


def read_metadata(path: Path, check: Callable[[Any], str | None] | None = None) -> list[dict[str, Any]]:
    """Read and check GenEval's `evaluation_metadata.jsonl`: one prompt's metadata per non-blank line.

    The dicts are returned as read (key order kept), since results files store them verbatim.

    Args:
        check: a further rule for each line, asked first (e.g. the shapes detector's vocabulary); it returns what
            is wrong in words, or None.

    Raises:
        GenEvalFileError: the file is missing or empty, or a line is not valid metadata; the message names
            the file and the line.
    """
    text = read_text(path)
    entries = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
        except json.JSONDecodeError as error:
            raise GenEvalFileError(
                f"{path}:{number}: not valid JSON ({error.msg}); write one metadata object per line, "
                f'e.g. {{"tag": "colors", "include": [{{"class": "circle", "count": 1, "color": "red"}}], '
                f'"prompt": "a photo of a red circle"}}'
            ) from None
        problem = (check(entry) if check is not None else None) or metadata_problem(entry)
        if problem:
            raise GenEvalFileError(f"{path}:{number}: {problem}")
        entries.append(entry)
    if not entries:
        raise GenEvalFileError(
            f"{path}: holds no prompts (no metadata lines); write one GenEval metadata object per line "
            "(evaluation_metadata.jsonl format)"
        )
    return entries


def metadata_problem(entry: Any) -> str | None:
    """What is wrong with one prompt's metadata, in words, or None when the rule engine can judge it."""
    if not isinstance(entry, dict):
        return "expected a JSON object with tag, include and prompt"
    for key, kind in (("tag", str), ("prompt", str), ("include", list)):
        if not isinstance(entry.get(key), kind):
            return f"{key!r} is missing or not a {kind.__name__}"
    if not entry["include"]:
        return "'include' is empty; a prompt needs at least one object"
    for index, clause in enumerate(entry["include"]):
        problem = _clause_problem(clause, index, "include")
        if problem:
            return problem
    if "exclude" in entry:
        if not isinstance(entry["exclude"], list):
            return "'exclude' is not a list"
        for index, clause in enumerate(entry["exclude"]):
            problem = _clause_problem(clause, index, "exclude")
            if problem:
                return problem
    return None


def _clause_problem(clause: Any, index: int, kind: str) -> str | None:
    where = f"{kind} clause {index}"
    if not isinstance(clause, dict):
        return f"{where} is not an object"
    if not isinstance(clause.get("class"), str) or not clause["class"]:
        return f"{where} has no 'class' name"
    count = clause.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        return f"{where} ({clause['class']}) needs a positive integer 'count', got {count!r}"
    if kind == "exclude":
        return None
    if "color" in clause and clause["color"] not in COLOURS:
        return f"{where} ({clause['class']}) has colour {clause['color']!r}; expected one of {', '.join(COLOURS)}"
    if "position" in clause:
        position = clause["position"]
        if (
            not isinstance(position, list)
            or len(position) != 2
            or position[0] not in RELATIONS
            or not isinstance(position[1], int)
            or not 0 <= position[1] < index
        ):
            return (
                f"{where} ({clause['class']}) has position {position!r}; expected [relation, group] with relation "
                f"one of {', '.join(RELATIONS)} and group the index of an earlier include clause"
            )
    return None


def read_rewritten(path: Path) -> list[RewrittenPrompt]:
    """Read a rewritten-prompts file: a JSON list of `{"id", "prompt", "dense_prompt"}` (the LINA authors' format).

    Raises:
        GenEvalFileError: the file is missing, is not such a list, or repeats an id; the message names the
            file and the entry.
    """
    text = read_text(path)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise GenEvalFileError(f"{path}:{error.lineno}: not valid JSON ({error.msg})") from None
    if not isinstance(data, list) or not data:
        raise GenEvalFileError(f"{path}: expected a non-empty JSON list of {{id, prompt, dense_prompt}} entries")
    entries: dict[int, RewrittenPrompt] = {}
    for position, item in enumerate(data):
        valid = (
            isinstance(item, dict)
            and isinstance(item.get("id"), int)
            and not isinstance(item["id"], bool)
            and all(isinstance(item.get(key), str) and item[key].strip() for key in ("prompt", "dense_prompt"))
        )
        if not valid:
            raise GenEvalFileError(
                f"{path}: entry {position} is not {{\"id\": int, \"prompt\": str, \"dense_prompt\": str}} "
                "with non-empty prompts"
            )
        if item["id"] in entries:
            raise GenEvalFileError(f"{path}: entry {position} repeats id {item['id']}")
        entries[item["id"]] = RewrittenPrompt(item["id"], item["prompt"], item["dense_prompt"])
    return sorted(entries.values(), key=lambda entry: entry.id)


def conditioning_prompts(
    metadata: list[dict[str, Any]], rewritten: list[RewrittenPrompt] | None, source: Path | None = None
) -> list[str]:
    """The text each metadata line is generated from: its own prompt, or its rewritten entry's dense prompt.

    A rewritten entry is matched by id (the metadata line's index) and must repeat that line's prompt, so a
    file made for another metadata order is refused rather than silently mismatched.

    Raises:
        GenEvalFileError: an index has no rewritten entry, or the entry's prompt is not the metadata's.
    """
    if rewritten is None:
        return [entry["prompt"] for entry in metadata]
    by_id = {entry.id: entry for entry in rewritten}
    name = source if source is not None else "the rewritten prompts"
    prompts = []
    for index, entry in enumerate(metadata):
        match = by_id.get(index)
        if match is None:
            raise GenEvalFileError(f"{name}: no entry with id {index} (metadata prompt {entry['prompt']!r})")
        if match.prompt != entry["prompt"]:
            raise GenEvalFileError(
                f"{name}: entry {index} rewrites {match.prompt!r}, but metadata line {index + 1} is "
                f"{entry['prompt']!r}; the file was made for another metadata file"
            )
        prompts.append(match.dense_prompt)
    return prompts

