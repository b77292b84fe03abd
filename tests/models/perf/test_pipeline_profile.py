"""models.perf.pipeline_profile on tiny models on the CPU: random init, model resolution, the record's schema, FLOPs
against FlopCounterMode, and that timing leaves results unchanged. Nothing here asserts on speed."""

import json
import math

import pytest
import torch

from models.constants import RELEASED_MODELS
from models.errors import CheckpointMismatchError, InvalidConfigError, ModelNotFoundError, WeightsNotCachedError
from models.network.config import released_transformer_config
from models.perf.flop_counter import count_flops
from models.perf.pipeline_profile import (
    AR_LOOP,
    CPU_WARNING,
    DECODER_HALF,
    ENCODER_HALF,
    PHASES,
    SAMPLING,
    TILING_PHASES,
    TOTAL,
    VAE_DECODE,
    PhaseClock,
    benchmark_pipeline,
    pipeline_flops,
    random_conditions,
    time_pipeline,
    timed_halves,
)
from models.perf.profiled_pipelines import RANDOM_WEIGHTS_NOTE, random_init_pipeline, resolve_model
from models.perf.timing import TimingSettings
from models.sampling.sampler import PHASE_CONTEXT, PHASE_HEAD, PHASE_IMAGE_ENCODER, sample_latents
from models.sampling.settings import SamplingSettings
from tests.factories import tiny_transformer_config, tiny_vae_config

FAST = SamplingSettings(ar_steps=3, diffusion_steps=2, cfg=3.0)
CPU_TIMING = TimingSettings.resolve("cpu", "fp32", warmup=0, repeats=2)
STATISTICS = ("median", "p10", "p90", "min", "max")


def tiny_parts(task: str = "c2i", attention: str = "linear", dtype: str = "fp32"):
    return random_init_pipeline(tiny_transformer_config(task, attention), tiny_vae_config(task), "cpu", dtype)


# ----------------------------------------------------------------------------------------------------
# Random initialisation
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["t2i", "c2i"])
def test_random_init_builds_in_the_target_dtype(task):
    parts = tiny_parts(task, dtype="bf16")
    for module in (parts.transformer, parts.vae):
        for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
            assert (tensor.dtype, tensor.device.type) == (torch.bfloat16, "cpu"), name
            assert torch.isfinite(tensor).all(), name
    blocks = parts.transformer.image_encoder.blocks
    gate = blocks[-1].attn.key_scale
    assert torch.equal(gate, torch.ones_like(gate))  # KV gates start at ones, like the reference's
    assert torch.equal(blocks[0].norm1.weight, torch.ones_like(blocks[0].norm1.weight))
    assert not blocks[0].attn.qkv.bias.any()
    assert blocks[0].attn.qkv.weight.float().std() > 0
    if task == "t2i":  # the null text rows are a buffer: drawn too, not left as allocator garbage
        null_rows = parts.transformer.text_embed.weight
        assert null_rows.float().std() > 0


def test_random_init_decodes_fp16_in_fp32_and_refuses_a_vae_that_does_not_fit():
    parts = tiny_parts("t2i", dtype="fp16")
    assert next(parts.transformer.parameters()).dtype == torch.float16
    assert next(parts.vae.parameters()).dtype == torch.float32  # SDXL's VAE overflows in fp16 (load_pipeline's rule)
    with pytest.raises(InvalidConfigError, match="latent channels"):
        random_init_pipeline(tiny_transformer_config("t2i"), tiny_vae_config("c2i"), "cpu", "fp32")


@pytest.mark.parametrize("alias", sorted(RELEASED_MODELS))
def test_released_aliases_resolve_to_their_architecture_without_files(alias):
    release = RELEASED_MODELS[alias]
    model = resolve_model(alias, random_init=True)
    assert model.path is None and model.random_init
    assert model.config == released_transformer_config(release["task"], release["resolution"])
    vae = model.vae_config
    assert (vae.stride, vae.latent_channels) == (model.config.image_stride, model.config.image_dim)
    softmax = resolve_model(alias, random_init=True, attention="softmax").config
    assert softmax == model.config.replace(attention="softmax")


