"""A programmatic object detector for shapes images: connected components, palette colours, shape by geometry.

Each pixel goes to the nearest of the background colour (the median of the image border) and the palette
colours; the pixels that are not background form 8-connected components. A component big enough to be an
object, about as wide as tall and mostly of one colour becomes one detection: its bounding box, its mask,
the palette colour nearest to its median colour, and its shape from two numbers that survive blur: where its
centre of mass sits in its box (2/3 of the way down for an upright triangle, half-way for a circle or a
square) and how much of its box it fills (a square all of it, a circle π/4 ≈ 0.79). Every detection scores
1.0: the checks above already decide what is an object, and GenEval's confidence thresholds (0.3, 0.9 for
counting) then keep all of them.
"""

import math

import numpy as np
from PIL import Image

from models.data.shapes_vocab import PALETTE
from models.eval.geneval.rules import Detection

# A component smaller than this share of the image is noise: the smallest object the dataset draws, a
# triangle of side 0.16 × the image, covers 0.0128 of it, four times more.
MIN_AREA_FRACTION = 0.003
# Every shape is as wide as it is tall; a longer component is two objects run together or a smear.
MAX_ASPECT = 1.5
# Below a third of its box a component is a thin stroke or a diagonal smear, none of our shapes.
MIN_FILL = 0.3
# Most of an object's pixels are nearest to its own colour; a blob of mixed colours (noise, two objects
# run together) is none of our objects.
MIN_COLOUR_PURITY = 0.5
# Boundaries halfway between the ideal values. A triangle's centre of mass is 2/3 down its box, a circle's
# and a square's 1/2; blur cuts a small triangle's tip off, which raises its fill ratio towards a circle's
# but keeps its centre of mass low. Then a square fills its whole box and a circle π/4 of it.
TRIANGLE_MIN_CENTRE = (2 / 3 + 1 / 2) / 2
SQUARE_MIN_FILL = (1 + math.pi / 4) / 2
DETECTION_SCORE = 1.0

_COLOUR_NAMES = tuple(PALETTE)
_COLOURS = np.array(list(PALETTE.values()), dtype=np.float32)  # [K, 3]


def detect_shapes(image: Image.Image) -> dict[str, list[Detection]]:
    """Detect the circles, squares and triangles of an image.

    Args:
        image: any PIL image; it is read as RGB.

    Returns:
        Detections by shape name, each with box (x1, y1, x2, y2) in pixels (x2, y2 exclusive), score 1.0,
        its H×W boolean mask and its palette colour name; largest first within a shape. Shapes with no
        detection are left out.
    """
    pixels = np.asarray(image.convert("RGB"), dtype=np.float32)  # [H, W, 3]
    height, width, _ = pixels.shape
    background = np.median(np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]]), axis=0)
    nearest = nearest_colour(pixels, np.vstack([background, _COLOURS]))  # [H, W], 0 = background, k = palette k - 1
    labels, count = label_components(nearest != 0)
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    min_area = MIN_AREA_FRACTION * height * width
    found: list[tuple[int, str, Detection]] = []
    for label in np.flatnonzero(areas[1:] >= min_area) + 1:
        mask = labels == label
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
        box_width, box_height = box[2] - box[0], box[3] - box[1]
        fill = areas[label] / (box_width * box_height)
        if max(box_width, box_height) > MAX_ASPECT * min(box_width, box_height) or fill < MIN_FILL:
            continue
        colour_index = nearest_colour(np.median(pixels[mask], axis=0), _COLOURS)
        if np.mean(nearest[mask] == colour_index + 1) < MIN_COLOUR_PURITY:
            continue
        # centre of mass below the top of the box (pixel centres at +0.5), as a share of the box height
        centre = (np.nonzero(mask)[0].mean() + 0.5 - box[1]) / box_height
        detection = Detection(box=box, score=DETECTION_SCORE, mask=mask, colour=_COLOUR_NAMES[colour_index])
        found.append((int(areas[label]), shape_of(fill, centre), detection))
    detections: dict[str, list[Detection]] = {}
    for _, shape, detection in sorted(found, key=lambda item: -item[0]):  # stable: equal areas keep raster order
        detections.setdefault(shape, []).append(detection)
    return detections


def shape_of(fill: float, centre: float) -> str:
    """The shape of a component from its fill ratio and its centre of mass (share of the box height from its top)."""
    if centre >= TRIANGLE_MIN_CENTRE:
        return "triangle"
    return "square" if fill >= SQUARE_MIN_FILL else "circle"


def nearest_colour(pixels: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Index of the nearest reference colour (Euclidean in RGB) for each pixel: [..., 3], [K, 3] → [...]."""
    distances = ((pixels[..., None, :] - references) ** 2).sum(axis=-1)  # [..., K]
    return distances.argmin(axis=-1)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean [H, W] mask.

    Every pixel starts labelled with its own flat index; each round takes the smallest label in its 3×3
    neighbourhood, then jumps to the label of the pixel that label names (pointer jumping, so long
    components converge in a few rounds). At the fixed point a component carries its smallest pixel index.

    Returns:
        Labels [H, W] (0 = not in the mask, components 1..n in raster order of their first pixel) and n.
    """
    height, width = mask.shape
    outside = height * width  # larger than every pixel index
    labels = np.where(mask, np.arange(height * width).reshape(height, width), outside)
    while True:
        padded = np.pad(labels, 1, constant_values=outside)
        smallest = labels
        for dy in range(3):
            for dx in range(3):
                smallest = np.minimum(smallest, padded[dy : dy + height, dx : dx + width])
        smallest = np.where(mask, smallest, outside)
        flat = np.append(smallest.ravel(), outside)  # index `outside` maps to itself
        jumped = np.where(mask, flat[smallest], outside)
        if np.array_equal(jumped, labels):
            break
        labels = jumped
    roots = np.unique(labels[mask])
    numbered = np.zeros((height, width), dtype=np.int64)
    numbered[mask] = np.searchsorted(roots, labels[mask]) + 1
    return numbered, len(roots)
