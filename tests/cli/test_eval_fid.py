"""`lina eval fid` through the real app: the same numbers as torch-fidelity on the same folders, ADM `.npz` in and
out, the protocol, and one clear error line for every bad input.

The Inception network is torch-fidelity's, with random-init weights written by the test; a forward pass costs
about half a second per image on two CPU cores, so the folders are small and the scored runs are shared by the
module.
"""

import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
from typer.testing import CliRunner

from lina_cli.app import app
from tests.cli.conftest import REPO_ROOT
from tests.models.eval.fid.helpers import random_images, session_inception_weights, write_images

SAMPLES, REFERENCE = 12, 6  # 12 samples: Inception Score splits of one and two images


def invoke(*args, env: dict[str, str]):
    return CliRunner().invoke(app, [str(arg) for arg in args], env=env, catch_exceptions=True, prog_name="lina")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval-fid")
    write_images(root / "samples", random_images(SAMPLES, seed=10))
    write_images(root / "reference", random_images(REFERENCE, seed=20))
    env = {"LINA_CACHE": str(root / "cache"), "XDG_CONFIG_HOME": str(root / "config"), "COLUMNS": "200"}
    weights = session_inception_weights(tmp_path_factory)
    return SimpleNamespace(root=root, samples=root / "samples", reference=root / "reference", weights=weights, env=env)


@pytest.fixture(scope="module")
def scored(data):
    """The contract run: JSON on stdout, and the samples packed as an ADM batch on the side."""
    result = invoke(
        "eval", "fid", "--samples", data.samples, "--ref", data.reference, "--inception-weights", data.weights,
        "--device", "cpu", "--json", "-", "--save-npz", data.root / "samples.npz", env=data.env,
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)  # nothing but the JSON object on stdout