# ----------------------------------------------------------------------------------------------------
# Resolution errors and settings
# ----------------------------------------------------------------------------------------------------


def test_resolution_errors_name_the_fix(tiny_c2i_folder, tmp_path):
    with pytest.raises(WeightsNotCachedError, match=r"--random-init.*lina download lina-t2i-512"):
        resolve_model("lina-t2i-512", cache_dir=tmp_path / "empty-cache")
    with pytest.raises(ModelNotFoundError, match="random initialisation builds a released alias"):
        resolve_model("someone/some-model", random_init=True)
    with pytest.raises(CheckpointMismatchError, match="linear-attention weights.*--random-init"):
        resolve_model(tiny_c2i_folder, attention="softmax")
    with pytest.raises(InvalidConfigError, match="'linear' or 'softmax'"):
        resolve_model(tiny_c2i_folder, random_init=True, attention="flash")
    folder_softmax = resolve_model(tiny_c2i_folder, random_init=True, attention="softmax")
    assert folder_softmax.config.attention == "softmax" and folder_softmax.vae_config is not None


def test_bad_options_are_refused_before_timing():
    parts = tiny_parts()
    with pytest.raises(InvalidConfigError, match="batch size 0"):
        time_pipeline(parts, FAST, CPU_TIMING, batch_size=0)
    with pytest.raises(InvalidConfigError, match="positive"):
        time_pipeline(parts, FAST, CPU_TIMING, peak_tflops=0.0)


# ----------------------------------------------------------------------------------------------------
# The record
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("attention", ["linear", "softmax"])
def test_record_schema_and_phases_that_tile_each_run(attention):
    record = time_pipeline(tiny_parts("c2i", attention), FAST, CPU_TIMING, batch_size=2, peak_tflops=1.0)
    json.dumps(record)  # JSON-ready as it is
    summary = (record["task"], record["attention"], record["batch_size"], record["image_size"])
    assert summary == ("c2i", attention, 2, [64, 64])
    assert record["sampling"] == {"ar_steps": 3, "ar_steps_run": 3, "diffusion_steps": 2, "cfg": 3.0, "cfg_min": None}
    assert record["timing"] == {
        "device": "cpu", "dtype": "fp32", "vae_dtype": "fp32", "warmup": 0, "repeats": 2,
        "clock": "time.perf_counter", "head_cuda_graphs": False, "kernels": "reference",
    }
    assert record["memory_mb"] is None and record["warnings"] == [CPU_WARNING]
    assert list(record["phases_ms"]) == list(PHASES)
    assert len(record["runs_ms"]) == 2
    for run in record["runs_ms"]:
        assert all(run[name] >= 0 for name in run)
        assert math.isclose(sum(run[name] for name in TILING_PHASES), run[TOTAL], rel_tol=1e-9)
        assert run[ENCODER_HALF] + run[DECODER_HALF] <= run[PHASE_IMAGE_ENCODER]
        assert math.isclose(run[AR_LOOP], run[PHASE_IMAGE_ENCODER] + run[PHASE_HEAD], rel_tol=1e-9)
        assert math.isclose(run[SAMPLING], run[TOTAL] - run[VAE_DECODE], rel_tol=1e-9)
    for name, stats in record["phases_ms"].items():
        assert list(stats) == list(STATISTICS)
        values = [run[name] for run in record["runs_ms"]]
        assert stats["min"] == min(values) and stats["max"] == max(values)
        assert stats["min"] <= stats["p10"] <= stats["median"] <= stats["p90"] <= stats["max"]
    total = record["phases_ms"][TOTAL]["median"]
    assert record["per_image_ms"] == pytest.approx(total / 2)
    assert record["images_per_s"] == pytest.approx(2000 / total)
    assert record["flops"][SAMPLING] > record["flops"][AR_LOOP] > 0
    assert record["achieved_tflops"][SAMPLING] == pytest.approx(
        record["flops"][SAMPLING] / (record["phases_ms"][SAMPLING]["median"] / 1000) / 1e12
    )
    assert record["mfu"] == pytest.approx(record["achieved_tflops"][SAMPLING])  # peak 1 TFLOP/s


