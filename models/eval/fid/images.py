"""Sets of images to score, a folder of PNG/JPEG files or an ADM `.npz`: checked, hashed, then read in batches.

`scan_images` checks everything a score depends on before any Inception pass: a folder without images, a file
PIL cannot open, two samples with the same content, an image whose size is not the protocol's (unless resizing
was asked for). Each problem raises `EvalInputError` naming the file. Pixels are read as torch-fidelity reads
them (`PIL.Image.open(path).convert("RGB")`), so both tools see the same uint8 values.
"""

import hashlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import EvalInputError, MetadataError
from models.eval.fid import adm_npz
from models.eval.fid.constants import RESIZE_RULE, ProgressCallback
from models.runs.metadata import METADATA_KEY, ImageMetadata

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")  # torch-fidelity's samples_find_ext; sub-folders are not searched
FOLDER, NPZ = "folder", "npz"
DECODE_THREADS = min(8, os.cpu_count() or 1)  # PIL and hashlib release the GIL while decoding and hashing
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageSet:
    """A checked set of images. `content_sha256` identifies the pixels' files (the cache key of their features).

    `class_labels` are the images' classes when every one of them records one (lina PNG metadata, or ADM's
    `arr_1`), else None. `resized` counts images that are not `image_size` square and are resized on reading.
    """

    path: Path
    kind: str
    count: int
    image_size: int
    content_sha256: str
    class_labels: tuple[int, ...] | None
    resized: int
    files: tuple[Path, ...] = ()

    def batches(self, batch_size: int) -> Iterator[np.ndarray]:
        """The images in order (sorted file names, or `arr_0` order), as uint8 arrays (B, S, S, 3)."""
        if self.kind == NPZ:
            for batch in adm_npz.iter_images(self.path, batch_size):
                if self.resized:
                    batch = np.stack([_fit(_pil_from_array(image), self.image_size, self.path) for image in batch])
                yield batch
            return
        yield from _decoded_batches(self.files, batch_size, self.image_size)

    def class_balance(self) -> dict[str, Any] | None:
        """How many classes and images per class the labels hold, or None without labels."""
        if self.class_labels is None:
            return None
        counts = Counter(self.class_labels)
        low, high = min(counts.values()), max(counts.values())
        return {"classes": len(counts), "min_per_class": low, "max_per_class": high, "balanced": low == high}


def scan_images(
    path: Path,
    image_size: int,
    *,
    resize: bool,
    reject_duplicates: bool,
    progress: ProgressCallback | None = None,
) -> ImageSet:
    """Check a folder of PNG/JPEG images or an ADM `.npz` and describe it.

    Args:
        path: a folder (its *.png, *.jpg, *.jpeg files, not sub-folders) or an `.npz` with `arr_0`.
        image_size: the protocol's side S; other sizes are an error unless `resize`.
        resize: allow other sizes, resized on reading with `RESIZE_RULE`.
        reject_duplicates: refuse two images with the same content (samples: a duplicate means a seed bug;
            a reference batch may hold duplicates, as ImageNet does).
        progress: called as (task, done, total) while files are hashed.

    Raises:
        EvalInputError: naming the file and the fix.
    """
    path = Path(path)
    if path.is_dir():
        return _scan_folder(path, image_size, resize, reject_duplicates, progress)
    if path.is_file() and path.suffix.lower() == ".npz":
        return _scan_npz(path, image_size, resize, reject_duplicates, progress)
    if not path.exists():
        raise EvalInputError(f"{path} does not exist; give a folder of PNG/JPEG images or an ADM .npz batch")
    raise EvalInputError(f"{path} is neither a folder of PNG/JPEG images nor an .npz batch")


def pack_adm_npz(images: ImageSet, target: Path, batch_size: int = 256) -> Path:
    """Write a checked image set as an ADM batch (`arr_0`, plus `arr_1` when every image has a class label),
    e.g. to score the same samples with ADM's TensorFlow evaluator."""
    labels = None if images.class_labels is None else np.asarray(images.class_labels, dtype=np.int64)
    adm_npz.write_adm_npz(Path(target), images.batches(batch_size), images.count, images.image_size, labels)
    return Path(target)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check_size(name: str, height: int, width: int, image_size: int, resize: bool) -> bool:
    """Whether the image needs resizing; an error when it does and resizing was not asked for."""
    if (height, width) == (image_size, image_size):
        return False
    if not resize:
        raise EvalInputError(
            f"{name} is {width}x{height}, not {image_size}x{image_size}; pass --resize (resize=True) to resize "
            f"such images ({RESIZE_RULE})"
        )
    return True


# ----------------------------------------------------------------------------------------------------
# Folders
# ----------------------------------------------------------------------------------------------------


