"""`lina generate` end to end on tiny real pipelines (written by our save_pretrained, loaded by load_pipeline)."""

import errno
import json
import math
import os
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from models.runs.metadata import read_metadata
from tests.cli.conftest import FAST, SHORT_SAMPLING, image_records, run_lina_process
from tests.factories import TINY_TEXT_HIDDEN
from tests.tiny_text import write_tiny_text_components

needs_no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the behaviour on a machine without CUDA")


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def json_lines(result) -> list[dict]:
    return image_records(result.stdout)


def files(folder) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


# ------------------------------------------------------------------------------------------- happy paths ----


def test_class_conditional_run(lina, tiny_c2i_folder, tmp_path):
    result = lina("generate", "-m", tiny_c2i_folder, "--class", "1", "--class", "7", "-n", "2", "-s", "5", "-b", "4", "-o", tmp_path / "out", *FAST)
    assert result.exit_code == 0, result.output
    assert files(tmp_path / "out") == ["00000-5-class-1.png", "00001-6-class-1.png", "00002-7-class-7.png", "00003-8-class-7.png"]
    record = read_metadata(tmp_path / "out" / "00002-7-class-7.png")
    assert (record.task, record.class_label, record.seed, record.index) == ("c2i", 7, 7, 2)
    assert (record.ar_steps, record.diffusion_steps, record.cfg, record.cfg_min) == (4, 3, 2.4, 1.0)  # c2i ramp default
    assert record.model == str(tiny_c2i_folder.resolve()) and record.size == (64, 64)
    assert "saved" in result.stdout and "made 4 image(s)" in result.stdout


def test_text_to_image_run_with_jsonl_prompts(lina, tiny_t2i_folder, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "a red cube", "negative_prompt": "blurry", "n": 2}\n{"prompt": "a blue sphere", "seed": 40}\n')
    result = lina(
        "generate", "-m", tiny_t2i_folder, "--prompts-file", prompts, "-s", "3", "--cfg", "4", "-b", "3",
        "-o", tmp_path / "t2i" / "{index}-{prompt_slug}.png", "--format", "json", *FAST,
    )
    assert result.exit_code == 0, result.output
    records = json_lines(result)
    assert [(r["path"].split("/")[-1], r["seed"], r["negative_prompt"]) for r in records] == [
        ("0-a-red-cube.png", 3, "blurry"), ("1-a-red-cube.png", 4, "blurry"), ("2-a-blue-sphere.png", 40, None)
    ]
    assert all((r["cfg"], r["cfg_min"], r["status"]) == (4.0, None, "written") for r in records)  # --cfg alone: constant
    assert not np.array_equal(pixels(records[0]["path"]), pixels(records[1]["path"]))


def test_a_json_run_ends_with_where_its_time_went(lina, tiny_c2i_folder, tmp_path):
    result = lina("generate", "-m", tiny_c2i_folder, "--class", "1", "-n", "2", "-o", tmp_path / "out", "--format", "json", *FAST)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.splitlines()[-1])["summary"]
    assert (summary["made"], summary["skipped"], summary["peak_memory_bytes"]) == (2, 0, None)
    assert summary["imports_seconds"] > 0 and summary["load_seconds"] > 0
    assert 0 < summary["first_image_seconds"] <= summary["generation_seconds"]
    assert len(json_lines(result)) == 2  # the image records come before it
    human = lina("generate", "-m", tiny_c2i_folder, "--class", "1", "-n", "3", "-o", tmp_path / "out", *FAST)
    assert re.search(r"start-up: imports \d+\.\d s, loading \d+\.\d s; first image \d+\.\d s", human.output)