def test_without_decode_there_is_no_decode_phase():
    record = time_pipeline(tiny_parts("t2i"), FAST, CPU_TIMING, decode=False)
    assert VAE_DECODE not in record["phases_ms"] and record["decode"] is False
    assert record["mfu"] is None
    for run in record["runs_ms"]:
        assert run[SAMPLING] == run[TOTAL]
    assert any("text encoder excluded" in note for note in record["notes"])
    assert not any("VAE decode" in note for note in record["notes"])


def test_a_loaded_text_to_image_folder(tiny_t2i_folder):
    model = resolve_model(tiny_t2i_folder)
    record = benchmark_pipeline(model, FAST, CPU_TIMING)
    assert (record["model"], record["weights"], record["task"]) == (str(tiny_t2i_folder), "loaded", "t2i")
    assert RANDOM_WEIGHTS_NOTE not in record["notes"]
    softmax = resolve_model(tiny_t2i_folder, random_init=True, attention="softmax")
    random = benchmark_pipeline(softmax, FAST, CPU_TIMING)
    assert (random["weights"], random["attention"]) == ("random", "softmax")
    assert RANDOM_WEIGHTS_NOTE in random["notes"]


# ----------------------------------------------------------------------------------------------------
# FLOPs and the timing hooks
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "attention", "settings"),
    [
        ("t2i", "linear", FAST),
        ("c2i", "softmax", SamplingSettings(ar_steps=4, diffusion_steps=2, cfg=1.0)),  # no guidance: one row per image
        ("c2i", "linear", SamplingSettings(ar_steps=5, diffusion_steps=3, cfg=2.4, cfg_min=0.5)),  # unguided first
    ],
    ids=["t2i-linear-guided", "c2i-softmax-unguided", "c2i-linear-ramp"],
)
def test_closed_form_flops_equal_flop_counter_on_a_whole_run(task, attention, settings):
    parts = tiny_parts(task, attention)
    batch = 2
    conditions = random_conditions(parts.transformer, batch, torch.Generator().manual_seed(0))

    def generate() -> None:
        condition, null_condition = conditions()
        generators = [torch.Generator().manual_seed(seed) for seed in range(batch)]
        sample_latents(parts.transformer, parts.scheduler, condition, null_condition, generators, settings)

    with torch.inference_mode():
        measured = count_flops(generate)
    assert pipeline_flops(parts.transformer.config, settings, batch)[SAMPLING] == measured


@pytest.mark.parametrize("attention", ["linear", "softmax"])
def test_timing_hooks_leave_the_latents_unchanged(attention):
    parts = tiny_parts("t2i", attention)
    conditions = random_conditions(parts.transformer, 2, torch.Generator().manual_seed(0))
    clock = PhaseClock(torch.device("cpu"))

    def generate(timer=None) -> torch.Tensor:
        condition, null_condition = conditions()
        generators = [torch.Generator().manual_seed(seed) for seed in (3, 4)]
        transformer, scheduler = parts.transformer, parts.scheduler
        return sample_latents(transformer, scheduler, condition, null_condition, generators, FAST, timer=timer)

    with torch.inference_mode():
        plain = generate()
        with timed_halves(parts.transformer.image_encoder, clock):
            timed = generate(clock)
        after = generate()  # the hooks are gone again
    assert torch.equal(plain, timed) and torch.equal(plain, after)
    times = clock.read()
    assert set(times) == {PHASE_CONTEXT, PHASE_IMAGE_ENCODER, PHASE_HEAD, ENCODER_HALF, DECODER_HALF}
    assert not parts.transformer.image_encoder.blocks[0]._forward_pre_hooks