@pytest.fixture(scope="module")
def torch_fidelity_metrics(data):
    """torch-fidelity's own calculate_metrics on the same folders and weights, in a fresh interpreter with one
    BLAS thread (its non-symmetric 2048 x 2048 eigensolve crawls when BLAS threads fight over two cores)."""
    code = (
        "import json, sys, torch_fidelity\n"
        "metrics = torch_fidelity.calculate_metrics(input1=sys.argv[1], input2=sys.argv[2], fid=True, isc=True,\n"
        "    feature_extractor_weights_path=sys.argv[3], cuda=False, verbose=False, save_cpu_ram=True, cache=False)\n"
        "print(json.dumps(metrics))\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "2"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(data.samples), str(data.reference), str(data.weights)],
        capture_output=True, text=True, env=env, timeout=600, check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_scores_equal_torch_fidelity_on_the_same_folders(scored, torch_fidelity_metrics):
    from torch_fidelity.metric_fid import KEY_METRIC_FID
    from torch_fidelity.metric_isc import KEY_METRIC_ISC_MEAN, KEY_METRIC_ISC_STD

    assert scored["fid"] == pytest.approx(torch_fidelity_metrics[KEY_METRIC_FID], rel=1e-3)
    assert scored["inception_score"] == pytest.approx(torch_fidelity_metrics[KEY_METRIC_ISC_MEAN], abs=1e-4)
    assert scored["inception_score_std"] == pytest.approx(torch_fidelity_metrics[KEY_METRIC_ISC_STD], abs=1e-4)
    assert scored["fid"] > 0 and scored["inception_score"] > 1.01  # neither side is trivially equal


def test_json_carries_the_scores_and_the_protocol(scored, data):
    import torch

    from models.eval.fid.images import sha256_file
    from models.version import __version__

    assert set(scored) >= {"fid", "inception_score", "precision", "recall", "num_samples", "protocol", "sfid", "kid"}
    assert scored["num_samples"] == SAMPLES and scored["fid_50k"] is False
    assert 0.0 <= scored["precision"] <= 1.0 and 0.0 <= scored["recall"] <= 1.0
    assert scored["sfid"] is None and scored["kid"] is None
    assert any(note.startswith("not FID-50k") for note in scored["notes"])
    protocol = scored["protocol"]
    assert protocol["metric"].startswith("not FID-50k")
    assert protocol["extractor"]["weights_sha256"] == sha256_file(data.weights)
    assert protocol["extractor"]["name"] == "inception-v3-compat" and protocol["extractor"]["weights_standard"] is False
    assert protocol["reference"]["path"] == str(data.reference) and protocol["reference"]["images"] == REFERENCE
    assert protocol["samples"]["count"] == SAMPLES and protocol["samples"]["per_class"] is None
    assert protocol["image_size"] == 256 and protocol["resize"].startswith("none")
    assert protocol["versions"]["lina"] == __version__ and protocol["versions"]["torch"] == torch.__version__
    assert protocol["device"] == "cpu" and "mixed_6/conv" in protocol["sfid"]


def test_adm_npz_out_then_in_gives_the_same_scores(scored, data):
    with np.load(data.root / "samples.npz") as npz:
        assert npz["arr_0"].shape == (SAMPLES, 256, 256, 3) and npz["arr_0"].dtype == np.uint8
    result = invoke(
        "eval", "fid", "--samples", data.root / "samples.npz", "--ref", data.reference, "--inception-weights",
        data.weights, "--device", "cpu", "--json", data.root / "again.json", "--kid", env=data.env,
    )
    assert result.exit_code == 0, result.output
    again = json.loads((data.root / "again.json").read_text())
    for key in ("fid", "inception_score", "precision", "recall"):
        assert again[key] == pytest.approx(scored[key], rel=1e-9, abs=1e-12)
    assert again["kid"] is not None and again["protocol"]["kid"]["subset_size"] == REFERENCE
    assert again["protocol"]["samples"]["format"] == "npz"
    assert again["protocol"]["reference"]["features_from_cache"] is True  # the reference ran through Inception once
    # The human report: the scores, then the protocol under them.
    assert "not FID-50k (12 samples)" in result.stdout and "Inception Score" in result.stdout
    out = result.stdout
    assert out.index("FID") < out.index("Protocol") < out.index("extractor.weights_sha256")
    assert again["protocol"]["extractor"]["weights_sha256"] in result.stdout


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_empty_samples_folder(data, tmp_path):
    (tmp_path / "empty").mkdir()
    result = invoke("eval", "fid", "--samples", tmp_path / "empty", "--ref", data.reference, env=data.env)
    assert "holds no images" in one_error_line(result)


def test_unreadable_sample(data, tmp_path):
    write_images(tmp_path / "run", random_images(SAMPLES, seed=30))
    (tmp_path / "run" / "00005.png").write_bytes(b"\x89PNG truncated")
    result = invoke("eval", "fid", "--samples", tmp_path / "run", "--ref", data.reference, env=data.env)
    assert "00005.png is not a readable image" in one_error_line(result)


def test_duplicate_samples(data, tmp_path):
    images = random_images(SAMPLES, seed=31)
    write_images(tmp_path / "run", np.concatenate([images, images[3:4]]))
    result = invoke("eval", "fid", "--samples", tmp_path / "run", "--ref", data.reference, env=data.env)
    assert "00012.png has the same content as" in one_error_line(result)


def test_wrong_size_without_resize(data, tmp_path):
    write_images(tmp_path / "run", random_images(SAMPLES, seed=32, size=128))
    result = invoke("eval", "fid", "--samples", tmp_path / "run", "--ref", data.reference, env=data.env)
    line = one_error_line(result)
    assert "is 128x128, not 256x256; pass --resize" in line and "bicubic" in line


def test_too_few_samples(data, tmp_path):
    write_images(tmp_path / "run", random_images(4, seed=33))
    result = invoke("eval", "fid", "--samples", tmp_path / "run", "--ref", data.reference, env=data.env)
    assert "scoring needs at least 10" in one_error_line(result)


def test_reference_npz_without_statistics_and_too_few_images(data, tmp_path):
    np.savez(tmp_path / "ref.npz", random_images(3, seed=34))
    result = invoke("eval", "fid", "--samples", data.samples, "--ref", tmp_path / "ref.npz", "--inception-weights",
                    data.weights, env=data.env)
    assert "no 'mu'/'sigma' and only 3 image(s)" in one_error_line(result)


def test_missing_reference_while_offline(data, tmp_path):
    env = {**data.env, "LINA_CACHE": str(tmp_path / "empty-cache")}
    result = invoke("eval", "fid", "--samples", data.samples, "--ref", "imagenet", "--offline", "--inception-weights",
                    data.weights, env=env)
    line = one_error_line(result)
    assert "VIRTUAL_imagenet256_labeled.npz is not in the lina cache and offline mode is on" in line
    assert "https://openaipublic.blob.core.windows.net/diffusion/jul-2021/ref_batches/imagenet/256/" in line
    assert str(tmp_path / "empty-cache" / "fid-references") in line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-per-class", "0"], "must be ≥ 1"),
        (["--classes", "0-999", "--cfg", "nan"], "must be a finite number"),
        (["--samples", ".", "--save-npz", "out.png"], "give a FILE.npz"),
    ],
)
def test_usage_errors(data, args, message):
    result = invoke("eval", "fid", *args, env=data.env)
    assert result.exit_code == 2
    assert message in " ".join(result.output.replace("│", " ").split())