def test_keeping_the_text_encoder_changes_no_pixel(lina, tiny_t2i_folder, tmp_path):
    # On the CPU the weights are already in CPU memory, so the choice is a no-op; on a GPU the pipeline test checks it.
    for name, extra in (("offloaded", []), ("kept", ["--keep-text-encoder"])):
        result = lina("generate", "a red cube", "-m", tiny_t2i_folder, "-s", "2", "-o", tmp_path / f"{name}.png", *extra, *FAST)
        assert result.exit_code == 0, result.output
    assert np.array_equal(pixels(tmp_path / "offloaded.png"), pixels(tmp_path / "kept.png"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="the text encoder's GPU memory is the point")
def test_by_default_the_text_encoder_leaves_the_gpu_before_sampling(tiny_t2i_folder, tmp_path):
    # A copy of the tiny pipeline whose text encoder has 48 layers, so its weights dwarf one layer; each mode runs in
    # its own process, as a user's would, so nothing one run leaves behind counts in the other's peak.
    folder = tmp_path / "deep-text"
    shutil.copytree(tiny_t2i_folder, folder)
    shutil.rmtree(folder / "text_encoder")
    write_tiny_text_components(folder / "text_encoder", folder / "tokenizer", hidden_size=TINY_TEXT_HIDDEN, layers=48)
    with safe_open(folder / "text_encoder" / "model.safetensors", "pt") as handle:
        weights_bf16 = 2 * sum(math.prod(handle.get_slice(key).get_shape()) for key in handle.keys())
    peaks = {}
    for name, extra in (("kept", ["--keep-text-encoder"]), ("offloaded", [])):
        result = run_lina_process("generate", "a red cube", "-m", folder, "-s", "2", "-o", tmp_path / f"{name}.png",
                                  "--device", "cuda", "--format", "json", *extra, *SHORT_SAMPLING,
                                  env={"HF_HUB_OFFLINE": "1"})
        assert result.returncode == 0, result.stderr
        peaks[name] = json.loads(result.stdout.splitlines()[-1])["summary"]["peak_memory_bytes"]
    assert peaks["kept"] - peaks["offloaded"] > 0.8 * weights_bf16


def test_seed_plus_index_contract(lina, tiny_t2i_folder, tmp_path):
    """`-s 5 -n 2` makes as its second image exactly `-s 6 -n 1`."""
    two = lina("generate", "a cat", "-m", tiny_t2i_folder, "-s", "5", "-n", "2", "-o", tmp_path / "two", "--format", "json", *FAST)
    one = lina("generate", "a cat", "-m", tiny_t2i_folder, "-s", "6", "-o", tmp_path / "one.png", "--format", "json", *FAST)
    assert two.exit_code == 0 and one.exit_code == 0, two.output + one.output
    second = json_lines(two)[1]
    assert second["seed"] == 6
    assert np.array_equal(pixels(second["path"]), pixels(tmp_path / "one.png"))


def test_batch_size_does_not_change_the_images(lina, tiny_c2i_folder, tmp_path):
    """Same seeds and noise in any batch. CPU kernels may sum a batch of 3 in another order than a batch of 1, so
    a last-bit float difference can flip a uint8 truncation: allow a level of 1 on at most 0.1% of the values."""
    run = ["generate", "-m", tiny_c2i_folder, "--class", "1-3", "-s", "9", *FAST]
    assert lina(*run, "-b", "3", "-o", tmp_path / "b3").exit_code == 0
    assert lina(*run, "-b", "1", "-o", tmp_path / "b1").exit_code == 0
    for name in files(tmp_path / "b1"):
        difference = np.abs(pixels(tmp_path / "b3" / name).astype(int) - pixels(tmp_path / "b1" / name).astype(int))
        assert difference.max() <= 1 and (difference > 0).mean() <= 1e-3, name


def test_info_and_from_metadata_reproduce_the_image(lina, tiny_c2i_folder, tmp_path):
    first = lina("generate", "-m", tiny_c2i_folder, "--class", "2", "-n", "2", "-s", "11", "--cfg", "3", "--cfg-min", "1.5", "-o", tmp_path / "a", *FAST)
    assert first.exit_code == 0, first.output
    source = tmp_path / "a" / "00001-12-class-2.png"
    info = lina("info", source, "--format", "json")
    assert info.exit_code == 0, info.output
    record = json.loads(info.stdout)
    assert (record["seed"], record["class_label"], record["cfg"], record["cfg_min"], record["ar_steps"]) == (12, 2, 3.0, 1.5, 4)
    human = lina("info", source)
    assert "Seed: 12" in human.stdout and "CFG min: 1.5" in human.stdout

    # Run from another folder, with other config defaults: the recorded settings win.
    (tmp_path / "lina.toml").write_text("ar_steps = 9\ncfg = 6.0\n")
    again = lina("generate", "--from-metadata", source, "-o", tmp_path / "again.png", "--device", "cpu")
    assert again.exit_code == 0, again.output
    assert np.array_equal(pixels(source), pixels(tmp_path / "again.png"))
    assert read_metadata(tmp_path / "again.png").recipe() == read_metadata(source).recipe()


@needs_no_cuda
def test_fused_kernels_on_the_cpu_are_refused_in_one_line(lina, tiny_c2i_folder, tmp_path):
    result = lina("generate", "-m", tiny_c2i_folder, "--class", "1", "-s", "1", "--kernels", "fused", "-o", tmp_path / "out", *FAST)
    assert result.exit_code == 1
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(error_lines) == 1 and "the fused kernels run on CUDA only" in error_lines[0], result.stderr
    assert "reference kernels" in error_lines[0] and "Traceback" not in result.stderr
    assert files(tmp_path / "out") == []


def test_kernels_are_recorded_and_checked(lina, tiny_c2i_folder, tmp_path):
    result = lina("generate", "-m", tiny_c2i_folder, "--class", "1", "--kernels", "reference", "-o", tmp_path / "a.png", *FAST)
    assert result.exit_code == 0, result.output
    assert read_metadata(tmp_path / "a.png").kernels == "reference"
    unknown = lina("generate", "-m", tiny_c2i_folder, "--class", "1", "--kernels", "flash", "-o", tmp_path / "b.png", *FAST)
    assert unknown.exit_code != 0 and "flash" in unknown.stderr and not (tmp_path / "b.png").exists()


def test_info_on_an_image_without_metadata(lina, tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "plain.png")
    result = lina("info", tmp_path / "plain.png")
    assert result.exit_code == 1
    assert "has no lina metadata" in result.stderr


def test_rerun_resumes_without_touching_finished_images(lina, tiny_c2i_folder, tmp_path):
    args = ["generate", "-m", tiny_c2i_folder, "--class", "0-2", "-s", "1", "-o", tmp_path / "run", "--format", "json", *FAST]
    assert lina(*args).exit_code == 0
    kept, removed = tmp_path / "run" / "00000-1-class-0.png", tmp_path / "run" / "00001-2-class-1.png"
    expected = pixels(removed)
    stamp = kept.stat().st_mtime_ns
    removed.unlink()  # as if the run had been interrupted before this image
    result = lina(*args)
    assert result.exit_code == 0, result.output
    assert [(r["index"], r["status"]) for r in json_lines(result)] == [(0, "skipped"), (2, "skipped"), (1, "written")]
    assert kept.stat().st_mtime_ns == stamp
    assert np.array_equal(pixels(removed), expected)
    human = lina(*[arg for arg in args if arg not in ("--format", "json")])
    assert "3 image(s) already finished, 0 to make" in human.stderr


def test_never_overwrites_unless_asked(lina, tiny_c2i_folder, tmp_path):
    target = tmp_path / "one.png"
    assert lina("generate", "-m", tiny_c2i_folder, "--class", "1", "-s", "5", "-o", target, *FAST).exit_code == 0
    before = target.read_bytes()
    refused = lina("generate", "-m", tiny_c2i_folder, "--class", "1", "-s", "6", "-o", target, *FAST)
    assert refused.exit_code == 1
    assert "exists with other settings" in refused.stderr and "--overwrite" in refused.stderr
    assert target.read_bytes() == before
    replaced = lina("generate", "-m", tiny_c2i_folder, "--class", "1", "-s", "6", "-o", target, "--overwrite", *FAST)
    assert replaced.exit_code == 0, replaced.output
    assert read_metadata(target).seed == 6


def test_failed_save_leaves_no_partial_file_and_latents_survive(lina, tiny_c2i_folder, tmp_path, monkeypatch):
    """A full disk while the PNG is written: exit 1 with one line, no PNG or temp file, latents kept for the re-run."""
    real_save = Image.Image.save

    def save_then_fill_the_disk(image, fp, *args, **kwargs):
        with open(fp, "wb") as handle:
            handle.write(b"\x89PNG\r\n\x1a\n")  # the first bytes made it, then the disk filled up
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fp))

    out = tmp_path / "full"
    run = ["generate", "-m", tiny_c2i_folder, "--class", "4", "-n", "2", "-s", "8", "-b", "2", *FAST]
    args = [*run, "-o", out, "--save-latents"]
    monkeypatch.setattr(Image.Image, "save", save_then_fill_the_disk)
    failed = lina(*args)
    assert failed.exit_code == 1
    assert failed.stderr.startswith("error: disk full: could not write")
    assert files(out) == ["00000-8-class-4.latents.safetensors", "00001-9-class-4.latents.safetensors"]

    monkeypatch.setattr(Image.Image, "save", real_save)
    resumed = lina(*args)
    assert resumed.exit_code == 0, resumed.output
    fresh = lina(*run, "-o", tmp_path / "fresh")
    assert fresh.exit_code == 0, fresh.output
    for name in ("00000-8-class-4.png", "00001-9-class-4.png"):
        assert np.array_equal(pixels(out / name), pixels(tmp_path / "fresh" / name))


