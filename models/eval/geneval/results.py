"""GenEval's `results.jsonl`: one JSON line per scored image, read and written in GenEval's own format.

Each line holds the keys GenEval's `evaluate_images.py` writes, in its order:
    filename   the image's path
    tag        the prompt's task (single_object, two_object, counting, colors, position, color_attr)
    prompt     the prompt text of the metadata (not the rewritten one a model may have been conditioned on)
    correct    the verdict, true or false
    reason     the failed clauses, one per line ("" when correct)
    metadata   the prompt's metadata line, as a JSON *string*
    details    the kept detections as a JSON *string*: {class: [[x1, y1, x2, y2, score], ...]}, best first
`metadata` and `details` are strings inside the line because GenEval stores them so; reading also accepts
them as plain JSON objects, which other tools write.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import GenEvalFileError
from models.eval.geneval.layout import read_text
from models.eval.geneval.rules import Detection, Verdict
from models.files import write_atomic

KEYS = ("filename", "tag", "prompt", "correct", "reason", "metadata", "details")


@dataclass(frozen=True)
class ResultLine:
    """One scored image, with `metadata` and `details` decoded from their JSON strings."""

    filename: str
    tag: str
    prompt: str
    correct: bool
    reason: str
    metadata: dict[str, Any]
    details: dict[str, list[list[float]]]

    @classmethod
    def from_verdict(
        cls, filename: str, metadata: dict[str, Any], kept: dict[str, list[Detection]], verdict: Verdict
    ) -> "ResultLine":
        """The line of one image judged by `rules.evaluate` on the `kept` detections."""
        return cls(
            filename=filename,
            tag=metadata["tag"],
            prompt=metadata["prompt"],
            correct=verdict.correct,
            reason=verdict.reason,
            metadata=metadata,
            details=details_from_detections(kept),
        )

    def detections(self) -> dict[str, list[Detection]]:
        """The kept detections recorded in `details` (boxes and scores; masks and colours are not recorded)."""
        return {
            name: [Detection(box=(row[0], row[1], row[2], row[3]), score=row[4]) for row in rows]
            for name, rows in self.details.items()
        }

    def to_json(self) -> dict[str, Any]:
        """The line as GenEval writes it, `metadata` and `details` encoded as JSON strings."""
        return {
            "filename": self.filename,
            "tag": self.tag,
            "prompt": self.prompt,
            "correct": self.correct,
            "reason": self.reason,
            "metadata": json.dumps(self.metadata),
            "details": json.dumps(self.details),
        }


def details_from_detections(kept: dict[str, list[Detection]]) -> dict[str, list[list[float]]]:
    """GenEval's `details` value: per class, each kept box followed by its score, in kept order."""
    return {name: [[*map(float, d.box), float(d.score)] for d in detections] for name, detections in kept.items()}


def read_results(path: Path) -> list[ResultLine]:
    """Read a GenEval `results.jsonl` written by GenEval, by lina, or by any tool using GenEval's format.

    Raises:
        GenEvalFileError: the file is missing or empty, or a line lacks a key or has a value of the wrong
            kind; the message names the file, the line and the key.
    """
    lines = []
    for number, text in enumerate(read_text(path).splitlines(), start=1):
        if text.strip():
            lines.append(_parse_line(text, f"{path}:{number}"))
    if not lines:
        raise GenEvalFileError(f"{path}: holds no result lines; expected GenEval's results.jsonl")
    return lines


def write_results(path: Path, lines: list[ResultLine]) -> None:
    """Write a `results.jsonl` atomically, one compact JSON object per line, keys in GenEval's order."""
    text = "".join(json.dumps(line.to_json(), ensure_ascii=False, separators=(",", ":")) + "\n" for line in lines)
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _parse_line(text: str, where: str) -> ResultLine:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise GenEvalFileError(f"{where}: not valid JSON ({error.msg})") from None
    if not isinstance(data, dict):
        raise GenEvalFileError(f"{where}: expected a JSON object with keys {', '.join(KEYS)}")
    missing = [key for key in KEYS if key not in data]
    if missing:
        raise GenEvalFileError(f"{where}: missing key(s) {', '.join(missing)}; GenEval's lines have {', '.join(KEYS)}")
    for key in ("filename", "tag", "prompt", "reason"):
        if not isinstance(data[key], str):
            raise GenEvalFileError(f"{where}: {key!r} should be a string, got {data[key]!r}")
    if not isinstance(data["correct"], bool):
        raise GenEvalFileError(f"{where}: 'correct' should be true or false, got {data['correct']!r}")
    metadata = _json_value(data["metadata"], "metadata", where)
    details = _json_value(data["details"], "details", where)
    for name, rows in details.items():
        well_formed = isinstance(rows, list) and all(
            isinstance(row, list) and len(row) >= 5 and all(_is_number(value) for value in row) for row in rows
        )
        if not well_formed:
            raise GenEvalFileError(f"{where}: details of {name!r} should be [[x1, y1, x2, y2, score], ...]")
    return ResultLine(
        filename=data["filename"],
        tag=data["tag"],
        prompt=data["prompt"],
        correct=data["correct"],
        reason=data["reason"],
        metadata=metadata,
        details={name: [[float(value) for value in row[:5]] for row in rows] for name, rows in details.items()},
    )


def _json_value(value: Any, key: str, where: str) -> dict[str, Any]:
    """A `metadata` or `details` value: a JSON string (GenEval) or an object (other tools), decoded to a dict."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as error:
            raise GenEvalFileError(f"{where}: {key!r} is not valid JSON ({error.msg})") from None
    if not isinstance(value, dict):
        raise GenEvalFileError(f"{where}: {key!r} should hold a JSON object, got {type(value).__name__}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