def test_help_does_not_import_torch():
    code = (
        "import sys\nfrom lina_cli.app import app\n"
        "try:\n    app(['eval', 'fid', '--help'], prog_name='lina')\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                          env={"COLUMNS": "200", "PATH": ""})
    assert done.returncode == 0, done.stderr
    assert "$ lina eval fid --samples fid" in done.stdout and "--inception-weights" in done.stdout
    assert done.stdout.strip().endswith("NO-TORCH")


# ------------------------------------------------------------------------------------ sampling included ----

SAMPLED = ["--classes", "0-3", "--num-per-class", "3", "--ar-steps", "2", "--diffusion-steps", "2", "--resize"]


@pytest.fixture(scope="module")
def sampled_run(data, tiny_c2i_folder, tmp_path_factory):
    """`lina eval fid -m FOLDER` on the tiny class model: 4 classes × 3 samples made, then scored."""
    folder = tmp_path_factory.mktemp("fid-run") / "samples"
    args = ["eval", "fid", "-m", tiny_c2i_folder, *SAMPLED, "--samples-dir", folder, "--ref", data.reference,
            "--inception-weights", data.weights, "--device", "cpu", "--json", "-"]
    first = invoke(*args, env=data.env)
    assert first.exit_code == 0, first.output
    return SimpleNamespace(args=args, folder=folder, record=json.loads(first.stdout))


def test_sampling_included_makes_the_samples_through_the_generate_engine(sampled_run):
    names = sorted(path.name for path in sampled_run.folder.iterdir())
    assert names == [f"{index:06d}.png" for index in range(12)]  # image i = class_index · n + j
    record = sampled_run.record
    assert record["num_samples"] == 12 and record["fid_50k"] is False
    generation = record["protocol"]["generation"]
    assert (generation["classes"], generation["num_per_class"], generation["seed"]) == ("0-3", 3, 0)
    assert (generation["ar_steps"], generation["diffusion_steps"], generation["dtype"]) == (2, 2, "fp32")
    assert record["protocol"]["samples"]["per_class"] is not None  # read from the PNG metadata


def test_sampling_resumes_and_scores_the_same(sampled_run, data):
    before = {path.name: path.stat().st_mtime_ns for path in sampled_run.folder.iterdir()}
    again = invoke(*sampled_run.args, env=data.env)
    assert again.exit_code == 0, again.output
    assert {path.name: path.stat().st_mtime_ns for path in sampled_run.folder.iterdir()} == before  # nothing remade
    assert json.loads(again.stdout)["fid"] == sampled_run.record["fid"]


def test_an_interrupted_sampling_run_resumes_to_the_same_samples(sampled_run, data):
    """Samples lost to an interruption are made again, byte for byte, and the score is the uninterrupted one's."""
    lost = sorted(sampled_run.folder.iterdir())[-5:]
    before = {path.name: path.read_bytes() for path in lost}
    for path in lost:
        path.unlink()
    again = invoke(*sampled_run.args, env=data.env)
    assert again.exit_code == 0, again.output
    assert {path.name: path.read_bytes() for path in lost} == before
    assert json.loads(again.stdout)["fid"] == sampled_run.record["fid"]


def test_sampling_refuses_a_folder_with_images_of_another_run(sampled_run, data):
    args = list(sampled_run.args)
    args[args.index("0-3")] = "0-2"  # a smaller run in the same folder would score the other images too
    result = invoke(*args, env=data.env)
    assert result.exit_code == 1
    assert "this run did not make" in result.stderr


def test_a_missing_reference_fails_before_any_sampling(data, tiny_c2i_folder, tmp_path):
    result = invoke("eval", "fid", "-m", tiny_c2i_folder, *SAMPLED, "--samples-dir", tmp_path / "s", "--ref",
                    "imagenet", "--offline", "--inception-weights", data.weights, "--device", "cpu", env=data.env)
    assert result.exit_code == 1
    assert not (tmp_path / "s").exists()