def test_save_latents_writes_model_latents_with_the_recipe(lina, tiny_c2i_folder, tmp_path):
    result = lina("generate", "-m", tiny_c2i_folder, "--class", "3", "-s", "2", "-o", tmp_path / "l", "--save-latents", "--format", "json", *FAST)
    assert result.exit_code == 0, result.output
    [record] = image_records(result.stdout)
    with safe_open(record["latents"], framework="pt") as handle:
        latents = handle.get_tensor("latents")
        saved = json.loads(handle.metadata()["lina"])
    assert tuple(latents.shape) == (16, 4, 4)  # C, H/16, W/16 of the tiny c2i model
    assert saved["seed"] == 2 and saved["class_label"] == 3


def test_quiet_prints_nothing(lina, tiny_c2i_folder, tmp_path):
    result = lina("generate", "-m", tiny_c2i_folder, "--class", "1", "-s", "1", "-o", tmp_path / "q", "--format", "quiet", *FAST)
    assert result.exit_code == 0
    assert result.output == ""
    assert files(tmp_path / "q") == ["00000-1-class-1.png"]


def test_random_seed_is_printed_and_recorded(lina, tiny_c2i_folder, tmp_path):
    result = lina("generate", "-m", tiny_c2i_folder, "--class", "1", "-o", tmp_path / "r", *FAST)
    assert result.exit_code == 0, result.output
    seed = int(re.search(r"seed (\d+) \(random; pass -s \1 to repeat", result.stderr).group(1))
    [path] = (tmp_path / "r").iterdir()
    assert read_metadata(path).seed == seed


