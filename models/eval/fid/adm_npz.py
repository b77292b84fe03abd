"""ADM's `.npz` batches: `arr_0` images (uint8, N x H x W x 3), optional `arr_1` class labels, `mu`/`sigma`.

A 50 000-image batch is 9.8 GB, so `arr_0` is read and written a batch at a time straight from the zip
member, through numpy's `.npy` header functions, never as one array. Files written here load with
`numpy.load` and with ADM's evaluator (openai/guided-diffusion, evaluations/evaluator.py).
"""

import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from models.errors import EvalInputError
from models.files import write_atomic

IMAGES_KEY = "arr_0"
LABELS_KEY = "arr_1"  # guided-diffusion's image_sample.py stores the class labels here
MU_KEY, SIGMA_KEY = "mu", "sigma"


def npz_keys(path: Path) -> list[str]:
    """The array names in an `.npz` file, without reading the arrays."""
    try:
        with zipfile.ZipFile(path) as archive:
            return [name.removesuffix(".npy") for name in archive.namelist() if name.endswith(".npy")]
    except (zipfile.BadZipFile, OSError) as error:
        raise EvalInputError(f"{path} is not a readable .npz file ({error})") from error


def read_small_array(path: Path, key: str) -> np.ndarray:
    """One array of an `.npz` (statistics, labels), loaded whole; pickled objects are refused."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return npz[key]
    except (ValueError, OSError, KeyError) as error:
        raise EvalInputError(f"{path}: cannot read '{key}' ({error})") from error


def images_shape(path: Path) -> tuple[int, int, int, int] | None:
    """The shape (N, H, W, 3) of `arr_0`, read from its header only; None when the file has no `arr_0`."""
    if IMAGES_KEY not in npz_keys(path):
        return None
    with zipfile.ZipFile(path) as archive, archive.open(IMAGES_KEY + ".npy") as member:
        return _read_header(member, path)


def iter_images(path: Path, batch_size: int) -> Iterator[np.ndarray]:
    """`arr_0` in order, as uint8 arrays (B, H, W, 3) of at most `batch_size` images."""
    with zipfile.ZipFile(path) as archive, archive.open(IMAGES_KEY + ".npy") as member:
        count, height, width, channels = _read_header(member, path)
        image_bytes = height * width * channels
        for start in range(0, count, batch_size):
            rows = min(batch_size, count - start)
            data = member.read(rows * image_bytes)
            if len(data) != rows * image_bytes:
                read = start + len(data) // image_bytes
                raise EvalInputError(f"{path}: '{IMAGES_KEY}' ends after {read} of {count} images (truncated file)")
            yield np.frombuffer(data, dtype=np.uint8).reshape(rows, height, width, channels)


def _read_header(member, path: Path) -> tuple[int, int, int, int]:
    version = np.lib.format.read_magic(member)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
    else:
        raise EvalInputError(f"{path}: '{IMAGES_KEY}' uses .npy format {version}; expected 1.0 or 2.0 (numpy.savez)")
    if dtype != np.uint8 or len(shape) != 4 or shape[3] != 3 or fortran_order:
        raise EvalInputError(
            f"{path}: '{IMAGES_KEY}' is {dtype} of shape {shape}; ADM batches hold uint8 images N x H x W x 3 "
            "(RGB, C order)"
        )
    return shape


def write_adm_npz(
    path: Path,
    batches: Iterable[np.ndarray],
    count: int,
    image_size: int,
    labels: np.ndarray | None = None,
) -> None:
    """Write an ADM batch atomically: `arr_0` from uint8 batches (B, S, S, 3), and `arr_1` when labels are given.

    Args:
        path: the `.npz` to write (replaced only once complete).
        batches: the images in order; they must add up to `count`.
        count: number of images, written in the header before the pixels.
        image_size: S, the side of every image.
        labels: optional (count,) integer class labels.
    """
    shape = (count, image_size, image_size, 3)

    def write(tmp: Path) -> None:
        # ZIP_STORED as numpy.savez; zip64 because arr_0 of a 50 000-image batch is larger than 4 GiB.
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
            with archive.open(IMAGES_KEY + ".npy", "w", force_zip64=True) as member:
                descr = np.lib.format.dtype_to_descr(np.dtype(np.uint8))
                np.lib.format.write_array_header_1_0(member, {"descr": descr, "fortran_order": False, "shape": shape})
                written = 0
                for batch in batches:
                    if batch.dtype != np.uint8 or batch.shape[1:] != shape[1:]:
                        raise EvalInputError(f"cannot pack a {batch.dtype} batch of shape {batch.shape} into {shape}")
                    member.write(np.ascontiguousarray(batch).tobytes())
                    written += len(batch)
                if written != count:
                    raise EvalInputError(f"{path}: {written} images were given for an arr_0 of {count}")
            if labels is not None:
                with archive.open(LABELS_KEY + ".npy", "w") as member:
                    np.lib.format.write_array(member, np.asarray(labels, dtype=np.int64), allow_pickle=False)

    write_atomic(Path(path), write)
