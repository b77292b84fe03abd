"""GenEval-style metadata and captions of shapes scenes: one builder per task, the training mix, the eval set.

A scene is described the way GenEval's `evaluation_metadata.jsonl` (github.com/djghosh13/geneval) describes a
prompt: `{"tag", "include": [{"class", "count", "color"?, "position"?: [relation, group]}], "exclude"?,
"prompt"}`, and its caption is that prompt ("a photo of two circles", "a photo of a square left of a
triangle"). The same dict drives the renderer, so an image, its caption and its metadata never disagree.

Each task constrains what GenEval's does: `single_object` and `two_object` name shapes only, `counting`
names a shape and an exact count, `colors` one coloured shape, `position` two shapes and a relation,
`color_attr` two coloured shapes. Objects whose colour the metadata leaves open get a random one.
"""

import random
from typing import Any

from models.data.shapes_vocab import COLOUR_NAMES, MAX_OBJECTS, NUMBER_WORDS, PLURALS, SHAPES
from models.errors import ShapesSceneError
from models.eval.geneval.prompts import TAGS
from models.eval.geneval.rules import RELATIONS

COUNTS = (2, 3, 4)  # GenEval's counting task asks for two to four objects
# Training-only variety on top of GenEval's forms: counting and position captions that also name colours
# ("three green triangles", "a blue square left of a yellow triangle"), and a position subject that is a
# pair ("two red circles left of a blue square"), so a model learns to combine the attributes.
COLOURED_VARIANT_PROBABILITY = 0.5
PAIR_SUBJECT_PROBABILITY = 0.25

Metadata = dict[str, Any]


# ----------------------------------------------------------------------------------------------------
# Captions
# ----------------------------------------------------------------------------------------------------


def caption(include: list[dict[str, Any]]) -> str:
    """The GenEval-style prompt of a list of include clauses.

    A clause with a position reads "<subject> <relation> <target>" ("a photo of a square left of a
    triangle"); other clauses are joined with "and".
    """
    phrases = [_phrase(clause) for clause in include]
    positioned = [i for i, clause in enumerate(include) if "position" in clause]
    if positioned:
        subject = positioned[0]
        relation, target = include[subject]["position"]
        phrases[target] = f"{phrases[subject]} {relation} {phrases[target]}"
        del phrases[subject]
    text = phrases[0] if len(phrases) == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    return f"a photo of {text}"


def _phrase(clause: dict[str, Any]) -> str:
    count, shape = clause["count"], clause["class"]
    if count not in NUMBER_WORDS or shape not in PLURALS:
        raise ShapesSceneError(f"{count} × {shape!r}: a scene holds 1 to {MAX_OBJECTS} of {', '.join(SHAPES)}")
    noun = shape if count == 1 else PLURALS[shape]
    words = f"{clause['color']} {noun}" if "color" in clause else noun
    if count > 1:
        return f"{NUMBER_WORDS[count]} {words}"
    return f"{'an' if words[0] in 'aeiou' else 'a'} {words}"


def _clause(shape: str, count: int = 1, colour: str | None = None, position: list[Any] | None = None) -> dict[str, Any]:
    clause: dict[str, Any] = {"class": shape, "count": count}
    if colour is not None:
        clause["color"] = colour
    if position is not None:
        clause["position"] = position
    return clause


def _metadata(tag: str, include: list[dict[str, Any]], exclude: list[dict[str, Any]] | None = None) -> Metadata:
    entry: Metadata = {"tag": tag, "include": include}
    if exclude:
        entry["exclude"] = exclude
    entry["prompt"] = caption(include)
    return entry


# ----------------------------------------------------------------------------------------------------
# One builder per GenEval task
# ----------------------------------------------------------------------------------------------------


def single_object(shape: str) -> Metadata:
    return _metadata("single_object", [_clause(shape)])


def two_object(first: str, second: str) -> Metadata:
    return _metadata("two_object", [_clause(first), _clause(second)])


def counting(shape: str, count: int, colour: str | None = None) -> Metadata:
    """Exactly `count` shapes: at least `count`, and fewer than `count + 1` (GenEval's exclude clause)."""
    return _metadata("counting", [_clause(shape, count, colour)], [{"class": shape, "count": count + 1}])


def colors(shape: str, colour: str) -> Metadata:
    return _metadata("colors", [_clause(shape, colour=colour)])


