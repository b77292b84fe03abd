"""The reference side of FID: `imagenet`, `imagenet-512`, an ADM `.npz`, or a folder; and its cached features.

An `.npz` may be an ADM reference batch (`mu`, `sigma` and `arr_0` images), a sample batch (`arr_0` only) or
a statistics file (`mu`, `sigma` only). Stored `mu`/`sigma` are used as they are, as ADM's evaluator does;
images give precision/recall and KID, and the statistics when none are stored. Reference features are cached
in the lina cache under a key made of the images' content hash, the Inception weights' hash and the reading
rule, so scoring many runs against ADM's 10 000 images runs Inception over them once.
"""

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.errors import EvalInputError, ReferenceUnavailableError
from models.eval.fid import adm_npz
from models.eval.fid.constants import (
    BUILTIN_REFERENCES,
    FEATURES_FOLDER,
    IMAGE_SIZE,
    INCEPTION_NAME,
    MIN_REFERENCE_IMAGES,
    BuiltinReference,
    ProgressCallback,
    lina_cache_dir,
)
from models.eval.fid.download import fetch_reference
from models.eval.fid.images import ImageSet, scan_images, sha256_file
from models.eval.fid.statistics import FIDStatistics
from models.files import write_atomic

logger = logging.getLogger(__name__)

BUILTIN, NPZ, FOLDER = "builtin", "npz", "folder"
FEATURE_CACHE_VERSION = 1  # bump when cached features change meaning


@dataclass(frozen=True)
class Reference:
    """What the reference argument names, before anything is read or downloaded.

    `path` is None for a built-in batch that is fetched on `open_reference`. `image_size` is the side every
    sample must have: the built-in batch's, else 256 (the c2i model's).
    """

    spec: str
    kind: str
    path: Path | None
    builtin: BuiltinReference | None
    image_size: int


@dataclass(frozen=True)
class ReferenceSet:
    """An opened reference: its file (or folder), identity, stored statistics and images, either may be absent."""

    reference: Reference
    path: Path
    sha256: str
    statistics: FIDStatistics | None
    images: ImageSet | None


def parse_reference(spec: str | Path) -> Reference:
    """Read the reference argument: a built-in name, an `.npz` file or a folder of images.

    Raises:
        EvalInputError: anything else, with the allowed forms.
    """
    text = str(spec)
    if text in BUILTIN_REFERENCES:
        builtin = BUILTIN_REFERENCES[text]
        return Reference(text, BUILTIN, None, builtin, builtin.image_size)
    path = Path(text).expanduser()
    if path.is_dir():
        return Reference(text, FOLDER, path, None, IMAGE_SIZE)
    if path.is_file() and path.suffix.lower() == ".npz":
        return Reference(text, NPZ, path, None, IMAGE_SIZE)
    names = ", ".join(BUILTIN_REFERENCES)
    problem = "does not exist" if not path.exists() else "is not an .npz file or a folder"
    raise EvalInputError(f"reference {text!r} {problem}; give one of {names}, an ADM .npz batch, or a folder of images")


