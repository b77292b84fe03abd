"""torch-fidelity's InceptionV3 as lina loads it: which weight files are refused, and the features it returns."""

import shutil

import numpy as np
import pytest
import torch

from models.errors import InceptionWeightsError, ReferenceUnavailableError
from models.eval.fid.constants import INCEPTION_WEIGHTS_NAMES, INCEPTION_WEIGHTS_SHA256
from models.eval.fid.inception import (
    extract_features,
    full_float32,
    inception_weights_url,
    load_inception,
    resolve_inception_weights,
)
from tests.models.eval.fid.helpers import random_images, session_inception_weights


class NotATensor:
    """An object torch.load(weights_only=True) must refuse to rebuild."""


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    return session_inception_weights(tmp_path_factory)


def test_random_weights_are_accepted_but_not_standard(weights_file):
    weights = resolve_inception_weights(weights_file)
    assert len(weights.sha256) == 64 and weights.sha256 != INCEPTION_WEIGHTS_SHA256 and not weights.standard


def test_a_file_named_like_the_standard_weights_must_have_their_hash(tmp_path, weights_file):
    impostor = tmp_path / INCEPTION_WEIGHTS_NAMES[0]
    shutil.copy(weights_file, impostor)
    with pytest.raises(InceptionWeightsError, match=f"its SHA-256 is [0-9a-f]{{64}}, not {INCEPTION_WEIGHTS_SHA256}"):
        resolve_inception_weights(impostor)


def test_pickled_objects_are_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"fc.weight": torch.zeros(1), "payload": NotATensor()}, path)
    with pytest.raises(InceptionWeightsError, match=r"refused: torch.load\(weights_only=True\)"):
        load_inception(resolve_inception_weights(path), "cpu")


def test_a_state_dict_of_another_network_is_refused(tmp_path):
    path = tmp_path / "other.pth"
    torch.save({"weight": torch.zeros(3)}, path)
    with pytest.raises(InceptionWeightsError, match="does not fit torch-fidelity's InceptionV3"):
        load_inception(resolve_inception_weights(path), "cpu")


def test_missing_weights(tmp_path, monkeypatch):
    with pytest.raises(InceptionWeightsError, match="no such file"):
        resolve_inception_weights(tmp_path / "nowhere.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))  # torch hub's cache, empty
    with pytest.raises(ReferenceUnavailableError) as error:
        resolve_inception_weights(None, offline=True)
    message = str(error.value)
    assert inception_weights_url() in message and str(tmp_path / "torch-home") in message
    assert "--inception-weights FILE" in message


def test_features_do_not_depend_on_the_batch_size(weights_file):
    model = load_inception(resolve_inception_weights(weights_file), "cpu")
    images = random_images(3, seed=0)
    whole = extract_features(model, [images], 3, "cpu")
    single = extract_features(model, [images[:1], images[1:2], images[2:]], 3, "cpu")
    assert whole.pool.shape == (3, 2048) and whole.logits.shape == (3, 1008)
    assert whole.pool.dtype == np.float32 and np.isfinite(whole.pool).all()
    np.testing.assert_allclose(single.pool, whole.pool, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(single.logits, whole.logits, rtol=1e-4, atol=1e-3)  # logits of order 10
    assert whole.pool.std(axis=0).mean() > 1e-3  # the random network still tells the images apart


def test_full_float32_restores_the_tf32_switches():
    conv = torch.backends.cudnn.conv
    before = conv.fp32_precision
    with full_float32():
        assert conv.fp32_precision == "ieee"
    assert conv.fp32_precision == before
