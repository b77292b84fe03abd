"""The procedural shapes dataset: coloured circles, squares and triangles with GenEval-style captions.

`ShapesDataset(size, seed, length)[i]` is drawn from (seed, i) alone, through its own `random.Random`, so a
sample is the same whatever the order, the worker or the machine that asks for it. Each sample holds the
image, its caption, its GenEval-style metadata (the caption is the metadata's prompt) and, for images of a
single object, a class id (colour × shape) for class-conditional training.

128 px is the default size. LINA's text-to-image geometry spends 16 px per token (an 8× autoencoder and 2×2
patches), so 128 px is an 8×8 token grid: as cheap for the transformer as 64 px at 8 px per token, and the
smallest object is 20 px, large enough that its shape survives a small model's blur (the shapes scorer
still judges every ground-truth image correct after a Gaussian blur of σ = 1.5 px or a 4× down- and
up-sampling at 128 px; at 64 px the latter drops it to about 0.6). Object sizes, gaps and margins scale
with the image, so any size from 32 px works the same way.
"""

import random
from dataclasses import dataclass
from typing import Any

from PIL import Image

from models.data.shapes_prompts import evaluation_prompts, sample_metadata
from models.data.shapes_render import MIN_IMAGE_SIZE, draw_scene, layout_scene, render_scene
from models.data.shapes_vocab import class_id
from models.errors import ShapesSceneError
from models.eval.geneval.prompts import TAGS
from models.eval.geneval.rules import RELATIONS

# The dataset's public API in one place: the renderer and the evaluation set live in their own modules.
__all__ = ["DEFAULT_IMAGE_SIZE", "ShapesDataset", "ShapesSample", "evaluation_prompts", "render_scene"]

DEFAULT_IMAGE_SIZE = 128


@dataclass(frozen=True)
class ShapesSample:
    """One scene: the image, its caption, its GenEval-style metadata, and its class id when it has one object."""

    image: Image.Image
    caption: str
    metadata: dict[str, Any]
    class_id: int | None


class ShapesDataset:
    """A map-style dataset of `length` random shapes scenes, each task in `tags` equally likely unless weighted.

    Args:
        size: image side in pixels (at least 32).
        seed: the dataset's seed; sample i depends only on (seed, i).
        length: number of samples.
        tags: the GenEval tasks to draw scenes from; ("colors",) gives single coloured objects only, each
            with a class id (the class-conditional set).
        weights: relative frequency of each task in `tags` (same order); None: all equally likely.
        relation_weights: relative frequency of each relation of a position scene (one per
            `models.eval.geneval.rules.RELATIONS`); None: all equally likely.
    """

    def __init__(
        self,
        size: int = DEFAULT_IMAGE_SIZE,
        seed: int = 0,
        length: int = 10_000,
        tags: tuple[str, ...] = TAGS,
        weights: tuple[float, ...] | None = None,
        relation_weights: tuple[float, ...] | None = None,
    ) -> None:
        if size < MIN_IMAGE_SIZE:
            raise ShapesSceneError(f"image size {size}: the shapes dataset needs at least {MIN_IMAGE_SIZE} px")
        if length < 1:
            raise ShapesSceneError(f"dataset length {length}: must be at least 1")
        unknown = [tag for tag in tags if tag not in TAGS]
        if unknown or not tags:
            raise ShapesSceneError(f"tasks {list(tags)!r}: choose one or more of {', '.join(TAGS)}")
        if not _fit(weights, len(tags)):
            raise ShapesSceneError(
                f"task weights {list(weights)!r} for tasks {list(tags)!r}: need one weight ≥ 0 per task, not all 0"
            )
        if not _fit(relation_weights, len(RELATIONS)):
            raise ShapesSceneError(
                f"relation weights {list(relation_weights)!r}: need one weight ≥ 0 for each of {', '.join(RELATIONS)}, "
                "not all 0"
            )
        self.size, self.seed, self.length, self.tags = size, seed, length, tuple(tags)
        self.weights = None if weights is None else tuple(float(w) for w in weights)
        self.relation_weights = None if relation_weights is None else tuple(float(w) for w in relation_weights)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> ShapesSample:
        if not 0 <= index < self.length:
            raise IndexError(f"sample {index} of a {self.length}-sample shapes dataset")
        # str seeds go through SHA-512 in random.seed, so (seed, index) pairs never collide
        rng = random.Random(f"shapes/{self.seed}/{index}")
        # unweighted datasets keep `choice`, so their samples stay those of earlier versions
        tag = rng.choice(self.tags) if self.weights is None else rng.choices(self.tags, self.weights)[0]
        metadata = sample_metadata(tag, rng, self.relation_weights)
        objects = layout_scene(metadata, self.size, rng)
        single = class_id(objects[0].colour, objects[0].shape) if len(objects) == 1 else None
        return ShapesSample(draw_scene(objects, self.size), metadata["prompt"], metadata, single)


def _fit(weights: tuple[float, ...] | None, count: int) -> bool:
    """Whether optional relative weights give one value ≥ 0 to each of `count` choices, not all 0 (None fits)."""
    return weights is None or (len(weights) == count and min(weights) >= 0 and sum(weights) > 0)
