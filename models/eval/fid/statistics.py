"""`FIDStatistics(mu, sigma)` of Inception features and the Fréchet distance between two of them, in float64.

FID (Heusel et al. 2017) = |mu1 - mu2|^2 + tr(S1) + tr(S2) - 2 tr((S1 S2)^1/2). ADM's evaluator
(openai/guided-diffusion, evaluations/evaluator.py) forms the matrix square root with `scipy.linalg.sqrtm`.
scipy is not a lina dependency, and only the trace of the root is needed: it is the sum of the square roots
of the eigenvalues of S1 S2. For any factor G with S1 = G G^T, S1 S2 = G (G^T S2) has the same non-zero
eigenvalues as G^T S2 G, a symmetric positive semi-definite matrix, so one symmetric eigenvalue solve
(`torch.linalg.eigvalsh`, float64) gives the trace. G is the centred features when a set has no more vectors
than dimensions (an n x n problem, and S1 is singular there anyway), else a Cholesky factor, else (a singular
matrix read from a file) an eigendecomposition. No eps regularisation is needed, unlike ADM's `sqrtm` retry;
eigenvalues below zero are float rounding and are clipped to zero.
"""

from dataclasses import dataclass

import numpy as np

from models.errors import EvalInputError


@dataclass(frozen=True)
class FIDStatistics:
    """Mean (D,) and covariance (D, D) of feature vectors, as float64.

    `factor` (n, D), when present, satisfies sigma = factor^T factor: the centred features over sqrt(n - 1),
    kept by `from_features` for sets of at most D vectors to make the distance an n x n problem.
    """

    mu: np.ndarray
    sigma: np.ndarray
    factor: np.ndarray | None = None

    def __post_init__(self) -> None:
        mu = np.atleast_1d(np.asarray(self.mu, dtype=np.float64))
        sigma = np.atleast_2d(np.asarray(self.sigma, dtype=np.float64))
        if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
            raise EvalInputError(
                f"FID statistics need mu of shape (D,) and sigma (D, D); got {mu.shape} and {sigma.shape}"
            )
        object.__setattr__(self, "mu", mu)
        object.__setattr__(self, "sigma", sigma)

    @classmethod
    def from_features(cls, features: np.ndarray) -> "FIDStatistics":
        """Statistics of features (N, D): the mean and the unbiased covariance, as ADM computes them (numpy.cov)."""
        features = np.asarray(features, dtype=np.float64)
        if features.ndim != 2 or features.shape[0] < 2:
            raise EvalInputError(
                f"a covariance needs at least 2 feature vectors; got an array of shape {features.shape}"
            )
        count, dim = features.shape
        mu = features.mean(axis=0)
        factor = (features - mu) / np.sqrt(count - 1)  # (N, D)
        return cls(mu, factor.T @ factor, factor if count <= dim else None)

    def frechet_distance(self, other: "FIDStatistics") -> float:
        """The Fréchet distance between the Gaussians N(mu, sigma) of `self` and `other` (the FID)."""
        if self.mu.shape != other.mu.shape:
            raise EvalInputError(
                f"feature sizes differ: {self.mu.shape[0]} vs {other.mu.shape[0]}; "
                "both sides need the same extractor layer"
            )
        diff = self.mu - other.mu
        trace_root = trace_sqrt_product(self, other)
        return float(diff @ diff + np.trace(self.sigma) + np.trace(other.sigma) - 2.0 * trace_root)


def trace_sqrt_product(first: FIDStatistics, second: FIDStatistics) -> float:
    """tr((S1 S2)^1/2) of two covariances (symmetric positive semi-definite), in float64."""
    import torch

    # tr((S1 S2)^1/2) = tr((S2 S1)^1/2): factor whichever side has features kept, else try both Cholesky factors.
    if first.factor is None and second.factor is not None:
        first, second = second, first
    sigma2 = torch.from_numpy(second.sigma)
    if first.factor is not None:
        rows = torch.from_numpy(first.factor)  # G^T, (n, D)
        return _sum_sqrt_eigenvalues(rows @ sigma2 @ rows.T)
    for left, right in ((first.sigma, second.sigma), (second.sigma, first.sigma)):
        lower, info = torch.linalg.cholesky_ex(_symmetric(torch.from_numpy(left)))
        if info.item() == 0:  # positive definite: left = L L^T
            return _sum_sqrt_eigenvalues(lower.T @ torch.from_numpy(right) @ lower)
    values, vectors = torch.linalg.eigh(_symmetric(torch.from_numpy(first.sigma)))
    root = vectors * values.clamp_min(0.0).sqrt()  # G with G G^T = S1, (D, D)
    return _sum_sqrt_eigenvalues(root.T @ sigma2 @ root)


def _sum_sqrt_eigenvalues(matrix) -> float:
    import torch

    return float(torch.linalg.eigvalsh(_symmetric(matrix)).clamp_min(0.0).sqrt().sum())


def _symmetric(matrix):
    # eigh and Cholesky read one triangle only; averaging keeps rounding in a stored covariance from picking a side.
    return (matrix + matrix.T) / 2.0
