"""Reading GenEval's .pth safely (weights_only, numpy scalars allowed, anything else refused) and converting it once
into the lina cache."""

import datetime
import json

import numpy as np
import pytest
import torch

from models.errors import GenEvalWeightsError
from models.eval.geneval.detector_weights import (
    DETECTOR_FILE,
    DETECTOR_URL,
    SOURCE_FILE,
    WEIGHTS_FILE,
    convert_once,
    default_detector_checkpoint,
    mmdet_state_dict,
    read_converted,
    read_torch_checkpoint,
)
from tests.models.eval.geneval.factories import save_mmdet_checkpoint


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LINA_CACHE", str(tmp_path / "lina-cache"))
    return tmp_path / "lina-cache"


def test_mmdetection_meta_with_numpy_scalars_loads(tmp_path):
    path = save_mmdet_checkpoint(tmp_path / "m.pth")  # meta holds np.int64 and the class tuple
    checkpoint = read_torch_checkpoint(path)
    assert checkpoint["meta"]["seed"] == 1234 and "backbone.norm0.weight" in mmdet_state_dict(checkpoint, path)


def test_other_objects_are_refused_without_unpickling(tmp_path):
    path = tmp_path / "odd.pth"
    torch.save({"meta": {"time": datetime.datetime(2022, 5, 4)}, "state_dict": {"w": torch.zeros(1)}}, path)
    with pytest.raises(GenEvalWeightsError, match=r"datetime\.datetime.*re-save only its weights"):
        read_torch_checkpoint(path)


def test_not_a_checkpoint(tmp_path):
    path = tmp_path / "text.pth"
    path.write_text("hello")
    with pytest.raises(GenEvalWeightsError, match="not a torch checkpoint"):
        read_torch_checkpoint(path)
    with pytest.raises(GenEvalWeightsError, match="no such file"):
        read_torch_checkpoint(tmp_path / "absent.pth")


def test_a_checkpoint_of_other_classes_is_refused(tmp_path):
    path = tmp_path / "voc.pth"
    torch.save({"meta": {"CLASSES": ("cat", "dog")}, "state_dict": {"w": torch.zeros(1)}}, path)
    with pytest.raises(GenEvalWeightsError, match="other classes than COCO's 80"):
        mmdet_state_dict(read_torch_checkpoint(path), path)


def test_conversion_runs_once_into_the_cache(cache, tmp_path):
    source = save_mmdet_checkpoint(tmp_path / "m.pth")
    first = convert_once(source)
    assert first.folder.parent == cache / "geneval" / "detector" and first.layout == "2.x"
    record = json.loads((first.folder / SOURCE_FILE).read_text())
    assert record == {"name": "m.pth", "sha256": first.source.sha256, "layout": "2.x"}
    written = (first.folder / WEIGHTS_FILE).stat().st_mtime_ns
    again = convert_once(source)
    assert again == first and (first.folder / WEIGHTS_FILE).stat().st_mtime_ns == written
    config, state_dict = read_converted(first.folder)
    assert config.num_labels == 80 and state_dict["criterion.empty_weight"][-1] == pytest.approx(0.1)


def test_missing_default_checkpoint_says_where_to_get_it(cache):
    with pytest.raises(GenEvalWeightsError) as error:
        default_detector_checkpoint()
    assert DETECTOR_URL in str(error.value) and str(cache / "geneval" / "detector") in str(error.value)
    (cache / "geneval" / "detector").mkdir(parents=True)
    (cache / "geneval" / "detector" / DETECTOR_FILE).write_bytes(b"")
    assert default_detector_checkpoint().name == DETECTOR_FILE


def test_numpy_scalars_in_numpy1_naming_are_allowed():
    from models.eval.geneval.detector_weights import allowed_names, numpy_safe_globals

    names = allowed_names(numpy_safe_globals())
    assert {"numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar", "numpy.dtype"} <= names
    assert f"numpy.dtypes.{type(np.dtype('int64')).__name__}" in names
