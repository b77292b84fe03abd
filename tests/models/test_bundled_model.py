"""The model that ships inside the package, `lina-shapes`: found offline, loaded by the path every folder takes,
its sampler defaults, single coloured objects drawn as asked (judged by the shapes benchmark's detector), and the
quick start's picture pinned.

The pinned numbers were made by this test's own code on the CPU in float32 (`load_pipeline("lina-shapes",
device="cpu")`, the folder's sampler defaults, seed 0) when the weights were added; they change only when the
weights, the sampler or the network change (then remake them and say why in the CHANGELOG).
"""

import fnmatch
from pathlib import Path

import numpy as np
import pytest

from models import load_pipeline
from models.bundled import bundled_model_path
from models.constants import BUNDLED_MODELS
from models.data.shapes_prompts import colors
from models.eval.shapes.benchmark import score_image
from models.pipeline.hub import resolve_model_path
from models.sampling.settings import SamplingSettings

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parents[2]
ALIAS = "lina-shapes"
SAMPLING = SamplingSettings(ar_steps=32, diffusion_steps=25, cfg=2.0, cfg_min=None)
QUICK_START_PROMPT = "a photo of a red circle"  # README's quick start
# Row 64 (the middle) of the 128×128 RGB image at seed 0, every 8th pixel's red channel; the sum of all values.
PINNED_ROW = [128, 128, 128, 128, 127, 126, 217, 221, 222, 221, 126, 128, 128, 128, 128, 128]
PINNED_SUM = 6_136_559
BUNDLE_LIMIT_BYTES = 20_000_000  # the repository's budget for shipped binaries


@pytest.fixture(scope="module")
def pipeline():
    return load_pipeline(ALIAS, device="cpu")


@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    """Offline, with an empty hub cache: anything that tried the hub would fail."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hub-cache"))


def test_the_alias_resolves_to_the_package_folder_offline(no_hub):
    folder = resolve_model_path(ALIAS)
    assert folder == bundled_model_path(ALIAS) and (folder / "model_index.json").is_file()
    assert folder.parent == REPO_ROOT / "models" / "bundled"


def test_it_loads_like_any_folder_with_its_own_sampler_defaults(no_hub, pipeline):
    assert (pipeline.source.name, pipeline.source.repo_id, pipeline.source.revision) == (ALIAS, None, None)
    config = pipeline.transformer.config
    card = BUNDLED_MODELS[ALIAS]
    assert (config.task, config.image_size[0], config.attention) == (card["task"], card["resolution"], "linear")
    assert pipeline.sampling_defaults == SAMPLING


def test_the_files_fit_the_budget_and_the_wheel_ships_them_all():
    folder = bundled_model_path(ALIAS)
    files = [path for path in folder.rglob("*") if path.is_file()]
    assert sum(path.stat().st_size for path in files) <= BUNDLE_LIMIT_BYTES
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["package-data"]["models.bundled"]
    for path in files:
        relative = path.relative_to(folder.parent).as_posix()
        assert any(fnmatch.fnmatchcase(relative, pattern) and pattern.count("/") == relative.count("/")
                   for pattern in patterns), relative


@pytest.mark.parametrize("shape, colour", [("circle", "red"), ("square", "blue"), ("triangle", "yellow")])
def test_a_single_coloured_object_is_drawn_as_asked(pipeline, shape, colour):
    metadata = colors(shape, colour)
    image = pipeline(metadata["prompt"], seed=0).images[0]
    detections, verdict = score_image(image, metadata)
    assert verdict.correct, (metadata["prompt"], verdict.reason, detections)


def test_the_quick_start_picture_is_pinned(pipeline):
    image = pipeline(QUICK_START_PROMPT, seed=0).images[0]
    pixels = np.asarray(image).astype(np.int64)
    assert pixels.shape == (128, 128, 3)
    # float32 on other CPUs sums in another order: a pixel may move by a level or two
    assert np.abs(pixels[64, ::8, 0] - np.array(PINNED_ROW)).max() <= 2
    assert abs(int(pixels.sum()) - PINNED_SUM) <= 2_000
