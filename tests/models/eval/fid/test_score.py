"""`score_fid` against a statistics-only reference: what is computed, what is not and why, and the protocol."""

import numpy as np
import pytest
from PIL import Image

from models.eval.fid.score import score_fid
from models.runs.metadata import ImageMetadata
from models.runs.outputs import save_png
from tests.models.eval.fid.helpers import random_images, session_inception_weights

COUNT, CLASSES = 10, 5


def c2i_record(index: int) -> ImageMetadata:
    return ImageMetadata(
        model="lina-c2i-256", repo_id=None, revision=None, task="c2i", index=index, seed=index, prompt=None,
        negative_prompt=None, class_label=index % CLASSES, size=(256, 256), ar_steps=64, diffusion_steps=25, cfg=2.4,
        cfg_min=1.0, dtype="bf16", device="cpu", lina_version="0", torch_version="0",
    )


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("score")
    for index, image in enumerate(random_images(COUNT, seed=40)):
        save_png(Image.fromarray(image), root / "samples" / f"{index:05d}.png", c2i_record(index))
    np.savez(root / "stats.npz", mu=np.zeros(2048), sigma=np.eye(2048) * 0.01)  # a statistics-only reference
    return score_fid(
        root / "samples", root / "stats.npz", inception_weights=session_inception_weights(tmp_path_factory),
        kid=True, generation={"model": "lina-c2i-256", "gpus": 1},
    )


def test_statistics_only_reference_gives_fid_but_no_precision_recall_or_kid(result):
    assert result.fid > 0 and result.inception_score >= 1.0
    assert (result.precision, result.recall, result.kid, result.kid_std, result.sfid) == (None,) * 5
    notes = " | ".join(result.notes)
    assert "precision/recall not computed: the reference has no images" in notes
    assert "KID not computed: the reference holds statistics only" in notes
    assert "sFID not computed" in notes and "not FID-50k: 10 samples" in notes


def test_protocol_records_classes_statistics_and_generation(result):
    protocol = result.protocol
    assert protocol["samples"]["per_class"] == {"classes": CLASSES, "min_per_class": 2, "max_per_class": 2,
                                                "balanced": True}
    assert protocol["reference"]["statistics"].startswith("mu/sigma stored in the file")
    assert protocol["reference"]["images"] is None and protocol["precision_recall"] is None
    assert protocol["generation"] == {"model": "lina-c2i-256", "gpus": 1}
    assert result.to_json()["protocol"] == protocol and result.to_json()["notes"] == list(result.notes)