def position(
    subject: str,
    relation: str,
    target: str,
    *,
    subject_colour: str | None = None,
    target_colour: str | None = None,
    subject_count: int = 1,
) -> Metadata:
    """"<subject> <relation> <target>"; as in GenEval the target is clause 0 and the subject refers to it."""
    include = [_clause(target, colour=target_colour), _clause(subject, subject_count, subject_colour, [relation, 0])]
    return _metadata("position", include)


def color_attr(first: str, first_colour: str, second: str, second_colour: str) -> Metadata:
    return _metadata("color_attr", [_clause(first, colour=first_colour), _clause(second, colour=second_colour)])


# ----------------------------------------------------------------------------------------------------
# The training mix and the evaluation set
# ----------------------------------------------------------------------------------------------------


def sample_metadata(tag: str, rng: random.Random, relation_weights: tuple[float, ...] | None = None) -> Metadata:
    """A random scene of one task, drawn with `rng` only; a position scene's relation is drawn with
    `relation_weights` (one per `RELATIONS`), or uniformly when None."""
    if tag == "single_object":
        return single_object(rng.choice(SHAPES))
    if tag == "two_object":
        return two_object(*rng.sample(SHAPES, 2))
    if tag == "counting":
        shape, count = rng.choice(SHAPES), rng.choice(COUNTS)
        coloured = rng.random() < COLOURED_VARIANT_PROBABILITY
        return counting(shape, count, rng.choice(COLOUR_NAMES) if coloured else None)
    if tag == "colors":
        return colors(rng.choice(SHAPES), rng.choice(COLOUR_NAMES))
    if tag == "position":
        subject, target = rng.sample(SHAPES, 2)
        # unweighted draws keep `choice`, so their scenes stay those of earlier versions
        relation = rng.choice(RELATIONS) if relation_weights is None else rng.choices(RELATIONS, relation_weights)[0]
        coloured = rng.random() < COLOURED_VARIANT_PROBABILITY
        colours = rng.sample(COLOUR_NAMES, 2) if coloured else (None, None)
        subject_count = 2 if rng.random() < PAIR_SUBJECT_PROBABILITY else 1
        return position(
            subject, relation, target, subject_colour=colours[0], target_colour=colours[1], subject_count=subject_count
        )
    if tag == "color_attr":
        first, second = rng.sample(SHAPES, 2)
        first_colour, second_colour = rng.sample(COLOUR_NAMES, 2)
        return color_attr(first, first_colour, second, second_colour)
    raise ShapesSceneError(f"unknown task {tag!r}; expected one of {', '.join(TAGS)}")


def evaluation_prompts() -> list[Metadata]:
    """The fixed evaluation set: GenEval-style metadata, 114 lines, grouped by task in GenEval's order.

    Built by enumeration (no random numbers), so it never changes between versions. Three shapes give few
    distinct single_object, two_object and counting prompts; those are repeated (4×, 2×, 2×) so that every
    task has at least 12 lines and, at 4 images per prompt, 48 images, each with its own seed.

    Lines: single_object 12 (3 shapes × 4), two_object 12 (6 ordered pairs × 2), counting 18 (3 shapes ×
    counts 2-4 × 2), colors 24 (3 shapes × 8 colours), position 24 (6 ordered pairs × 4 relations),
    color_attr 24 (the 6 ordered pairs in turn, with two different colours that walk through the palette).
    """
    pairs = [(a, b) for a in SHAPES for b in SHAPES if a != b]
    colours = COLOUR_NAMES
    prompts = [single_object(shape) for _ in range(4) for shape in SHAPES]
    prompts += [two_object(a, b) for _ in range(2) for a, b in pairs]
    prompts += [counting(shape, count) for _ in range(2) for count in COUNTS for shape in SHAPES]
    prompts += [colors(shape, colour) for colour in colours for shape in SHAPES]
    prompts += [position(a, relation, b) for relation in RELATIONS for a, b in pairs]
    for k in range(24):
        a, b = pairs[k % len(pairs)]
        # the second colour is 1, 2 or 3 palette steps after the first, so the two always differ
        first, second = colours[k % len(colours)], colours[(k + 1 + k // len(colours)) % len(colours)]
        prompts.append(color_attr(a, first, b, second))
    return prompts