def open_reference(
    reference: Reference, *, resize: bool, offline: bool = False, progress: ProgressCallback | None = None
) -> ReferenceSet:
    """Fetch (built-in batches) and check a reference, reading its statistics but no pixels.

    Raises:
        EvalInputError: an `.npz` with `mu` but no `sigma` (or the reverse), with neither statistics nor images,
            or with too few images to estimate statistics; a folder with too few images.
        ReferenceUnavailableError: a built-in batch that is not cached and cannot be downloaded, or whose
            SHA-256 differs from the published one.
    """
    if reference.builtin is not None:
        path = fetch_reference(reference.builtin, offline=offline, progress=progress)
    else:
        path = reference.path
    if reference.kind == FOLDER:
        images = scan_images(path, reference.image_size, resize=resize, reject_duplicates=False, progress=progress)
        _check_enough(images, path)
        return ReferenceSet(reference, path, images.content_sha256, None, images)
    keys = adm_npz.npz_keys(path)
    statistics = _stored_statistics(path, keys)
    images = None
    if adm_npz.IMAGES_KEY in keys:
        images = scan_images(path, reference.image_size, resize=resize, reject_duplicates=False, progress=progress)
    if statistics is None and images is None:
        raise EvalInputError(
            f"{path} holds neither '{adm_npz.MU_KEY}'/'{adm_npz.SIGMA_KEY}' statistics nor '{adm_npz.IMAGES_KEY}' "
            f"images (keys: {', '.join(keys) or 'none'}); give an ADM reference batch"
        )
    if statistics is None:
        _check_enough(images, path)
    sha256 = images.content_sha256 if images is not None else sha256_file(path)
    expected = reference.builtin.sha256 if reference.builtin is not None else None
    if expected is not None and sha256 != expected:
        raise ReferenceUnavailableError(
            f"{path} has SHA-256 {sha256}, not {expected} (ADM's {reference.builtin.file_name}); "
            "delete it and run again to download it afresh"
        )
    return ReferenceSet(reference, path, sha256, statistics, images)


def _stored_statistics(path: Path, keys: list[str]) -> FIDStatistics | None:
    has_mu, has_sigma = adm_npz.MU_KEY in keys, adm_npz.SIGMA_KEY in keys
    if has_mu != has_sigma:
        present, missing = (adm_npz.MU_KEY, adm_npz.SIGMA_KEY) if has_mu else (adm_npz.SIGMA_KEY, adm_npz.MU_KEY)
        raise EvalInputError(f"{path} has '{present}' but no '{missing}'; FID statistics need both")
    if not has_mu:
        return None
    mu, sigma = (adm_npz.read_small_array(path, key) for key in (adm_npz.MU_KEY, adm_npz.SIGMA_KEY))
    return FIDStatistics(mu, sigma)


def _check_enough(images: ImageSet, path: Path) -> None:
    if images.count < MIN_REFERENCE_IMAGES:
        raise EvalInputError(
            f"{path} has no '{adm_npz.MU_KEY}'/'{adm_npz.SIGMA_KEY}' and only {images.count} image(s); statistics and "
            f"precision/recall need at least {MIN_REFERENCE_IMAGES} (ADM's reference batches hold 10 000)"
        )


# ----------------------------------------------------------------------------------------------------
# Feature cache
# ----------------------------------------------------------------------------------------------------


def feature_cache_path(images: ImageSet, weights_sha256: str) -> Path:
    """Where the pool_3 features of `images` under these weights are cached (whether or not they are)."""
    from torch_fidelity import __version__ as fidelity_version

    # Everything the features depend on: the pixels' files, the reading rule, the network and its weights.
    parts = (
        f"v{FEATURE_CACHE_VERSION}", images.content_sha256, f"size={images.image_size}",
        f"resized={images.resized > 0}", INCEPTION_NAME, f"torch-fidelity={fidelity_version}", weights_sha256,
    )
    key = hashlib.sha256("\n".join(parts).encode()).hexdigest()
    return lina_cache_dir() / FEATURES_FOLDER / f"{key}.npy"


def cached_features(
    images: ImageSet, weights_sha256: str, compute: Callable[[], np.ndarray]
) -> tuple[np.ndarray, bool]:
    """The pool_3 features (N, 2048) of a reference's images: from the cache, or computed and stored.

    Returns:
        (features, whether they came from the cache).
    """
    path = feature_cache_path(images, weights_sha256)
    if path.is_file():
        try:
            features = np.load(path, allow_pickle=False)
        except (ValueError, OSError) as error:
            logger.warning("ignoring an unreadable feature cache file %s (%s)", path, error)
        else:
            if features.ndim == 2 and features.shape[0] == images.count:
                return features, True
            logger.warning("ignoring %s: it holds %s features for %d images", path, features.shape, images.count)
    features = compute()

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as handle:
            np.save(handle, features, allow_pickle=False)

    write_atomic(path, write)
    return features, False
