"""Training images and their conditions: the shapes dataset, an ImageNet-style class-folder tree, or captioned images.

Every source is a fixed, ordered list of examples (image, caption or class id) with a `spec`: a JSON-able
description that changes whenever the examples could, so caches built from a source can be keyed by it.
`--data shapes` renders `models.data.shapes.ShapesDataset` (any task: class ids are colour × shape, and a
class-conditional run draws only single coloured objects); `--data DIR` is a class-folder tree
(`DIR/<class>/<image>`, classes in sorted order, as torchvision's ImageFolder numbers them) for class-conditional
training, or, when `DIR/metadata.jsonl` exists (the Hugging Face image-folder convention), captioned images for
text-to-image training; `--data FILE.jsonl` names such a file directly. Folder images are centre-cropped to a
square and resized (bicubic).
"""

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image, ImageOps

from models.data.shapes import ShapesDataset
from models.data.shapes_vocab import NUM_CLASSES
from models.errors import TrainingDataError
from models.eval.geneval.prompts import TAGS
from models.eval.geneval.rules import RELATIONS
from models.train.recipe import SHAPES

SHAPES_SEED = 0  # the dataset's own seed: changing the training seed must not re-render the data
CLASS_ONLY_TAGS = ("colors",)  # single coloured objects: every image has a colour × shape class id
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
CAPTIONS_NAME = "metadata.jsonl"
FILE_KEYS = ("file_name", "image", "path")
TEXT_KEYS = ("text", "caption", "prompt")
NO_CLASS = -1  # collated in place of a missing class id


@dataclass(frozen=True)
class Example:
    """One training image with its caption (text-to-image) or class id (class-conditional)."""

    image: Image.Image
    caption: str | None
    class_id: int | None


class ImageSource(Protocol):
    """A fixed, ordered list of examples of one task."""

    task: str
    num_classes: int | None

    def __len__(self) -> int: ...

    def example(self, index: int) -> Example: ...

    def spec(self) -> dict[str, Any]: ...


def image_array(image: Image.Image, size: int) -> np.ndarray:
    """An RGB image centre-cropped to a square and resized to `size`, as uint8 [size, size, 3]."""
    image = image.convert("RGB")
    if image.size != (size, size):
        image = ImageOps.fit(image, (size, size), method=Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.uint8)


# ----------------------------------------------------------------------------------------------------
# Sources
# ----------------------------------------------------------------------------------------------------


class ShapesSource:
    """The procedural shapes dataset; class-conditional runs draw only single coloured objects (24 classes)."""

    def __init__(
        self,
        size: int,
        length: int,
        task: str,
        seed: int = SHAPES_SEED,
        mix: dict[str, float] | None = None,
        relations: dict[str, float] | None = None,
    ):
        self.task = task
        self.num_classes = NUM_CLASSES if task == "c2i" else None
        if task == "c2i" and (mix or relations):
            raise TrainingDataError(
                "--shapes-mix and --shapes-relations weight the text-to-image scenes; a c2i run draws single objects only"
            )
        options: dict[str, Any] = {"tags": CLASS_ONLY_TAGS} if task == "c2i" else {}
        if mix:
            options["weights"] = tuple(mix.get(tag, 1.0) for tag in TAGS)
        if relations:
            options["relation_weights"] = tuple(relations.get(relation, 1.0) for relation in RELATIONS)
        self.dataset = ShapesDataset(size, seed, length, **options)

    def __len__(self) -> int:
        return len(self.dataset)

    def example(self, index: int) -> Example:
        sample = self.dataset[index]
        return Example(sample.image, sample.caption, sample.class_id)

    def spec(self) -> dict[str, Any]:
        d = self.dataset
        spec = {"kind": SHAPES, "size": d.size, "seed": d.seed, "length": d.length, "tags": list(d.tags)}
        # only weights that were given add a key, so the caches of unweighted runs keep their names
        if d.weights is not None:
            spec["weights"] = list(d.weights)
        if d.relation_weights is not None:
            spec["relation_weights"] = list(d.relation_weights)
        return spec


class ClassFolderSource:
    """`root/<class>/<image>`: class ids number the sub-folders in sorted order."""

    task = "c2i"

    def __init__(self, root: Path, size: int):
        self.root, self.size = root, size
        self.classes = sorted(p.name for p in root.iterdir() if p.is_dir() and _images_in(p))
        self.files = [(path, label) for label, name in enumerate(self.classes) for path in _images_in(root / name)]
        if not self.files:
            raise TrainingDataError(
                f"--data {root}: no images found; expected {root}/<class name>/<image> ({', '.join(IMAGE_SUFFIXES)}) "
                f"or captions in {root / CAPTIONS_NAME}"
            )
        self.num_classes = len(self.classes)

    def __len__(self) -> int:
        return len(self.files)

    def example(self, index: int) -> Example:
        path, label = self.files[index]
        with Image.open(path) as image:
            return Example(Image.fromarray(image_array(image, self.size)), None, label)

    def spec(self) -> dict[str, Any]:
        return {"kind": "class_folders", "root": str(self.root.resolve()), "size": self.size,
                "classes": self.classes, "files": _listing_hash(p for p, _ in self.files)}


