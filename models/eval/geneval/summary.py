"""The GenEval score of a `results.jsonl`, and a check that its verdicts follow from its own detections.

`summarize` computes what GenEval's `evaluation/summary_scores.py` prints: images, prompts, the share of
correct images, the share of prompts with at least one correct image, each task's accuracy, and the overall
score, the unweighted mean of the task accuracies. `verify` re-judges every line from its recorded kept
detections (`details`) and `metadata` with `rules`, and compares with the recorded verdict and reason.
A colour clause needs the image (GenEval classifies the colour of the masked crop with CLIP), so lines whose
judgement reaches one are counted as colour-dependent instead of checked.
"""

import json
import re
from dataclasses import dataclass, field
from typing import Any

from models.errors import GenEvalFileError, MissingColourError
from models.eval.geneval.prompts import TAGS, metadata_problem
from models.eval.geneval.results import ResultLine
from models.eval.geneval.rules import DEFAULT_RULES, RELATIONS, RuleSettings, Verdict, evaluate, filter_detections


@dataclass(frozen=True)
class TaskScore:
    """One task's images and how many of them were judged correct."""

    tag: str
    correct: int
    images: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.images


@dataclass(frozen=True)
class Summary:
    """The numbers of GenEval's `summary_scores.py` for one results file.

    Attributes:
        images, prompts: how many lines, and how many distinct prompt metadata among them.
        correct_images: share of images judged correct.
        correct_prompts: share of prompts with at least one correct image.
        tasks: per-task scores, GenEval's six tasks first in their usual order, then any other tag.
        overall: the mean of the task accuracies (GenEval's overall score).
    """

    images: int
    prompts: int
    correct_images: float
    correct_prompts: float
    tasks: tuple[TaskScore, ...]
    overall: float

    @property
    def missing_tasks(self) -> tuple[str, ...]:
        """GenEval tasks with no image in the file; the overall score is then not comparable with GenEval's."""
        present = {task.tag for task in self.tasks}
        return tuple(tag for tag in TAGS if tag not in present)

    def to_json(self) -> dict[str, Any]:
        return {
            "overall": self.overall,
            "tasks": {task.tag: task.accuracy for task in self.tasks},
            "images": self.images,
            "prompts": self.prompts,
            "correct_images": self.correct_images,
            "correct_prompts": self.correct_prompts,
        }


def summarize(lines: list[ResultLine]) -> Summary:
    """GenEval's summary of a results file's lines (at least one)."""
    if not lines:
        raise GenEvalFileError("no result lines to summarise")
    by_tag: dict[str, list[bool]] = {}
    by_prompt: dict[str, bool] = {}
    for line in lines:
        by_tag.setdefault(line.tag, []).append(line.correct)
        # GenEval groups prompts by their metadata string; sorted keys make equal metadata equal strings
        key = json.dumps(line.metadata, sort_keys=True)
        by_prompt[key] = by_prompt.get(key, False) or line.correct
    order = [tag for tag in TAGS if tag in by_tag] + [tag for tag in by_tag if tag not in TAGS]
    tasks = tuple(TaskScore(tag, sum(by_tag[tag]), len(by_tag[tag])) for tag in order)
    return Summary(
        images=len(lines),
        prompts=len(by_prompt),
        correct_images=sum(line.correct for line in lines) / len(lines),
        correct_prompts=sum(by_prompt.values()) / len(by_prompt),
        tasks=tasks,
        overall=sum(task.accuracy for task in tasks) / len(tasks),
    )


# ----------------------------------------------------------------------------------------------------
# Verification
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Disagreement:
    """A line whose recorded verdict or reason differs from the one our rules derive from its details."""

    filename: str
    recorded: Verdict
    derived: Verdict


@dataclass(frozen=True)
class VerifyReport:
    """How many lines were re-judged, how many agreed, and how many needed colours and were not re-judged."""

    checked: int
    agree: int
    colour_dependent: int
    disagreements: tuple[Disagreement, ...] = field(default=())

    def to_json(self) -> dict[str, int]:
        return {"checked": self.checked, "agree": self.agree, "colour_dependent": self.colour_dependent}


def verify(lines: list[ResultLine], *, settings: RuleSettings = DEFAULT_RULES) -> VerifyReport:
    """Re-judge every line from its `details` and `metadata`, and compare with its recorded verdict.

    The recorded detections first go through `filter_detections` again, so a file made with other
    thresholds or caps shows up as disagreements. Verdicts agree when `correct` is equal and the reasons
    are equal, up to the order of relations in a position reason (GenEval lists them from a Python set,
    whose order varies between runs).

    Raises:
        GenEvalFileError: a line's metadata cannot be judged; the message names the line's image.
    """
    checked = agree = colour_dependent = 0
    disagreements = []
    for line in lines:
        problem = metadata_problem(line.metadata)
        if problem:
            raise GenEvalFileError(f"{line.filename}: its metadata cannot be judged: {problem}")
        kept = filter_detections(line.detections(), line.metadata["tag"], settings=settings)
        try:
            derived = evaluate(kept, line.metadata, None, settings=settings)
        except MissingColourError:
            colour_dependent += 1
            continue
        checked += 1
        recorded = Verdict(line.correct, line.reason)
        if derived.correct == recorded.correct and _normalised(derived.reason) == _normalised(recorded.reason):
            agree += 1
        else:
            disagreements.append(Disagreement(line.filename, recorded, derived))
    return VerifyReport(checked, agree, colour_dependent, tuple(disagreements))


_POSITION_REASON = re.compile(rf"^(expected .+ (?:{'|'.join(RELATIONS)}) target, found )(.*)( target)$")


def _normalised(reason: str) -> list[str]:
    """A reason's lines, with the relations found in a position reason sorted."""
    lines = []
    for text in reason.split("\n"):
        match = _POSITION_REASON.match(text)
        if match:
            relations = sorted(match.group(2).split(" and ")) if match.group(2) else []
            text = match.group(1) + " and ".join(relations) + match.group(3)
        lines.append(text)
    return lines


def score_json(summary: Summary, report: VerifyReport | None = None) -> dict[str, Any]:
    """The machine-readable score: the summary, plus `verify` counts when a verification ran."""
    data = summary.to_json()
    if report is not None:
        data["verify"] = report.to_json()
    return data