def test_plain_output_has_no_escape_codes(lina, tiny_c2i_folder, tmp_path):
    result = lina("generate", "-m", tiny_c2i_folder, "--class", "1", "-s", "1", "-o", tmp_path / "p", *FAST)
    assert result.exit_code == 0
    assert "\x1b[" not in result.output


# ------------------------------------------------------------------------------------------------ errors ----


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--class", "1000"], "class id(s) 1000 out of range: this model knows classes 0-999"),
        (["a cat"], "is a c2i model: it takes --class ids"),
        (["--class", "1", "--size", "128"], "size 128x128 is not supported by this checkpoint"),
        (["--class", "1", "-n", "2", "-o", "cat.png"], "names one file but this run makes 2 images"),
        (["--class", "1", "--negative-prompt", "x"], "--negative-prompt applies to text-to-image models"),
    ],
)
def test_errors_on_the_class_model(lina, tiny_c2i_folder, args, fragment):
    result = lina("generate", "-m", tiny_c2i_folder, "-s", "1", *args, "--ar-steps", "4", "--diffusion-steps", "3")
    assert result.exit_code == 1, result.output
    error, hint = result.stderr.splitlines()[-2:]  # one error line and one hint line (after any warning)
    assert error.startswith("error:") and fragment in error and hint.startswith("hint:")
    assert not list(__import__("pathlib").Path("outputs").glob("*.png"))


def test_a_device_name_torch_does_not_know_is_a_usage_error(lina, tiny_c2i_folder):
    result = lina("generate", "-m", tiny_c2i_folder, "--class", "1", "--device", "tpu", *SHORT_SAMPLING)
    assert result.exit_code == 2, result.output
    assert "'tpu' is not a device" in result.stderr


