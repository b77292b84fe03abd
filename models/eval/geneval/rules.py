"""GenEval's rules: which detections are kept, and whether the kept ones satisfy a prompt's clauses.

A pure rule engine, with no detector and no image: it reproduces `evaluate_image` (the filtering half) and
`evaluate` of GenEval's `evaluation/evaluate_images.py` (github.com/djghosh13/geneval) on detections that
any backend produced — Mask2Former, mmdetection, or the programmatic detector of the shapes benchmark.
Colour is the one judgement that needs pixels; it comes in through a callback, or already classified on
the detection.

Interface:
    Detection(box, score, mask=None, colour=None)   one detected object, box (x1, y1, x2, y2) in pixels
    filter_detections(raw, tag) -> kept              threshold, per-class cap, score order, optional NMS
    evaluate(kept, metadata, colour_of) -> Verdict   include/exclude clauses, colour, relative position
"""

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from models.errors import GenEvalFileError, MissingColourError

# The ten colour names GenEval's CLIP classifier chooses from, in its order (the order of colour reasons too).
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white")
# The relations a `position` clause can ask for, in the order our reasons list them.
RELATIONS = ("left of", "right of", "above", "below")
COUNTING_TAG = "counting"

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Detection:
    """One detected object.

    Args:
        box: (x1, y1, x2, y2) in pixels of the scored image.
        score: the detector's confidence in [0, 1].
        mask: the object's H×W boolean mask (any array type), which a colour classifier may use; None without one.
        colour: one of `COLOURS` when already classified; None lets `evaluate` ask its `colour_of` callback.
    """

    box: Box
    score: float
    mask: Any = field(default=None, compare=False)  # arrays do not compare to one bool
    colour: str | None = None


@dataclass(frozen=True)
class RuleSettings:
    """GenEval's tunables, defaulting to the values of its `evaluate_images.py` (its `--options` keys in brackets).

    Args:
        threshold: keep detections scoring strictly above this [threshold].
        counting_threshold: the same for prompts tagged `counting` [counting_threshold].
        max_objects: keep at most this many detections per class, the best first [max_objects].
        max_overlap: greedy NMS drops a box whose IoU with a kept one is ≥ this; 1.0 turns NMS off, as
            GenEval's default does [max_overlap].
        position_threshold: part of the two boxes' summed width (height) that a centre offset must exceed
            before it counts as left/right (above/below) [position_threshold].
    """

    threshold: float = 0.3
    counting_threshold: float = 0.9
    max_objects: int = 16
    max_overlap: float = 1.0
    position_threshold: float = 0.1

    def confidence_threshold(self, tag: str) -> float:
        return self.counting_threshold if tag == COUNTING_TAG else self.threshold


DEFAULT_RULES = RuleSettings()


@dataclass(frozen=True)
class Verdict:
    """GenEval's judgement of one image: correct or not, and the failed clauses in its words, one per line."""

    correct: bool
    reason: str


# A colour classifier: (detection, class name) → one of COLOURS. GenEval's is CLIP ViT-L-14 on the masked crop.
ColourClassifier = Callable[[Detection, str], str]


# ----------------------------------------------------------------------------------------------------
# Which detections are kept
# ----------------------------------------------------------------------------------------------------


def filter_detections(
    raw: dict[str, list[Detection]], tag: str, *, settings: RuleSettings = DEFAULT_RULES
) -> dict[str, list[Detection]]:
    """Keep the detections GenEval keeps, per class, best score first.

    Scores must be strictly above the threshold (the counting one for `counting` prompts); then the best
    `max_objects` are kept, then greedy NMS runs among those when `max_overlap` < 1. Detections with equal
    scores keep their input order (GenEval's numpy argsort leaves that order unspecified).

    Args:
        raw: every detection of the image, by class name.
        tag: the prompt's task tag, which picks the threshold.
        settings: the tunables; GenEval's defaults unless given.

    Returns:
        The kept detections by class name; classes with none kept are left out, as in GenEval.
    """
    threshold = settings.confidence_threshold(tag)
    kept: dict[str, list[Detection]] = {}
    for name, detections in raw.items():
        ranked = sorted((d for d in detections if d.score > threshold), key=lambda d: -d.score)
        ranked = ranked[: settings.max_objects]  # the cap comes before NMS, as in GenEval
        chosen: list[Detection] = []
        while ranked:
            best = ranked.pop(0)
            chosen.append(best)
            if settings.max_overlap < 1:
                ranked = [d for d in ranked if box_iou(best.box, d.box) < settings.max_overlap]
        if chosen:
            kept[name] = chosen
    return kept


def box_iou(a: Box, b: Box) -> float:
    """IoU with mmdetection's legacy pixel convention (a box spans x2 - x1 + 1 pixels), as GenEval's NMS uses."""

    def area(x1: float, y1: float, x2: float, y2: float) -> float:
        return max(x2 - x1 + 1, 0) * max(y2 - y1 + 1, 0)

    inter = area(max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3]))
    union = area(*a) + area(*b) - inter
    return inter / union if union else 0.0


# ----------------------------------------------------------------------------------------------------
# Relative position
# ----------------------------------------------------------------------------------------------------


