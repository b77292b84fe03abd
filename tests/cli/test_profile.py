"""`lina profile attention` through the real app: files, JSON on stdout, the paper's numbers, bad input."""

import json
import subprocess
import sys

import pytest
import torch
import typer

from lina_cli.app import app
from models.perf.report_files import CSV_COLUMNS
from models.perf.timing import TIMING_DEFAULTS
from tests.cli.conftest import REPO_ROOT

TINY = ["--dim", "64", "--heads", "4", "--device", "cpu", "--warmup", "0", "--repeats", "2"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_table_json_csv_and_plot(lina, tmp_path):
    result = lina("profile", "attention", "-n", "80,320", *TINY,
                  "--json", tmp_path / "out.json", "--csv", tmp_path / "out.csv", "--plot", tmp_path / "out.png")
    assert result.exit_code == 0, result.output
    records = json.loads((tmp_path / "out.json").read_text())
    assert [(r["seq_len"], r["dim"], r["heads"]) for r in records] == [(80, 64, 4), (320, 64, 4)]
    for record in records:
        for attention in ("linear", "softmax"):
            assert record[attention]["flops"] == 2 * record[attention]["macs"] == record[attention]["measured_flops"]
            assert record[attention]["latency_ms"] > 0
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == ",".join(CSV_COLUMNS) and len(lines) == 1 + 2 * 2
    assert (tmp_path / "out.png").read_bytes().startswith(PNG_SIGNATURE)
    # The human report: every number carries its convention.
    expected = ("linear (MACs)", "softmax (FLOPs)", "kMAC", "kFLOP", "matches", "fvcore", "2 × MACs", "Latency per")
    assert all(text in result.stdout for text in expected), result.stdout
    assert "Linear attention needs fewer MACs than softmax from N = 27 (module), N = 17 (core)." in result.stdout


def test_paper_numbers_as_json_on_stdout(lina):
    result = lina("profile", "attention", "--seq-len", "5120", "--no-time", "--json", "-")
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)  # nothing but JSON on stdout
    assert (record["seq_len"], record["dim"], record["heads"], record["image_tokens"]) == (5120, 1536, 16, 4096)
    assert record["ratio_macs"]["module"] == pytest.approx(0.388, abs=0.002)
    linear = record["linear"]
    assert linear["macs"] == 49_993_482_240 and record["softmax"]["macs"] == 128_849_018_880
    assert round(linear["breakdown_macs"]["qkv"] / 1e9, 2) == 36.24
    assert round(linear["breakdown_macs"]["proj"] / 1e9, 2) == 12.08
    assert round(linear["core"]["macs"] / 1e9, 2) == 1.52
    assert round(linear["breakdown_macs"]["dw_conv"] / 1e9, 3) == 0.157
    assert round(record["softmax"]["core"]["macs"] / 1e9, 2) == 80.53
    assert linear["counter_agrees"] and record["softmax"]["counter_agrees"]
    assert "latency_ms" not in linear and "timing" not in record


def test_class_to_image_geometry_with_the_ar_step(lina):
    result = lina("profile", "attention", "--task", "c2i", "-r", "256", "--no-time", "--csv", "-")
    assert result.exit_code == 0, result.output
    header, linear, softmax = result.stdout.splitlines()
    row = dict(zip(header.split(","), linear.split(",")))
    assert (row["task"], row["resolution"], row["seq_len"], row["attention"]) == ("c2i", "256", "320", "linear")
    assert int(row["ar_step_macs"]) > int(row["block_macs"]) > int(row["module_macs"]) > int(row["core_macs"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-r", "300"], "multiple of 32"),
        (["-r", "256,abc"], "comma-separated integers"),
        (["-r", "256", "-n", "320"], "not both"),
        (["-n", "80", "--dim", "100", "--heads", "16"], "not divisible"),
        (["-n", "80", "--ar-step", "3"], "use --resolution"),
        (["-r", "256", "--ar-step", "500"], "steps 0..114"),
        (["--task", "x2i"], "expected t2i or c2i"),
        (["--plot", "attn.jpg"], "PNG"),
        (["--json", "-", "--csv", "-"], "only one of"),
    ],
)
def test_bad_input_is_a_usage_error(lina, args, message):
    result = lina("profile", "attention", "--no-time", *args)
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_missing_cuda_is_one_error_line(lina):
    result = lina("profile", "attention", "-n", "80", "--device", "cuda")
    assert result.exit_code == 1
    assert "error:" in result.stderr and "no CUDA GPU" in result.stderr and "hint:" in result.stderr


def test_dtype_comes_from_the_environment(lina):
    result = lina("profile", "attention", "-n", "80", *TINY, "--json", "-", env={"LINA_DTYPE": "bf16"})
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)
    assert record["timing"]["dtype"] == record["linear"]["dtype"] == "bf16"
    assert record["linear_fp32"]["dtype"] == "fp32"


