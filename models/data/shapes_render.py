"""Lay out and draw a shapes scene from its GenEval-style metadata, with Pillow and a caller's random.Random.

Objects are axis-aligned squares, circles and upright triangles (base = height = side) on a plain grey
background. Every object's box keeps a margin from the border and a gap from every other box, so objects
never touch and a connected-component detector sees each one on its own. A position clause is laid out so
that GenEval's relative-position rule (`models.eval.geneval.rules.relative_position`) finds exactly the asked
relation between each subject and each target, with a margin: it still holds when the boxes' extents are
discounted twice as much as GenEval does, and the perpendicular relations do not hold at all.

Shapes are drawn at 4× the size and box-filtered down, so edges are anti-aliased as in a photo, and the
result is the same bytes for the same (metadata, size, random state) on every machine.
"""

import random
from dataclasses import dataclass
from typing import Any

from PIL import Image, ImageDraw

from models.data.shapes_vocab import BACKGROUND, COLOUR_NAMES, MAX_OBJECTS, PALETTE, SHAPES
from models.errors import ShapesSceneError
from models.eval.geneval.prompts import metadata_problem
from models.eval.geneval.rules import DEFAULT_RULES, relative_position

MIN_IMAGE_SIZE = 32  # below this the smallest shapes are a few pixels and lose their geometry
SUPERSAMPLING = 4
# Object sides as fractions of the image side, by the number of objects in the scene: large when alone,
# smaller when four must fit with gaps. The smallest, 0.16, is 20 px at 128 px and 5 px at 32 px, where a
# circle, a square and a triangle can still be told apart.
SIDE_RANGE = {1: (0.20, 0.42), 2: (0.16, 0.34), 3: (0.16, 0.28), 4: (0.16, 0.26)}
GAP_FRACTION = 0.06  # the least space between two objects' boxes (8 px at 128 px)
MARGIN_FRACTION = 0.04  # the least space between an object's box and the border (5 px at 128 px)
SCENE_ATTEMPTS = 2000  # random layouts tried before giving up (a position scene needs a few dozen at most)
PLACEMENT_ATTEMPTS = 50  # positions tried per object within one layout
# A relation is laid out to hold even when GenEval's box-extent discount is doubled.
POSITION_MARGIN_THRESHOLD = 2 * DEFAULT_RULES.position_threshold

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class PlacedShape:
    """One object of a scene: what it is and where, box (x1, y1, x2, y2) in pixels with x2, y2 exclusive."""

    shape: str
    colour: str
    box: Box


def render_scene(metadata: dict[str, Any], size: int, rng: random.Random) -> Image.Image:
    """Draw a random scene that satisfies `metadata` (GenEval-style), as a `size`×`size` RGB image.

    Args:
        metadata: `{"include": [{"class", "count", "color"?, "position"?}], ...}` with classes from `SHAPES`,
            colours from `PALETTE` and at most `MAX_OBJECTS` objects in all.
        size: image side in pixels, at least `MIN_IMAGE_SIZE`.
        rng: the only source of randomness (colours left open, sizes, positions).

    Raises:
        ShapesSceneError: the metadata names an unknown shape or colour, too many objects, or the size is too small.
    """
    return draw_scene(layout_scene(metadata, size, rng), size)


def layout_scene(metadata: dict[str, Any], size: int, rng: random.Random) -> list[PlacedShape]:
    """The objects of a random scene satisfying `metadata`, in include-clause order (see `render_scene`)."""
    check_scene(metadata, size)
    include = metadata["include"]
    kinds = [
        (clause_index, clause["class"], clause.get("color") or rng.choice(COLOUR_NAMES))
        for clause_index, clause in enumerate(include)
        for _ in range(clause["count"])
    ]
    low, high = (round(fraction * size) for fraction in SIDE_RANGE[len(kinds)])
    gap, margin = round(GAP_FRACTION * size), round(MARGIN_FRACTION * size)
    for _ in range(SCENE_ATTEMPTS):
        boxes = _place(rng, [rng.randint(low, high) for _ in kinds], size, gap, margin)
        if boxes is not None and _relations_hold(include, [k[0] for k in kinds], boxes):
            return [PlacedShape(shape, colour, box) for (_, shape, colour), box in zip(kinds, boxes)]
    raise ShapesSceneError(
        f"no layout of {metadata.get('prompt', include)!r} at {size} px found in {SCENE_ATTEMPTS} attempts; "
        "use a larger size or fewer objects"
    )


