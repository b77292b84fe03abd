"""`lina download` and `lina models` against a real Hugging Face cache layout, resolved by the real hub client.

The online download itself cannot run here (no network); its error path runs against a closed local port.
"""

import hashlib
import json
import socket

import pytest

from models.constants import BUNDLED_MODELS, RELEASED_MODELS
from tests.cli.conftest import FAST, image_records, run_lina_process
from tests.cli.hub_cache import add_to_hub_cache

ALIAS = "lina-c2i-256"
REPO_ID = RELEASED_MODELS[ALIAS]["repo_id"]
COMMIT = hashlib.sha1(b"tiny lina c2i").hexdigest()


@pytest.fixture
def hub_cache(tmp_path, tiny_c2i_folder):
    cache = tmp_path / "hub"
    snapshot = add_to_hub_cache(cache, REPO_ID, tiny_c2i_folder, COMMIT)
    return cache, snapshot


def closed_port_url() -> str:
    """An http URL on loopback where nothing listens: connections are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_download_offline_prints_the_cached_commit_and_folder(lina, hub_cache):
    cache, snapshot = hub_cache
    result = lina("download", ALIAS, "--cache-dir", cache, "--offline", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"model": ALIAS, "repo_id": REPO_ID, "revision": COMMIT, "path": str(snapshot)}
    human = lina("download", REPO_ID, "--cache-dir", cache, env={"HF_HUB_OFFLINE": "1"})
    assert human.exit_code == 0, human.output
    assert f"{REPO_ID} at commit {COMMIT}" in human.stdout and str(snapshot) in human.stdout


def test_download_by_commit_and_patterns_offline(lina, hub_cache):
    cache, snapshot = hub_cache
    result = lina(
        "download", ALIAS, "--cache-dir", cache, "--offline", "--revision", COMMIT,
        "--include", "transformer/*", "--exclude", "vae/*", "--format", "json",
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["path"] == str(snapshot)


def test_download_offline_missing_prints_the_download_command(lina, hub_cache):
    cache, _ = hub_cache
    result = lina("download", "lina-t2i-512", "--cache-dir", cache, "--offline")
    assert result.exit_code == 1
    assert "run `lina download lina-t2i-512` with network access" in result.stderr
    branch = lina("download", ALIAS, "--cache-dir", cache, "--offline", "--revision", "dev")
    assert branch.exit_code == 1
    assert "`lina download lina-c2i-256 --revision dev`" in branch.stderr


def test_download_rejects_names_that_are_not_repos(lina):
    result = lina("download", "not-a-repo")
    assert result.exit_code == 1
    assert "neither a released alias" in result.stderr


@pytest.mark.slow
def test_download_unreachable_hub_is_one_clear_error(tmp_path):
    done = run_lina_process(
        "download", "lina-t2i-512", "--cache-dir", tmp_path / "empty",
        env={"HF_ENDPOINT": closed_port_url(), "HF_HUB_OFFLINE": "0"}, timeout=120,
    )
    assert done.returncode == 1, done.stderr
    assert "error: could not reach the Hugging Face hub to download" in done.stderr
    assert "`lina download lina-t2i-512` where there is network access" in done.stderr
    assert "-m lina-shapes is bundled" in done.stderr  # the hint of a missing download, not of a wrong name
    assert "Traceback" not in done.stderr


@pytest.mark.slow
def test_download_unreachable_hub_falls_back_to_the_cache(hub_cache):
    cache, snapshot = hub_cache
    done = run_lina_process(
        "download", ALIAS, "--cache-dir", cache, "--format", "json",
        env={"HF_ENDPOINT": closed_port_url(), "HF_HUB_OFFLINE": "0"}, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["path"] == str(snapshot)


def test_models_lists_aliases_and_the_cached_revision(lina, hub_cache):
    cache, snapshot = hub_cache
    result = lina("models", "--cache-dir", cache, "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {row["alias"]: row for row in map(json.loads, result.stdout.splitlines())}
    assert set(rows) == set(RELEASED_MODELS) | set(BUNDLED_MODELS)
    assert rows[ALIAS]["task"] == "c2i" and rows[ALIAS]["resolution"] == 256
    assert rows[ALIAS]["parameters"] > 10**9
    [cached] = rows[ALIAS]["cached"]
    assert (cached["revision"], cached["refs"], cached["path"]) == (COMMIT, ["main"], str(snapshot))
    assert cached["size_on_disk"] > 0
    assert rows["lina-t2i-1024"]["cached"] == []
    human = lina("models", "--cache-dir", cache)
    assert f"{COMMIT[:10]} (main)" in human.stdout and "not cached" in human.stdout


def test_models_with_no_cache_at_all(lina, tmp_path):
    result = lina("models", "--cache-dir", tmp_path / "nothing-here", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert all(row["cached"] == [] for row in rows if row["alias"] in RELEASED_MODELS)


@pytest.mark.slow
def test_generate_offline_from_the_hub_cache(hub_cache, tmp_path):
    """An alias resolves through the real hub cache offline; the metadata records the repo and commit."""
    cache, _ = hub_cache
    done = run_lina_process(
        "generate", "-m", ALIAS, "--class", "3", "-s", "1", "--offline", "-o", tmp_path / "x.png", "--format", "json", *FAST,
        env={"HF_HUB_CACHE": str(cache)},
    )
    assert done.returncode == 0, done.stderr
    [record] = image_records(done.stdout)
    assert (record["model"], record["repo_id"], record["revision"]) == (ALIAS, REPO_ID, COMMIT)
    assert (tmp_path / "x.png").is_file()


@pytest.mark.slow
@pytest.mark.parametrize(
    "inputs, alias",
    [(["a cat"], "lina-t2i-1024"), (["a cat", "--size", "512"], "lina-t2i-512"), (["--class", "1"], "lina-c2i-256")],
)
def test_generate_offline_without_weights_prints_the_download_command(tmp_path, inputs, alias):
    """Also shows which released model --size and --class pick when no --model is given."""
    done = run_lina_process(
        "generate", *inputs, "--offline", "-o", tmp_path / "out", *FAST, env={"HF_HUB_CACHE": str(tmp_path / "empty")}
    )
    assert done.returncode == 1
    assert f"`lina download {alias}`" in done.stderr
    assert "Traceback" not in done.stderr
    assert not any((tmp_path / "out").glob("*.png"))