def test_prompts_to_a_text_model_that_gets_class_ids(lina, tiny_t2i_folder):
    result = lina("generate", "-m", tiny_t2i_folder, "--class", "1", *FAST)
    assert result.exit_code == 1
    assert "is a t2i model: it takes prompts" in result.stderr


@pytest.mark.parametrize(
    "name, text, fragment",
    [("empty.txt", "\n\n", "has no prompts"), ("bad.jsonl", '{"prompt": "a"}\n{oops}\n', "bad.jsonl:2: not valid JSON")],
)
def test_bad_prompts_files(lina, tiny_t2i_folder, tmp_path, name, text, fragment):
    path = tmp_path / name
    path.write_text(text)
    result = lina("generate", "-m", tiny_t2i_folder, "--prompts-file", path, *FAST)
    assert result.exit_code == 1
    assert fragment in result.stderr


def test_missing_prompts_file_is_a_usage_error(lina, tiny_t2i_folder, tmp_path):
    result = lina("generate", "-m", tiny_t2i_folder, "--prompts-file", tmp_path / "nope.txt")
    assert result.exit_code == 2
    assert "does not exist" in result.output


def test_unwritable_output_fails_before_loading_the_model(lina, tmp_path):
    (tmp_path / "file").write_text("x")
    result = lina("generate", "-m", tmp_path / "no-model-needed", "--class", "1", "-o", tmp_path / "file" / "out")
    assert result.exit_code == 1
    assert "cannot write to output folder" in result.stderr


def test_size_picks_the_released_model_or_explains(lina):
    result = lina("generate", "a cat", "--size", "300", "--offline")
    assert result.exit_code == 1
    assert "no released t2i model makes 300px images; released sizes: 512, 1024" in result.stderr
    mismatch = lina("generate", "a cat", "-m", "lina-t2i-512", "--size", "1024", "--offline")
    assert mismatch.exit_code == 1
    assert "lina-t2i-512 makes 512x512 images only, not --size 1024; lina-t2i-1024 does" in mismatch.stderr


@needs_no_cuda
def test_device_cuda_without_cuda_is_an_error(lina, tiny_c2i_folder, tmp_path):
    result = lina("generate", "-m", tiny_c2i_folder, "--class", "1", "-o", tmp_path / "c", "--device", "cuda")
    assert result.exit_code == 1
    assert "--device cuda was asked for, but torch sees no CUDA GPU" in result.stderr
    assert files(tmp_path / "c") == []


@needs_no_cuda
def test_no_cuda_falls_back_to_cpu_with_a_warning(lina, tiny_c2i_folder, tmp_path):
    result = lina("generate", "-m", tiny_c2i_folder, "--class", "1", "-s", "1", "-o", tmp_path / "w", "--ar-steps", "4", "--diffusion-steps", "3")
    assert result.exit_code == 0, result.output
    assert "warning: CUDA is not available; running on the CPU" in result.stderr
    assert read_metadata(next((tmp_path / "w").iterdir())).device == "cpu"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_guidance_is_a_usage_error(lina, tiny_c2i_folder, value):
    result = lina("generate", "-m", tiny_c2i_folder, "--class", "1", "--cfg", value, *FAST)
    assert result.exit_code == 2, result.output
    assert "--cfg" in result.output and "must be a finite number" in result.output


def test_a_run_the_model_cannot_do_fails_before_any_weight_is_read(lina, tiny_t2i_folder, tmp_path):
    """A text-to-image folder with every weight file removed still answers `--class` with the task error at once."""
    import shutil
    import time

    folder = tmp_path / "configs-only"
    shutil.copytree(tiny_t2i_folder, folder, ignore=shutil.ignore_patterns("*.safetensors", "*.bin", "*.pt"))
    began = time.perf_counter()
    result = lina("generate", "-m", folder, "--class", "3", *FAST)
    assert result.exit_code == 1, result.output
    assert "is a t2i model: it takes prompts" in result.stderr
    assert time.perf_counter() - began < 1.0
    assert "Loading" not in result.output  # no third-party progress bar


def test_a_run_that_cannot_load_its_model_announces_no_seed(lina, tmp_path):
    result = lina("generate", "a cat", "-m", "owner/not-cached", "--offline", "--cache-dir", tmp_path / "hub")
    assert result.exit_code == 1
    assert "lina download" in result.stderr and "seed" not in result.stderr
