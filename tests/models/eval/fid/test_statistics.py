"""The Fréchet distance against closed forms and against the eigenvalues of S1 S2 taken directly."""

import numpy as np
import pytest

from models.errors import EvalInputError
from models.eval.fid.statistics import FIDStatistics, trace_sqrt_product


def direct_trace_sqrt(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr((S1 S2)^1/2) from the (non-symmetric) eigenvalues of S1 S2, a second formulation."""
    return float(np.sqrt(np.linalg.eigvals(sigma1 @ sigma2).astype(complex)).real.sum())


def closed_form_diagonal(mu1, var1, mu2, var2) -> float:
    """FID of N(mu1, diag(var1)) and N(mu2, diag(var2)): |mu1 - mu2|^2 + sum (sqrt(var1) - sqrt(var2))^2."""
    return float(np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2))


@pytest.mark.parametrize(("count", "dim"), [(10, 2048), (12, 128), (200, 16)])
def test_a_set_against_itself_is_zero(count, dim):
    features = np.random.default_rng(0).normal(size=(count, dim))
    stats = FIDStatistics.from_features(features)
    assert abs(stats.frechet_distance(stats)) < 1e-7 * np.trace(stats.sigma)
    if dim <= 128:  # a 2048-wide eigendecomposition takes seconds on two cores
        # Without the kept factor (statistics read from a file) the Cholesky or eigh route gives zero too.
        bare = FIDStatistics(stats.mu, stats.sigma)
        assert abs(bare.frechet_distance(bare)) < 1e-6 * np.trace(stats.sigma)


@pytest.mark.parametrize("singular", [False, True])
def test_diagonal_gaussians_match_the_closed_form(singular):
    rng = np.random.default_rng(1)
    dim = 32
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    var1, var2 = rng.uniform(0.1, 3.0, size=dim), rng.uniform(0.1, 3.0, size=dim)
    if singular:  # zero variances: no Cholesky factor on either side, the eigendecomposition route
        var1[:5] = 0.0
        var2[3:9] = 0.0
    first, second = FIDStatistics(mu1, np.diag(var1)), FIDStatistics(mu2, np.diag(var2))
    expected = closed_form_diagonal(mu1, var1, mu2, var2)
    assert first.frechet_distance(second) == pytest.approx(expected, rel=1e-10)
    assert second.frechet_distance(first) == pytest.approx(expected, rel=1e-10)


def test_sampled_gaussian_features_approach_the_closed_form():
    rng = np.random.default_rng(2)
    dim, count = 6, 200_000
    mu1, mu2 = rng.normal(size=dim), rng.normal(size=dim)
    var1, var2 = rng.uniform(0.5, 2.0, size=dim), rng.uniform(0.5, 2.0, size=dim)
    first = FIDStatistics.from_features(mu1 + rng.normal(size=(count, dim)) * np.sqrt(var1))
    second = FIDStatistics.from_features(mu2 + rng.normal(size=(count, dim)) * np.sqrt(var2))
    assert first.frechet_distance(second) == pytest.approx(closed_form_diagonal(mu1, var1, mu2, var2), abs=0.03)


@pytest.mark.parametrize(("count1", "count2"), [(300, 200), (20, 300), (300, 12), (15, 9)])
def test_trace_root_agrees_with_the_direct_eigenvalues(count1, count2):
    rng = np.random.default_rng(count1 * 1000 + count2)
    dim = 48
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    first = FIDStatistics.from_features(rng.normal(size=(count1, dim)) @ mixing)
    second = FIDStatistics.from_features(rng.normal(size=(count2, dim)) @ mixing * 1.5 + 0.3)
    expected = direct_trace_sqrt(first.sigma, second.sigma)
    assert trace_sqrt_product(first, second) == pytest.approx(expected, rel=1e-7)
    assert trace_sqrt_product(FIDStatistics(first.mu, first.sigma), second) == pytest.approx(expected, rel=1e-7)
    assert (first.factor is not None) == (count1 <= dim)  # the n x n route only where S1 is singular


def test_from_features_is_numpy_cov():
    features = np.random.default_rng(3).normal(size=(40, 7)).astype(np.float32)
    stats = FIDStatistics.from_features(features)
    np.testing.assert_allclose(stats.sigma, np.cov(features, rowvar=False), rtol=1e-10)
    np.testing.assert_allclose(stats.mu, features.astype(np.float64).mean(axis=0), rtol=1e-12)
    assert stats.mu.dtype == stats.sigma.dtype == np.float64


def test_bad_shapes_are_refused():
    with pytest.raises(EvalInputError, match="same extractor layer"):
        FIDStatistics(np.zeros(3), np.eye(3)).frechet_distance(FIDStatistics(np.zeros(4), np.eye(4)))
    with pytest.raises(EvalInputError, match="mu of shape"):
        FIDStatistics(np.zeros(3), np.eye(4))
    with pytest.raises(EvalInputError, match="at least 2"):
        FIDStatistics.from_features(np.zeros((1, 5)))