def relative_position(a: Box, b: Box, threshold: float = DEFAULT_RULES.position_threshold) -> tuple[str, ...]:
    """Where box `a` lies relative to box `b`: a subset of `RELATIONS`, empty when the two are too close to tell.

    The centre offset is shrunk, per axis, by `threshold` × the two boxes' summed extent on that axis; a
    relation holds when the shrunk offset, divided by the length of the full offset, exceeds 0.5 in that
    direction. Image y grows downwards, so "above" is a negative y offset.
    """
    offset = ((a[0] + a[2]) / 2 - (b[0] + b[2]) / 2, (a[1] + a[3]) / 2 - (b[1] + b[3]) / 2)
    extent = (abs(a[2] - a[0]) + abs(b[2] - b[0]), abs(a[3] - a[1]) + abs(b[3] - b[1]))
    shrunk = [math.copysign(max(abs(o) - threshold * e, 0.0), o) for o, e in zip(offset, extent)]
    if all(abs(s) < 1e-3 for s in shrunk):
        return ()
    # sqrt of the sum of squares, as numpy's norm computes it (math.hypot may differ in the last bit)
    length = math.sqrt(offset[0] * offset[0] + offset[1] * offset[1])
    dx, dy = shrunk[0] / length, shrunk[1] / length
    found = {"left of": dx < -0.5, "right of": dx > 0.5, "above": dy < -0.5, "below": dy > 0.5}
    return tuple(relation for relation in RELATIONS if found[relation])


# ----------------------------------------------------------------------------------------------------
# The clauses
# ----------------------------------------------------------------------------------------------------


def evaluate(
    detections: dict[str, list[Detection]],
    metadata: dict[str, Any],
    colour_of: ColourClassifier | None = None,
    *,
    settings: RuleSettings = DEFAULT_RULES,
) -> Verdict:
    """Judge one image's kept detections against its prompt's metadata, as GenEval's `evaluate` does.

    Include clauses must all hold: the class's first `count` detections must exist; with a `color`, all of
    those must have that colour; with a `position` [relation, group], each of them must stand in that
    relation to each object of the earlier include clause `group`, which must itself have held. Exclude
    clauses fail when the class has `count` or more kept detections. Colour and position look only at the
    best `count` detections, so the order of `detections` matters.

    Args:
        detections: the kept detections by class name, best first (`filter_detections`'s output).
        metadata: one line of GenEval's `evaluation_metadata.jsonl` (`include`, optional `exclude`).
        colour_of: classifies a detection whose `colour` is None; needed only when a colour clause is reached.
        settings: the tunables; only `position_threshold` is used here.

    Returns:
        The verdict; its reason holds one line per failed clause, worded as GenEval words it.

    Raises:
        MissingColourError: a colour clause met a detection without a colour and `colour_of` is None.
        GenEvalFileError: a `position` clause names a group that is not an earlier include clause.
    """
    correct = True
    reasons: list[str] = []
    groups: list[list[Detection] | None] = []  # per include clause: its objects when it held, else None
    for clause in metadata.get("include", []):
        name, count = clause["class"], clause["count"]
        found = detections.get(name, [])[:count]
        held = True
        if len(found) < count:
            held = False
            reasons.append(f"expected {name}>={count}, found {len(found)}")
        else:
            if "color" in clause:
                failure = _colour_failure(found, name, clause["color"], count, colour_of)
                if failure:
                    held = False
                    reasons.append(failure)
            if "position" in clause and held:
                failure = _position_failure(found, name, clause["position"], groups, settings.position_threshold)
                if failure:
                    held = False
                    reasons.append(failure)
        correct = correct and held
        groups.append(found if held else None)
    for clause in metadata.get("exclude", []):
        name, count = clause["class"], clause["count"]
        present = len(detections.get(name, []))
        if present >= count:
            correct = False
            reasons.append(f"expected {name}<{count}, found {present}")
    return Verdict(correct=correct, reason="\n".join(reasons))


def _colour_failure(
    found: list[Detection], name: str, wanted: str, count: int, colour_of: ColourClassifier | None
) -> str | None:
    colours = [_colour(detection, name, colour_of) for detection in found]
    matching = colours.count(wanted)
    if matching >= count:
        return None
    tally = ", ".join(f"{colours.count(colour)} {colour}" for colour in COLOURS if colour in colours)
    return f"expected {wanted} {name}>={count}, found {matching} {wanted}; and {tally}"


def _colour(detection: Detection, name: str, colour_of: ColourClassifier | None) -> str:
    if detection.colour is not None:
        return detection.colour
    if colour_of is None:
        raise MissingColourError(
            f"a {name} detection at {detection.box} has no colour and no colour classifier was given"
        )
    return colour_of(detection, name)


def _position_failure(
    found: list[Detection],
    name: str,
    position: list[Any],
    groups: list[list[Detection] | None],
    threshold: float,
) -> str | None:
    relation, group = position
    if not 0 <= group < len(groups):
        raise GenEvalFileError(f"position clause of {name!r} targets include clause {group}, which does not precede it")
    targets = groups[group]
    if targets is None:
        return f"no target for {name} to be {relation}"
    for detection in found:
        for target in targets:
            relations = relative_position(detection.box, target.box, threshold)
            if relation not in relations:
                return f"expected {name} {relation} target, found {' and '.join(relations)} target"
    return None