def check_scene(metadata: dict[str, Any], size: int) -> None:
    """Raise ShapesSceneError unless `metadata` describes a scene this renderer can draw at `size` px."""
    if size < MIN_IMAGE_SIZE:
        raise ShapesSceneError(f"image size {size}: the shapes dataset needs at least {MIN_IMAGE_SIZE} px")
    problem = metadata_problem(metadata)
    if problem:
        raise ShapesSceneError(f"cannot draw {metadata!r}: {problem}")
    for clause in metadata["include"]:
        if clause["class"] not in SHAPES:
            raise ShapesSceneError(f"unknown shape {clause['class']!r}; the dataset draws {', '.join(SHAPES)}")
        if "color" in clause and clause["color"] not in PALETTE:
            raise ShapesSceneError(f"colour {clause['color']!r} is not in the palette ({', '.join(COLOUR_NAMES)})")
    total = sum(clause["count"] for clause in metadata["include"])
    if total > MAX_OBJECTS:
        raise ShapesSceneError(f"{total} objects asked for; a scene holds at most {MAX_OBJECTS}")


def _place(rng: random.Random, sides: list[int], size: int, gap: int, margin: int) -> list[Box] | None:
    """Non-touching boxes of the given sides (largest placed first), or None when one does not fit."""
    boxes: dict[int, Box] = {}
    for index in sorted(range(len(sides)), key=lambda i: -sides[i]):
        side = sides[index]
        for _ in range(PLACEMENT_ATTEMPTS):
            x, y = rng.randint(margin, size - margin - side), rng.randint(margin, size - margin - side)
            box = (x, y, x + side, y + side)
            if all(_apart(box, other, gap) for other in boxes.values()):
                boxes[index] = box
                break
        else:
            return None
    return [boxes[i] for i in range(len(sides))]


def _apart(a: Box, b: Box, gap: int) -> bool:
    return a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1]


def _relations_hold(include: list[dict[str, Any]], clause_of: list[int], boxes: list[Box]) -> bool:
    """Whether every subject of every position clause stands in its relation, and only that one, to every target."""
    for index, clause in enumerate(include):
        if "position" not in clause:
            continue
        relation, target = clause["position"]
        subjects = [box for box, owner in zip(boxes, clause_of) if owner == index]
        targets = [box for box, owner in zip(boxes, clause_of) if owner == target]
        for subject in subjects:
            for other in targets:
                if relative_position(subject, other, 0.0) != (relation,):
                    return False
                if relation not in relative_position(subject, other, POSITION_MARGIN_THRESHOLD):
                    return False
    return True


def draw_scene(objects: list[PlacedShape], size: int) -> Image.Image:
    """Draw placed objects on the background, anti-aliased by supersampling."""
    scale = SUPERSAMPLING
    canvas = Image.new("RGB", (size * scale, size * scale), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    for placed in objects:
        # Pillow's shape boxes include their last pixel, hence the - 1 on the exclusive ends
        x1, y1, x2, y2 = (value * scale for value in placed.box)
        right, bottom = x2 - 1, y2 - 1
        fill = PALETTE[placed.colour]
        if placed.shape == "circle":
            draw.ellipse((x1, y1, right, bottom), fill=fill)
        elif placed.shape == "square":
            draw.rectangle((x1, y1, right, bottom), fill=fill)
        else:
            draw.polygon([((x1 + right) / 2, y1), (x1, bottom), (right, bottom)], fill=fill)
    return canvas.reduce(scale)
