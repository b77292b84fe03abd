"""Inception Score, precision/recall (ADM's k-NN manifolds) and KID, computed from Inception features.

Conventions follow the tools the numbers are compared with: the Inception Score as torch-fidelity computes
it (`metric_isc.py`: shuffled with a fixed seed, 10 splits, mean and population std), precision/recall as
ADM's `ManifoldEstimator` (openai/guided-diffusion, evaluations/evaluator.py; Kynkäänniemi et al. 2019) and
KID as torch-fidelity's unbiased polynomial-kernel MMD over random subsets (`metric_kid.py`; Binkowski et al.
2018). Everything is float64.
"""

import numpy as np

from models.errors import EvalInputError
from models.eval.fid.constants import (
    IS_SPLITS,
    KID_COEF0,
    KID_DEGREE,
    KID_SUBSET_SIZE,
    KID_SUBSETS,
    PR_NEIGHBOURHOOD,
    SHUFFLE_SEED,
)

DISTANCE_BLOCK_ELEMENTS = 2**26  # float64 distances held at once by precision/recall: 512 MiB


def inception_score(logits: np.ndarray, splits: int = IS_SPLITS, seed: int = SHUFFLE_SEED) -> tuple[float, float]:
    """exp(E_x KL(p(y|x) || p(y))) per split, then the mean and std over splits.

    Args:
        logits: (N, C) classifier logits (torch-fidelity's `logits_unbiased`), N >= splits.
        splits: number of equal splits; split i holds rows [i N / splits, (i + 1) N / splits) after the shuffle.
        seed: the shuffle's `numpy.random.RandomState` seed (torch-fidelity's default order).

    Returns:
        (mean, std) of the per-split scores.
    """
    logits = np.asarray(logits, dtype=np.float64)
    count = logits.shape[0]
    if count < splits:
        raise EvalInputError(f"the Inception Score needs at least {splits} images (one per split); got {count}")
    logits = logits[np.random.RandomState(seed).permutation(count)]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))  # log softmax, (N, C)
    p = np.exp(log_p)
    scores = []
    for split in range(splits):
        rows = slice(split * count // splits, (split + 1) * count // splits)
        marginal = p[rows].mean(axis=0, keepdims=True)  # p(y) over the split, (1, C)
        # 0 log 0 = 0: a class whose probability underflows to 0 in every image of the split adds nothing
        # (torch-fidelity gets NaN there); where p(y|x) > 0, p(y) > 0 too.
        terms = np.where(p[rows] > 0, p[rows] * (log_p[rows] - np.log(np.where(marginal > 0, marginal, 1.0))), 0.0)
        scores.append(np.exp(terms.sum(axis=1).mean()))
    return float(np.mean(scores)), float(np.std(scores))


# ----------------------------------------------------------------------------------------------------
# Precision and recall
# ----------------------------------------------------------------------------------------------------


def precision_recall(
    reference: np.ndarray, samples: np.ndarray, k: int = PR_NEIGHBOURHOOD, device: str = "cpu"
) -> tuple[float, float]:
    """ADM's improved precision and recall.

    Each feature vector gets a ball whose radius is the distance to its k-th nearest neighbour in its own set
    (itself excluded). Precision is the fraction of samples inside some reference ball, recall the fraction of
    reference vectors inside some sample ball; a point on a sphere counts as inside (ADM's `<=`).

    Args:
        reference, samples: (N_r, D) and (N_s, D) feature vectors, each set with more than k rows.
        k: the neighbourhood size (ADM: 3).
        device: where the pairwise distances are computed ("cpu", "cuda", ...).

    Returns:
        (precision, recall).
    """
    import torch

    for name, features in (("reference", reference), ("samples", samples)):
        if len(features) <= k:
            raise EvalInputError(
                f"precision/recall with k = {k} needs more than {k} {name} images; got {len(features)}"
            )
    ref = torch.as_tensor(np.asarray(reference), device=device).to(torch.float64)
    smp = torch.as_tensor(np.asarray(samples), device=device).to(torch.float64)
    ref_radii = _kth_neighbour_squared(ref, k)
    smp_radii = _kth_neighbour_squared(smp, k)
    precision = _inside_any_ball(smp, ref, ref_radii).mean().item()
    recall = _inside_any_ball(ref, smp, smp_radii).mean().item()
    return precision, recall


def _squared_distances(rows, columns):
    """|a - b|^2 for every pair, (R, C); clamped at 0 against rounding."""
    norms_rows = rows.square().sum(dim=1, keepdim=True)  # (R, 1)
    norms_columns = columns.square().sum(dim=1)[None, :]  # (1, C)
    return (norms_rows + norms_columns - 2.0 * rows @ columns.T).clamp_min_(0.0)


def _row_chunks(count: int, columns: int) -> list[slice]:
    step = max(1, DISTANCE_BLOCK_ELEMENTS // max(columns, 1))
    return [slice(start, min(start + step, count)) for start in range(0, count, step)]


def _kth_neighbour_squared(features, k: int):
    """Squared distance of each row to its k-th nearest other row, (N,): position k of the sorted row, as the
    row's own distance (zero) comes first."""
    import torch

    radii = [
        torch.topk(_squared_distances(features[rows], features), k + 1, dim=1, largest=False).values[:, k]
        for rows in _row_chunks(len(features), len(features))
    ]
    return torch.cat(radii)


def _inside_any_ball(points, centres, squared_radii):
    """For each point, whether it lies within some centre's ball, as float (P,)."""
    import torch

    inside = [
        (_squared_distances(points[rows], centres) <= squared_radii[None, :]).any(dim=1)
        for rows in _row_chunks(len(points), len(centres))
    ]
    return torch.cat(inside).to(torch.float64)


# ----------------------------------------------------------------------------------------------------
# Kernel Inception Distance
# ----------------------------------------------------------------------------------------------------


def kernel_inception_distance(
    samples: np.ndarray,
    reference: np.ndarray,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = SHUFFLE_SEED,
) -> tuple[float, float, int]:
    """The unbiased MMD^2 with the kernel (x·y / D + 1)^3, averaged over random subsets.

    Args:
        samples, reference: (N_s, D) and (N_r, D) features.
        subsets: number of subset pairs.
        subset_size: rows per subset, lowered to the smaller set's size when a set is smaller.
        seed: `numpy.random.RandomState` seed; each subset draws the sample rows, then the reference rows,
            without replacement (torch-fidelity's order).

    Returns:
        (mean, std, subset size used).
    """
    x = np.asarray(samples, dtype=np.float64)
    y = np.asarray(reference, dtype=np.float64)
    size = min(subset_size, len(x), len(y))
    if size < 2:
        raise EvalInputError(
            f"KID needs at least 2 images on each side; got {len(x)} samples and {len(y)} reference images"
        )
    rng = np.random.RandomState(seed)
    values = np.array([
        _mmd2_unbiased(x[rng.choice(len(x), size, replace=False)], y[rng.choice(len(y), size, replace=False)])
        for _ in range(subsets)
    ])
    return float(values.mean()), float(values.std()), size


def _polynomial_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + KID_COEF0) ** KID_DEGREE


def _mmd2_unbiased(a: np.ndarray, b: np.ndarray) -> float:
    m = len(a)
    k_aa, k_bb, k_ab = _polynomial_kernel(a, a), _polynomial_kernel(b, b), _polynomial_kernel(a, b)
    within = (k_aa.sum() - np.trace(k_aa) + k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))  # diagonals left out
    return float(within - 2.0 * k_ab.sum() / (m * m))