@pytest.mark.slow
def test_help_shows_examples_without_importing_torch():
    code = (
        "import sys\nfrom lina_cli.app import app\n"
        "try:\n    app(['profile', 'attention', '--help'], prog_name='lina')\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, env={"COLUMNS": "200", "PATH": ""}
    )
    assert done.returncode == 0, done.stderr
    assert "Examples" in done.stdout and "$ lina profile attention" in done.stdout
    assert done.stdout.strip().endswith("NO-TORCH")


def test_bare_profile_prints_help(lina):
    result = lina("profile")
    assert "Usage" in result.output and "attention" in result.output


def test_timing_defaults_in_the_help_match_the_library():
    command = typer.main.get_command(app).commands["profile"].commands["attention"]
    params = {param.name: param.help for param in command.params}
    cuda, cpu = TIMING_DEFAULTS["cuda"], TIMING_DEFAULTS["cpu"]
    assert f"{cuda['warmup']} on CUDA, {cpu['warmup']} on CPU" in params["warmup"]
    assert f"{cuda['repeats']} on CUDA, {cpu['repeats']} on CPU" in params["repeats"]


# ----------------------------------------------------------------------------------------------------
# lina profile pipeline
# ----------------------------------------------------------------------------------------------------

PIPELINE_FAST = ["--device", "cpu", "--warmup", "0", "--repeats", "1", "--ar-steps", "2", "--diffusion-steps", "2"]


def test_pipeline_json_on_stdout_for_a_folder(lina, tiny_c2i_folder):
    result = lina("profile", "pipeline", "-m", tiny_c2i_folder, *PIPELINE_FAST, "-b", "2", "--json", "-")
    assert result.exit_code == 0, result.output
    (record,) = json.loads(result.stdout)  # nothing but JSON on stdout
    assert (record["model"], record["weights"], record["task"], record["batch_size"]) == (
        str(tiny_c2i_folder), "loaded", "c2i", 2
    )
    assert record["sampling"] == {"ar_steps": 2, "ar_steps_run": 2, "diffusion_steps": 2, "cfg": 2.4, "cfg_min": 1.0}
    assert set(record["phases_ms"]) >= {"conditioning", "context", "encoder_half", "decoder_half", "head", "vae_decode"}
    assert "not representative" in result.stderr


def test_pipeline_table_for_random_softmax_weights(lina, tiny_t2i_folder, tmp_path):
    result = lina(
        "profile", "pipeline", "-m", tiny_t2i_folder, "--random-init", "--attention", "softmax", *PIPELINE_FAST,
        "--peak-tflops", "2", "--json", tmp_path / "t2i.json",
    )
    assert result.exit_code == 0, result.output
    (record,) = json.loads((tmp_path / "t2i.json").read_text())
    assert (record["weights"], record["attention"]) == ("random", "softmax")
    expected = (
        "softmax attention, random weights", "AR loop: image encoder", "encoder half", "decoder half",
        "AR loop: diffusion head", "VAE decode", "per image", "images/s", "MFU", "text encoder excluded",
    )
    text = " ".join(result.stdout.split())
    assert all(part in text for part in expected), result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--attention", "flash"], "expected linear or softmax"),
        (["--attention", "softmax"], "--random-init"),  # trained linear weights cannot run softmax attention
        (["--peak-tflops", "0"], "positive rate"),
        (["--cfg", "nan"], "finite"),
        (["--batch-size", "0"], "--batch-size"),
        (["--repeats", "0"], "must be ≥ 1"),
        (["--device", "tpu?"], "not a device"),
    ],
)
def test_pipeline_bad_options_are_usage_errors(lina, tiny_c2i_folder, args, message):
    result = lina("profile", "pipeline", "-m", tiny_c2i_folder, "--device", "cpu", *args)
    assert result.exit_code == 2, result.output
    assert message in " ".join(result.output.split())


@pytest.mark.slow
def test_pipeline_alias_without_weights_points_to_random_init(lina, tmp_path):
    result = lina("profile", "pipeline", "-m", "lina-c2i-256", "--device", "cpu", "--cache-dir", tmp_path / "empty")
    assert result.exit_code == 1
    assert "--random-init" in result.stderr and "lina download lina-c2i-256" in result.stderr


def test_pipeline_random_init_needs_an_alias_or_a_folder(lina):
    result = lina("profile", "pipeline", "-m", "someone/some-model", "--random-init", "--device", "cpu")
    assert result.exit_code == 1
    assert "released alias" in result.stderr and "hint:" in result.stderr


@pytest.mark.slow
def test_pipeline_help_without_torch_and_bare_command_prints_help(lina):
    code = (
        "import sys\nfrom lina_cli.app import app\n"
        "try:\n    app(['profile', 'pipeline', '--help'], prog_name='lina')\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, env={"COLUMNS": "200", "PATH": ""}
    )
    assert done.returncode == 0, done.stderr
    assert "$ lina profile pipeline" in done.stdout and "t2i 128, c2i 64" in done.stdout
    assert done.stdout.strip().endswith("NO-TORCH")
    assert "Usage" in lina("profile", "pipeline").output