class CaptionSource:
    """Images named by a `.jsonl` file, one `{"file_name": ..., "text": ...}` object per line (paths relative to it)."""

    task = "t2i"
    num_classes = None

    def __init__(self, path: Path, size: int):
        self.path, self.size = path, size
        self.items: list[tuple[Path, str]] = []
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                file = next(record[k] for k in FILE_KEYS if k in record)
                text = next(record[k] for k in TEXT_KEYS if k in record)
            except (json.JSONDecodeError, StopIteration, TypeError) as error:
                raise TrainingDataError(
                    f"{path}:{number}: expected a JSON object with one of {FILE_KEYS} and one of {TEXT_KEYS}"
                ) from error
            image = path.parent / str(file)
            if not image.is_file():
                raise TrainingDataError(f"{path}:{number}: image {image} does not exist")
            self.items.append((image, str(text)))
        if not self.items:
            raise TrainingDataError(f"{path}: no captioned images")

    def __len__(self) -> int:
        return len(self.items)

    def captions(self) -> list[str]:
        return [text for _, text in self.items]

    def example(self, index: int) -> Example:
        path, text = self.items[index]
        with Image.open(path) as image:
            return Example(Image.fromarray(image_array(image, self.size)), text, None)

    def spec(self) -> dict[str, Any]:
        captions = hashlib.sha256("\n".join(text for _, text in self.items).encode()).hexdigest()
        return {"kind": "captions", "file": str(self.path.resolve()), "size": self.size,
                "files": _listing_hash(p for p, _ in self.items), "captions": captions}


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _listing_hash(paths: Iterator[Path]) -> str:
    """A hash of every file's path, size and modification time: it changes when any image could have."""
    digest = hashlib.sha256()
    for path in paths:
        stat = path.stat()
        digest.update(f"{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def open_source(
    data: str,
    *,
    task: str | None,
    size: int,
    dataset_size: int,
    seed: int = SHAPES_SEED,
    shapes_mix: dict[str, float] | None = None,
    shapes_relations: dict[str, float] | None = None,
) -> ImageSource:
    """The source `--data` names: "shapes", a class-folder tree, a folder with `metadata.jsonl`, or a `.jsonl` file.

    Args:
        task: "t2i" or "c2i"; None takes a folder of either kind (images only are needed, e.g. for the VAE).
        dataset_size, seed, shapes_mix, shapes_relations: length, seed, task weights and position-relation weights
            of the shapes dataset (ignored for folders).

    Raises:
        TrainingDataError: the path does not exist, holds nothing usable, or its kind does not fit `task`.
    """
    if data == SHAPES:
        return ShapesSource(size, dataset_size, task or "t2i", seed, shapes_mix, shapes_relations)
    path = Path(data).expanduser()
    if path.is_file() and path.suffix == ".jsonl":
        source: ImageSource = CaptionSource(path, size)
    elif path.is_dir():
        captions = path / CAPTIONS_NAME
        source = CaptionSource(captions, size) if captions.is_file() else ClassFolderSource(path, size)
    else:
        raise TrainingDataError(f"--data {data}: expected 'shapes', a folder, or a captions .jsonl file")
    if task is not None and source.task != task:
        kind = "captioned images (text-to-image)" if source.task == "t2i" else "class folders (class-conditional)"
        raise TrainingDataError(f"--data {data} holds {kind}, but the run is {task}; use --task {source.task}")
    return source


def data_task(data: str) -> str | None:
    """The task a `--data` value implies: "t2i" for captions, "c2i" for class folders, None for shapes (either)."""
    if data == SHAPES:
        return None
    path = Path(data).expanduser()
    return "t2i" if path.suffix == ".jsonl" or (path / CAPTIONS_NAME).is_file() else "c2i"


# ----------------------------------------------------------------------------------------------------
# Loading in worker processes
# ----------------------------------------------------------------------------------------------------


class _Examples(torch.utils.data.Dataset):
    """Examples of `source` at `indices`, as (uint8 [3, H, W], caption or "", class id or NO_CLASS)."""

    def __init__(self, source: ImageSource, indices: list[int], size: int):
        self.source, self.indices, self.size = source, indices, size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, str, int]:
        example = self.source.example(self.indices[i])
        pixels = torch.from_numpy(image_array(example.image, self.size).copy()).permute(2, 0, 1)
        return pixels, example.caption or "", NO_CLASS if example.class_id is None else example.class_id


def iter_batches(
    source: ImageSource, indices: list[int], size: int, batch_size: int, workers: int = 0
) -> Iterator[tuple[torch.Tensor, list[str], torch.Tensor]]:
    """Batches of examples in index order: (uint8 images [b, 3, H, W], captions, class ids [b]).

    Images are decoded or rendered in `workers` processes (0: in this one); the order never depends on them.
    """
    loader = torch.utils.data.DataLoader(
        _Examples(source, indices, size), batch_size=batch_size, num_workers=workers, shuffle=False,
        persistent_workers=False,
    )
    for pixels, captions, labels in loader:
        yield pixels, list(captions), labels


def to_unit_range(pixels: torch.Tensor) -> torch.Tensor:
    """uint8 [..., H, W] → float32 in [-1, 1], the VAE's input range."""
    return pixels.float().div_(127.5).sub_(1)
