"""The bundled `lina-shapes` through the CLI, offline with an empty hub cache: generate, download, models."""

import json

import pytest

from models.bundled import bundled_model_path
from models.runs.metadata import read_metadata

ALIAS = "lina-shapes"


@pytest.fixture
def offline_env(tmp_path):
    return {"HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "empty-hub-cache")}


def test_generate_runs_offline_with_the_folder_sampler_defaults(lina, tmp_path, offline_env):
    result = lina("generate", "a photo of a red circle", "-m", ALIAS, "-s", "0", "--device", "cpu",
                  "-o", tmp_path / "circle.png", env=offline_env)
    assert result.exit_code == 0, result.output
    record = read_metadata(tmp_path / "circle.png")
    assert (record.model, record.size, record.seed) == (ALIAS, (128, 128), 0)
    own = json.loads((bundled_model_path(ALIAS) / "model_index.json").read_text())["lina_sampling"]
    assert own == {"ar_steps": 32, "diffusion_steps": 25, "cfg": 2.0, "cfg_min": None}
    assert (record.ar_steps, record.diffusion_steps, record.cfg, record.cfg_min) == tuple(own.values())


def test_a_size_the_model_does_not_make_is_refused(lina, offline_env):
    result = lina("generate", "a photo of a red circle", "-m", ALIAS, "--size", "256", "--device", "cpu", env=offline_env)
    assert result.exit_code != 0
    assert "lina-shapes makes 128x128 images only" in result.output


def test_download_says_there_is_nothing_to_fetch(lina, offline_env):
    result = lina("download", ALIAS, "--format", "json", env=offline_env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"model": ALIAS, "bundled": True, "path": str(bundled_model_path(ALIAS))}
    human = lina("download", ALIAS, env=offline_env)
    assert "ships with lina: nothing to download" in human.stdout


def test_models_lists_it_as_available_offline(lina, tmp_path):
    result = lina("models", "--cache-dir", tmp_path / "empty", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {row["alias"]: row for row in map(json.loads, result.stdout.splitlines())}
    row = rows[ALIAS]
    assert (row["task"], row["resolution"], row["bundled"]) == ("t2i", 128, True)
    assert 6_000_000 < row["parameters"] < 7_000_000
    human = lina("models", "--cache-dir", tmp_path / "empty")
    assert "in the package (offline)" in human.stdout and "6.3M params" in human.stdout