def _scan_folder(folder: Path, image_size: int, resize: bool, reject_duplicates: bool, progress) -> ImageSet:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise EvalInputError(
            f"{folder} holds no images: expected *.png, *.jpg or *.jpeg files directly in it "
            "(sub-folders are not searched)"
        )
    seen: dict[str, Path] = {}
    digests: list[str] = []
    labels: list[int | None] = []
    resized = 0
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        probes = zip(files, pool.map(_probe, files), strict=True)
        for done, (path, (digest, height, width, label)) in enumerate(probes, start=1):
            if reject_duplicates and digest in seen:
                raise EvalInputError(
                    f"{path} has the same content as {seen[digest]} (SHA-256 {digest[:16]}…); "
                    "samples must be distinct images"
                )
            seen.setdefault(digest, path)
            digests.append(digest)
            resized += check_size(str(path), height, width, image_size, resize)
            labels.append(label)
            if progress is not None:
                progress(f"checking {folder.name}", done, len(files))
    # The digests in file-name order, the order the features are stored in (KID's subsets depend on it).
    content = hashlib.sha256("\n".join(digests).encode()).hexdigest()
    known = None if any(label is None for label in labels) else tuple(labels)
    return ImageSet(folder, FOLDER, len(files), image_size, content, known, resized, tuple(files))


def _probe(path: Path) -> tuple[str, int, int, int | None]:
    """(SHA-256 of the file, height, width, class label from lina metadata or None), without decoding pixels."""
    from PIL import Image, UnidentifiedImageError

    digest = sha256_file(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            text = image.info.get(METADATA_KEY)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise EvalInputError(f"{path} is not a readable image ({error}); remove it or replace it") from error
    return digest, height, width, _class_label(text, path)


def _class_label(text: Any, path: Path) -> int | None:
    if not isinstance(text, str):
        return None
    try:
        return ImageMetadata.from_json(json.loads(text), str(path)).class_label
    except (json.JSONDecodeError, MetadataError, TypeError):
        return None  # a broken record does not make the pixels unusable; the balance is just unknown


def _decode(path: Path, image_size: int) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return _fit(image.convert("RGB"), image_size, path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise EvalInputError(f"{path} is not a readable image ({error}); remove it or replace it") from error


def _decoded_batches(files: tuple[Path, ...], batch_size: int, image_size: int) -> Iterator[np.ndarray]:
    """Decode on a thread pool, one batch ahead of the consumer (the Inception forward)."""
    chunks = [files[start:start + batch_size] for start in range(0, len(files), batch_size)]
    with ThreadPoolExecutor(max_workers=DECODE_THREADS) as pool:
        pending = [pool.submit(_decode, path, image_size) for path in chunks[0]] if chunks else []
        for index in range(len(chunks)):
            ready = pending
            following = chunks[index + 1] if index + 1 < len(chunks) else ()
            pending = [pool.submit(_decode, path, image_size) for path in following]
            yield np.stack([future.result() for future in ready])


# ----------------------------------------------------------------------------------------------------
# ADM .npz batches
# ----------------------------------------------------------------------------------------------------


def _scan_npz(path: Path, image_size: int, resize: bool, reject_duplicates: bool, progress) -> ImageSet:
    shape = adm_npz.images_shape(path)
    if shape is None:
        raise EvalInputError(f"{path} has no '{adm_npz.IMAGES_KEY}' images (keys: {', '.join(adm_npz.npz_keys(path))})")
    count, height, width, _ = shape
    if count == 0:
        raise EvalInputError(f"{path}: '{adm_npz.IMAGES_KEY}' holds no images")
    resized = count if check_size(f"{path} ('{adm_npz.IMAGES_KEY}')", height, width, image_size, resize) else 0
    if reject_duplicates:
        seen: dict[str, int] = {}
        index = 0
        for batch in adm_npz.iter_images(path, 256):
            for image in batch:
                digest = hashlib.sha256(image.tobytes()).hexdigest()
                if digest in seen:
                    raise EvalInputError(
                        f"{path}: image {index} of '{adm_npz.IMAGES_KEY}' equals image {seen[digest]}; "
                        "samples must be distinct images"
                    )
                seen[digest] = index
                index += 1
            if progress is not None:
                progress(f"checking {path.name}", index, count)
    labels = _npz_labels(path, count)
    return ImageSet(path, NPZ, count, image_size, sha256_file(path), labels, resized)


def _npz_labels(path: Path, count: int) -> tuple[int, ...] | None:
    if adm_npz.LABELS_KEY not in adm_npz.npz_keys(path):
        return None
    labels = adm_npz.read_small_array(path, adm_npz.LABELS_KEY)
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        return None  # not class labels in guided-diffusion's layout
    return tuple(int(label) for label in labels)


# ----------------------------------------------------------------------------------------------------
# Resizing
# ----------------------------------------------------------------------------------------------------


def _pil_from_array(array: np.ndarray):
    from PIL import Image

    return Image.fromarray(array)


def _fit(image, image_size: int, origin: Path) -> np.ndarray:
    """The image as uint8 (S, S, 3): unchanged when already S x S, else resized with `RESIZE_RULE`."""
    from PIL import Image

    if image.size != (image_size, image_size):
        while min(image.size) >= 2 * image_size:
            image = image.resize(tuple(side // 2 for side in image.size), resample=Image.BOX)
        scale = image_size / min(image.size)
        image = image.resize(tuple(round(side * scale) for side in image.size), resample=Image.BICUBIC)
    array = np.asarray(image)
    top, left = (array.shape[0] - image_size) // 2, (array.shape[1] - image_size) // 2
    array = array[top:top + image_size, left:left + image_size]
    if array.shape != (image_size, image_size, 3):
        raise EvalInputError(
            f"{origin}: an image could not be brought to {image_size}x{image_size}x3 (got {array.shape})"
        )
    return np.ascontiguousarray(array)
