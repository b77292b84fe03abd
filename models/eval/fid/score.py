"""`score_fid`: FID, Inception Score, precision/recall and KID of samples, with the protocol that makes them comparable.

An FID without its protocol cannot be compared with another: the result carries the extractor and its weights'
hash, the reference file and its hash, the sample count and class balance, the image size and resize rule, the
device and the versions. A caller that generated the samples adds the sampler settings, model, commit, dtype
and GPUs with `generation`.
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from models.errors import EvalInputError
from models.eval.fid.constants import (
    DEFAULT_REFERENCE,
    FEATURE_BATCH_SIZE,
    FID_50K,
    INCEPTION_NAME,
    IS_SPLITS,
    KID_DEGREE,
    KID_SUBSETS,
    MIN_SAMPLES,
    PR_NEIGHBOURHOOD,
    RESIZE_RULE,
    SFID_REASON,
    SHUFFLE_SEED,
    ProgressCallback,
)
from models.eval.fid.download import fetch_reference
from models.eval.fid.images import ImageSet, scan_images
from models.eval.fid.inception import InceptionWeights, extract_features, load_inception, resolve_inception_weights
from models.eval.fid.metrics import inception_score, kernel_inception_distance, precision_recall
from models.eval.fid.reference import ReferenceSet, cached_features, open_reference, parse_reference
from models.eval.fid.statistics import FIDStatistics
from models.version import __version__

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class FIDResult:
    """The scores of one set of samples. Metrics that could not be computed are None, with the reason in `notes`.

    `fid_50k` is True only for exactly 50 000 samples, the count ADM's protocol and the paper use.
    """

    fid: float
    inception_score: float
    inception_score_std: float
    precision: float | None
    recall: float | None
    kid: float | None
    kid_std: float | None
    sfid: float | None
    num_samples: int
    fid_50k: bool
    notes: tuple[str, ...]
    protocol: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["notes"] = list(self.notes)
        return data


def check_scoring_inputs(
    reference: Path | str, inception_weights: Path | str | None, *, offline: bool, progress: ProgressCallback | None = None
) -> None:
    """Fetch or check the reference and the Inception weights before any sample is generated, so a missing file
    fails in seconds rather than after hours of sampling.

    Raises:
        EvalInputError, ReferenceUnavailableError, InceptionWeightsError: as `score_fid` would.
    """
    ref = parse_reference(reference)
    resolve_inception_weights(None if inception_weights is None else Path(inception_weights), offline=offline)
    if ref.builtin is not None:
        fetch_reference(ref.builtin, offline=offline, progress=progress)


def score_fid(
    samples: Path | str,
    reference: Path | str = DEFAULT_REFERENCE,
    *,
    inception_weights: Path | str | None = None,
    device: "str | torch.device" = "cpu",
    batch_size: int = FEATURE_BATCH_SIZE,
    resize: bool = False,
    kid: bool = False,
    offline: bool = False,
    generation: dict[str, Any] | None = None,
    progress: ProgressCallback | None = None,
) -> FIDResult:
    """Score existing samples against a reference.

    Every input is checked before the first Inception pass: the samples, the Inception weights (downloaded
    into torch hub's cache when none are given and none are cached), then the reference (downloaded into the
    lina cache when it is a built-in name and missing).

    Args:
        samples: a folder of PNG/JPEG images (e.g. one `lina generate` just wrote) or an ADM `.npz` batch.
        reference: `imagenet`, `imagenet-512`, an ADM `.npz` (reference batch, sample batch or `mu`/`sigma`
            statistics) or a folder of images.
        inception_weights: torch-fidelity's InceptionV3 weights; None = its standard file from torch hub's cache,
            downloaded when missing.
        device: where Inception and the precision/recall distances run.
        batch_size: images per Inception forward.
        resize: accept images of another size, resized with `constants.RESIZE_RULE`; otherwise they are an error.
        kid: also compute KID (needs reference images).
        offline: never download.
        generation: how the samples were made (sampler settings, model, commit, dtype, GPUs), stored as
            `protocol["generation"]`.
        progress: called as (task, done, total) while hashing, downloading and running Inception.

    Returns:
        The scores and the protocol.

    Raises:
        EvalInputError, ReferenceUnavailableError, InceptionWeightsError: bad or missing inputs, each naming
            the file and the fix.
    """
    ref = parse_reference(reference)
    sample_set = scan_images(Path(samples), ref.image_size, resize=resize, reject_duplicates=True, progress=progress)
    if sample_set.count < MIN_SAMPLES:
        raise EvalInputError(
            f"{sample_set.path} holds {sample_set.count} image(s); scoring needs at least {MIN_SAMPLES} "
            f"(one per Inception Score split), and FID-50k uses {FID_50K}"
        )
    weights = resolve_inception_weights(None if inception_weights is None else Path(inception_weights), offline=offline)
    ref_set = open_reference(ref, resize=resize, offline=offline, progress=progress)
    model = load_inception(weights, device)

    def features_of(images: ImageSet, task: str):
        return extract_features(model, images.batches(batch_size), images.count, device, task=task, progress=progress)

    sample_features = features_of(sample_set, "Inception: samples")
    ref_pool, cache_hit = None, False
    if ref_set.images is not None:
        ref_pool, cache_hit = cached_features(
            ref_set.images, weights.sha256, lambda: features_of(ref_set.images, "Inception: reference").pool
        )
    ref_stats = ref_set.statistics if ref_set.statistics is not None else FIDStatistics.from_features(ref_pool)
    fid = FIDStatistics.from_features(sample_features.pool).frechet_distance(ref_stats)
    is_mean, is_std = inception_score(sample_features.logits)

    notes = []
    count = sample_set.count
    if count != FID_50K:
        notes.append(f"not FID-50k: {count} samples; ADM's protocol and the paper use {FID_50K}")
    pr, pr_protocol = _precision_recall(ref_pool, sample_features.pool, device, notes)
    kid_values, kid_protocol = _kid(sample_features.pool, ref_pool, notes) if kid else ((None, None), None)
    notes.append(f"sFID {SFID_REASON}")
    if ref.builtin is not None and ref.builtin.sha256 is None:
        notes.append(
            f"no published SHA-256 for {ref.builtin.file_name}: compare protocol.reference.sha256 across machines"
        )
    protocol = _protocol(
        sample_set, ref_set, weights, device, batch_size, resize, cache_hit, pr_protocol, kid_protocol, generation
    )
    return FIDResult(
        fid=fid, inception_score=is_mean, inception_score_std=is_std, precision=pr[0], recall=pr[1],
        kid=kid_values[0], kid_std=kid_values[1], sfid=None, num_samples=count, fid_50k=count == FID_50K,
        notes=tuple(notes), protocol=protocol,
    )


def _precision_recall(ref_pool: np.ndarray | None, sample_pool: np.ndarray, device, notes: list[str]):
    if ref_pool is None or len(ref_pool) <= PR_NEIGHBOURHOOD:
        held = "no images" if ref_pool is None else f"{len(ref_pool)} images"
        notes.append(
            f"precision/recall not computed: the reference has {held} "
            f"(k = {PR_NEIGHBOURHOOD} needs more than {PR_NEIGHBOURHOOD})"
        )
        return (None, None), None
    values = precision_recall(ref_pool, sample_pool, PR_NEIGHBOURHOOD, device=str(device))
    convention = (
        "ADM's ManifoldEstimator: k-th neighbour radii within each set, `<=` counts as inside; float64 distances"
    )
    return values, {"k": PR_NEIGHBOURHOOD, "reference_images": len(ref_pool), "convention": convention}


def _kid(sample_pool: np.ndarray, ref_pool: np.ndarray | None, notes: list[str]):
    if ref_pool is None:
        notes.append("KID not computed: the reference holds statistics only, no images")
        return (None, None), None
    mean, std, size = kernel_inception_distance(sample_pool, ref_pool)
    kernel = f"polynomial (x·y / d + 1)^{KID_DEGREE}, unbiased MMD^2"
    return (mean, std), {"subsets": KID_SUBSETS, "subset_size": size, "seed": SHUFFLE_SEED, "kernel": kernel}


# ----------------------------------------------------------------------------------------------------
# The protocol
# ----------------------------------------------------------------------------------------------------


def _protocol(
    samples: ImageSet,
    ref_set: ReferenceSet,
    weights: InceptionWeights,
    device,
    batch_size: int,
    resize: bool,
    cache_hit: bool,
    precision_recall_protocol: dict[str, Any] | None,
    kid_protocol: dict[str, Any] | None,
    generation: dict[str, Any] | None,
) -> dict[str, Any]:
    import torch
    import torch_fidelity

    count, size = samples.count, samples.image_size
    builtin = ref_set.reference.builtin
    ref_images = ref_set.images
    return {
        "metric": "FID-50k" if count == FID_50K else f"not FID-50k ({count} samples; the protocol uses {FID_50K})",
        "samples": {
            "path": str(samples.path.resolve()), "format": samples.kind, "count": count,
            "content_sha256": samples.content_sha256, "per_class": samples.class_balance(), "resized": samples.resized,
        },
        "reference": {
            "name": builtin.name if builtin is not None else None,
            "path": str(ref_set.path.resolve()),
            "url": builtin.url if builtin is not None else None,
            "sha256": ref_set.sha256,
            "sha256_expected": builtin.sha256 if builtin is not None else None,
            "statistics": "mu/sigma stored in the file, used as they are" if ref_set.statistics is not None
            else f"computed from its {ref_images.count} images",
            "images": ref_images.count if ref_images is not None else None,
            "resized": ref_images.resized if ref_images is not None else 0,
            "features_from_cache": cache_hit,
        },
        "image_size": size,
        "resize": RESIZE_RULE if resize else f"none: every image must be {size}x{size}",
        "extractor": {
            "name": INCEPTION_NAME,
            "implementation": f"torch-fidelity {torch_fidelity.__version__} FeatureExtractorInceptionV3",
            "features": {"fid": "2048 (pool_3)", "inception_score": "logits_unbiased"},
            "input": "uint8 RGB, resized to 299x299 inside the network (TF1 bilinear), float32, TF32 off",
            "weights": str(weights.path.resolve()),
            "weights_sha256": weights.sha256,
            "weights_standard": weights.standard,
        },
        "fid": {"dtype": "float64", "trace_sqrt": "eigenvalues of G^T sigma2 G with sigma1 = G G^T (torch.linalg)"},
        "inception_score": {"splits": IS_SPLITS, "shuffle_seed": SHUFFLE_SEED, "convention": "torch-fidelity"},
        "precision_recall": precision_recall_protocol,
        "kid": kid_protocol,
        "sfid": SFID_REASON,
        "device": _describe_device(device),
        "batch_size": batch_size,
        "versions": {
            "lina": __version__, "torch": torch.__version__, "torch_fidelity": torch_fidelity.__version__,
            "numpy": np.__version__,
        },
        "generation": generation,
    }


def _describe_device(device) -> str:
    import torch

    device = torch.device(device)
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)
