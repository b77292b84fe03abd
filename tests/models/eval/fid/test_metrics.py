"""Inception Score and KID against torch-fidelity's own functions; precision/recall against the definition."""

import numpy as np
import pytest
import torch

from models.errors import EvalInputError
from models.eval.fid.metrics import inception_score, kernel_inception_distance, precision_recall


def brute_force_precision_recall(reference: np.ndarray, samples: np.ndarray, k: int) -> tuple[float, float]:
    """The definition, point by point: a ball around every vector, radius = distance to its k-th nearest other
    vector of its own set; precision = share of samples inside some reference ball, recall the converse."""

    def radii(points):
        return [sorted(np.linalg.norm(points - point, axis=1))[k] for point in points]  # [0] is the point itself

    def share_inside(points, centres, centre_radii):
        balls = list(zip(centres, centre_radii, strict=True))
        inside = [any(np.linalg.norm(point - centre) <= radius for centre, radius in balls) for point in points]
        return sum(inside) / len(points)

    return share_inside(samples, reference, radii(reference)), share_inside(reference, samples, radii(samples))


@pytest.mark.parametrize("count", [10, 53, 200])
def test_inception_score_matches_torch_fidelity(count):
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD, isc_features_to_metric

    logits = np.random.default_rng(count).normal(size=(count, 1008)).astype(np.float32) * 3
    expected = isc_features_to_metric(torch.from_numpy(logits), splits=10, shuffle=True, rng_seed=2020)
    mean, std = inception_score(logits)
    assert mean == pytest.approx(expected[KEY_METRIC_ISC_MEAN], rel=1e-12)
    assert std == pytest.approx(expected[KEY_METRIC_ISC_STD], rel=1e-9, abs=1e-12)


def test_inception_score_of_one_repeated_prediction_is_one():
    logits = np.tile(np.random.default_rng(0).normal(size=(1, 50)), (30, 1))  # p(y|x) = p(y): KL 0 in every split
    mean, std = inception_score(logits)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_precision_recall_match_the_definition(seed):
    rng = np.random.default_rng(seed)
    reference = rng.normal(size=(60, 8)).astype(np.float32)
    samples = (rng.normal(size=(45, 8)) * 1.3 + 0.4).astype(np.float32)
    expected = brute_force_precision_recall(reference.astype(np.float64), samples.astype(np.float64), k=3)
    assert precision_recall(reference, samples, k=3) == pytest.approx(expected, abs=1e-12)
    assert 0.0 < expected[0] < 1.0 and 0.0 < expected[1] < 1.0  # the data exercises both outcomes


def test_precision_recall_agree_with_torch_fidelity():
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    rng = np.random.default_rng(7)
    reference = torch.from_numpy(rng.normal(size=(80, 16)))
    samples = torch.from_numpy(rng.normal(size=(70, 16)) * 0.8 + 0.2)
    precision, recall = calculate_precision_recall_full(samples, reference, neighborhood=3)  # input1 = generated
    # torch-fidelity averages the booleans in float32
    assert precision_recall(reference.numpy(), samples.numpy()) == pytest.approx((precision, recall), abs=1e-6)


def test_kid_matches_torch_fidelity():
    from torch_fidelity.metric_kid import KEY_METRIC_KID_MEAN, KEY_METRIC_KID_STD, kid_features_to_metric

    rng = np.random.default_rng(11)
    samples = rng.normal(size=(70, 32)).astype(np.float32)
    reference = (rng.normal(size=(90, 32)) * 1.2 + 0.1).astype(np.float32)
    expected = kid_features_to_metric(
        torch.from_numpy(samples), torch.from_numpy(reference), kid_subsets=20, kid_subset_size=50, verbose=False
    )
    mean, std, size = kernel_inception_distance(samples, reference, subsets=20, subset_size=50)
    assert size == 50
    # torch-fidelity's kernels run in float32, lina's in float64
    assert mean == pytest.approx(expected[KEY_METRIC_KID_MEAN], rel=1e-4)
    assert std == pytest.approx(expected[KEY_METRIC_KID_STD], rel=1e-3)


def test_kid_subset_shrinks_to_the_smaller_set():
    rng = np.random.default_rng(5)
    _, _, size = kernel_inception_distance(rng.normal(size=(12, 4)), rng.normal(size=(30, 4)), subsets=3)
    assert size == 12


def test_too_few_images_are_refused():
    with pytest.raises(EvalInputError, match="at least 10 images"):
        inception_score(np.zeros((9, 5)))
    with pytest.raises(EvalInputError, match="more than 3 reference images"):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)))


def test_inception_score_of_underflowing_probabilities_is_finite():
    logits = np.zeros((20, 6))
    logits[:, 0] = 2000.0  # p(y = 0 | x) = 1, the other classes underflow to exactly 0 in float64
    logits[10:, 0], logits[10:, 1] = 0.0, 2000.0
    mean, _ = inception_score(logits, splits=1)
    assert mean == pytest.approx(2.0, rel=1e-12)  # two equally likely, certain classes
