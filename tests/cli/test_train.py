"""`lina train`: the parts, a tiny run with export, `lina generate` on the export, resume, and flags that do not fit."""

import json

import pytest
import torch
from safetensors import safe_open

from models.network.text_encoder import PhiTextEncoder
from models.train.progress import read_log
from tests.cli.conftest import image_records

TINY_PARTS = ["--size", "32", "--device", "cpu"]
TINY_MODEL = ["--config", "tiny", "--size", "32", "--dataset-size", "16", "-b", "4", "--checkpoint-every", "2",
              "--log-every", "1", "--device", "cpu"]


@pytest.fixture
def parts(lina, tmp_path):
    made = lina("train", "vae", "--out", "parts", "--widths", "8,8,8,8", "--groups", "4", "--steps", "2", "-b", "4",
                *TINY_PARTS)
    assert made.exit_code == 0, made.output
    assert "wrote" in made.output and (tmp_path / "parts" / "vae" / "config.json").is_file()
    made = lina("train", "text-encoder", "--out", "parts", "--hidden", "32", "--layers", "1")
    assert made.exit_code == 0, made.output
    return tmp_path / "parts"


def test_train_export_and_generate(lina, parts, tmp_path):
    run = lina("train", "model", "--parts", parts, *TINY_MODEL, "--steps", "4", "--out", "run", "--export", "exported",
               "--export-dtype", "fp16", "--format", "json", "--shapes-relations", "left_of=2, above=0")
    assert run.exit_code == 0, run.output
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["recipe"]["shapes_relations"]
    assert recorded == {"left of": 2.0, "above": 0.0}  # the command line joins a relation's words with "_"
    records = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert [r["step"] for r in records] == [1, 2, 3, 4] and all("images_per_second" in r for r in records)
    # 4 steps with the default EMA (0.99 every 100): the warning names settings that fit the run
    assert "Use --ema-every 1 --ema-decay 0.25, or export the raw weights" in " ".join(run.output.split())
    weights = tmp_path / "exported" / "transformer" / "diffusion_pytorch_model.safetensors"
    with safe_open(str(weights), "pt") as handle:
        assert handle.get_tensor("mask_embed.mask_token").dtype.is_floating_point
        assert str(handle.get_tensor("mask_embed.mask_token").dtype) == "torch.float16"

    made = lina("generate", "a photo of a red circle", "-m", tmp_path / "exported", "--ar-steps", "2",
                "--diffusion-steps", "2", "--device", "cpu", "-s", "1", "-o", "red.png")
    assert made.exit_code == 0, made.output
    assert (tmp_path / "red.png").is_file()

    again = lina("train", "model", "--parts", parts, *TINY_MODEL, "--steps", "4", "--out", "run")
    assert again.exit_code == 1 and "already holds a training run" in again.output
    conflict = lina("train", "model", "--out", "run", "--resume", "--lr", "0.5")
    assert conflict.exit_code == 1 and "lr" in conflict.output
    resumed = lina("train", "model", "--out", "run", "--resume", "--steps", "6", "--device", "cpu")
    assert resumed.exit_code == 0, resumed.output
    assert "trained 6 steps" in resumed.output
    assert [line["step"] for line in read_log(tmp_path / "run")] == [1, 2, 3, 4, 5, 6]

    exported = lina("train", "export", "run", "exported-ema", "--dtype", "fp16", "--ar-steps", "3", "--cfg", "2.5")
    assert exported.exit_code == 0 and (tmp_path / "exported-ema" / "model_index.json").is_file()
    with safe_open(str(tmp_path / "exported-ema" / "transformer" / "diffusion_pytorch_model.safetensors"), "pt") as handle:
        assert str(handle.get_tensor("mask_embed.mask_token").dtype) == "torch.float16"
    # The sampler settings given to export become the folder's own defaults, which `lina generate` then uses.
    own = lina("generate", "a photo of a red circle", "-m", tmp_path / "exported-ema", "--diffusion-steps", "2",
               "--device", "cpu", "-s", "1", "-o", "own.png", "--format", "json")
    assert own.exit_code == 0, own.output
    [record] = image_records(own.stdout)
    assert (record["ar_steps"], record["diffusion_steps"], record["cfg"]) == (3, 2, 2.5)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "model", "--out", "run"], "--parts DIR"),
        (["train", "model", "--out", "run", "--resume", "--parts", "parts"], "drop --parts"),
        (["train", "model", "--out", "run", "--parts", "p", "--dtype", "fp16"], "fp16 training is not supported"),
        (["train", "model", "--out", "run", "--parts", "p", "--task", "video"], "t2i or c2i"),
        (["train", "vae", "--out", "p", "--widths", "8,x"], "comma-separated"),
        (["train", "model", "--out", "run", "--parts", "p", "--shapes-mix", "position:3"], "expected TASK=WEIGHT"),
        (["train", "model", "--out", "run", "--parts", "p", "--shapes-relations", "left"], "expected RELATION=WEIGHT"),
    ],
)
def test_flags_that_do_not_fit_are_usage_errors(lina, args, message):
    result = lina(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_a_text_encoder_trained_as_a_language_model(lina, tmp_path):
    made = lina("train", "text-encoder", "--out", "lm", "--hidden", "32", "--layers", "1", "--steps", "5", "-b", "16",
                "--device", "cpu")
    assert made.exit_code == 0, made.output
    assert "trained 5 steps, next-word loss" in made.output
    random = lina("train", "text-encoder", "--out", "random", "--hidden", "32", "--layers", "1")
    assert random.exit_code == 0, random.output
    rows = [PhiTextEncoder.from_pretrained(tmp_path / name / "text_encoder", tmp_path / name / "tokenizer")
            .encode(["a photo of a red circle"], 8)[0] for name in ("lm", "random")]
    assert not torch.allclose(*rows)


def test_missing_parts_and_resuming_nothing(lina, tmp_path):
    (tmp_path / "empty").mkdir()
    missing = lina("train", "model", "--out", "run", "--parts", "empty", "--device", "cpu")
    assert missing.exit_code == 1 and "lacks" in missing.output and "lina train vae" in missing.output
    nothing = lina("train", "model", "--out", "nowhere", "--resume", "--device", "cpu")
    assert nothing.exit_code == 1 and "holds no training run" in nothing.output


def test_help_lists_the_train_commands(lina):
    result = lina("train", "--help")
    assert result.exit_code == 0
    for command in ("model", "vae", "text-encoder", "export"):
        assert command in result.output
