"""Closed-form MAC counts: the paper's fvcore numbers, model geometry, the crossover and the AR step."""

from fractions import Fraction

import pytest

from models.errors import InvalidConfigError
from models.network.config import released_transformer_config
from models.perf.flops import (
    ARStep,
    AttentionShape,
    ar_step_macs,
    block_macs,
    config_for_resolution,
    core_macs,
    crossover_seq_len,
    decoder_shape,
    image_grid_of_layout,
    module_macs,
)
from models.sampling.sampler import ar_schedule

# The paper's fvcore run (the authors' evaluations/flops/flops_results.txt): B = 1, N = 5120, D = 1536, 16 heads.
PAPER = AttentionShape(seq_len=5120, dim=1536, heads=16, batch=1, image_grid=(64, 64))
PAPER_LINEAR_TOTAL = 49_993_482_240
PAPER_SOFTMAX_TOTAL = 128_849_018_880
PAPER_QKV, PAPER_PROJ = 36_238_786_560, 12_079_595_520
PAPER_LINEAR_MATMULS, PAPER_DW_CONV, PAPER_SOFTMAX_MATMULS = 1_517_813_760, 157_286_400, 80_530_636_800


def test_paper_module_numbers_are_reproduced_exactly():
    linear, softmax = module_macs(PAPER, "linear"), module_macs(PAPER, "softmax")
    assert linear.macs == PAPER_LINEAR_TOTAL
    assert softmax.macs == PAPER_SOFTMAX_TOTAL
    assert linear.terms["qkv"] == softmax.terms["qkv"] == PAPER_QKV
    assert linear.terms["proj"] == softmax.terms["proj"] == PAPER_PROJ
    assert linear.terms["dw_conv"] == PAPER_DW_CONV
    assert core_macs(PAPER, "linear").macs == PAPER_LINEAR_MATMULS
    assert core_macs(PAPER, "softmax").macs == PAPER_SOFTMAX_MATMULS
    assert linear.flops == 2 * PAPER_LINEAR_TOTAL


def test_paper_ratio_and_rounded_breakdown():
    linear, softmax = module_macs(PAPER, "linear"), module_macs(PAPER, "softmax")
    assert linear.macs / softmax.macs == pytest.approx(0.388, abs=0.002)
    giga = {name: round(value / 1e9, 2) for name, value in linear.terms.items()}
    assert (giga["qkv"], giga["proj"]) == (36.24, 12.08)
    assert round(core_macs(PAPER, "linear").macs / 1e9, 2) == 1.52
    assert round(linear.terms["dw_conv"] / 1e9, 3) == 0.157
    assert round(core_macs(PAPER, "softmax").macs / 1e9, 2) == 80.53


def test_linear_core_terms_follow_fvcore_matmul_shapes():
    # q·mean(k)ᵀ: [H, N, d]@[H, d, 1]; kᵀv: [H, d, N]@[H, N, d]; q·S: [H, N, d]@[H, d, d]
    terms = core_macs(PAPER, "linear").terms
    assert terms == {"normaliser": 16 * 5120 * 96, "kv_state": 16 * 96 * 5120 * 96, "q_state": 16 * 5120 * 96 * 96}


def test_encoder_module_has_no_conv_or_gate_and_batch_scales_linearly():
    encoder = AttentionShape(5120, 1536, 16)
    assert "dw_conv" not in module_macs(encoder, "linear").terms
    assert module_macs(encoder, "linear").uncounted == {}
    batched = AttentionShape(5120, 1536, 16, batch=3, image_grid=(64, 64))
    for attention in ("linear", "softmax"):
        assert module_macs(batched, attention).macs == 3 * module_macs(PAPER, attention).macs


def test_block_adds_the_mlp():
    mlp = 2 * 5120 * 1536 * 4 * 1536
    assert block_macs(PAPER, "linear").macs == PAPER_LINEAR_TOTAL + mlp
    assert block_macs(PAPER, "softmax").macs == PAPER_SOFTMAX_TOTAL + mlp


@pytest.mark.parametrize(
    ("task", "resolution", "seq_len", "grid"),
    [("t2i", 256, 320, (16, 16)), ("t2i", 512, 1280, (32, 32)), ("t2i", 1024, 5120, (64, 64)),
     ("t2i", 2048, 20480, (128, 128)), ("c2i", 256, 320, (16, 16))],
)
def test_resolution_maps_to_the_decoder_sequence(task, resolution, seq_len, grid):
    shape = decoder_shape(config_for_resolution(task, resolution))
    assert (shape.seq_len, shape.image_grid, shape.dim, shape.heads) == (seq_len, grid, 1536, 16)


def test_released_resolutions_give_the_released_configs():
    assert config_for_resolution("t2i", 1024) == released_transformer_config("t2i", 1024)
    assert config_for_resolution("t2i", 512) == released_transformer_config("t2i", 512)
    assert config_for_resolution("c2i", 256) == released_transformer_config("c2i", 256)


@pytest.mark.parametrize("resolution", [0, 16, 300])
def test_resolution_off_the_grid_is_refused(resolution):
    with pytest.raises(InvalidConfigError, match="multiple of 32"):
        config_for_resolution("t2i", resolution)


def test_bad_shapes_are_refused():
    with pytest.raises(InvalidConfigError, match="not divisible"):
        AttentionShape(320, 100, 16)
    with pytest.raises(InvalidConfigError, match="≥ 1"):
        AttentionShape(0, 1536, 16)
    with pytest.raises(InvalidConfigError, match="image grid"):
        AttentionShape(100, 64, 4, image_grid=(16, 16))


def test_layout_of_raw_sequence_lengths():
    assert image_grid_of_layout(5120) == (64, 64)
    assert image_grid_of_layout(320) == (16, 16)
    assert image_grid_of_layout(80) == (8, 8)
    assert image_grid_of_layout(4096) is None
    assert image_grid_of_layout(1) is None


@pytest.mark.parametrize(("dim", "heads"), [(1536, 16), (1024, 16), (64, 4), (96, 3)])
def test_crossover_is_the_first_n_where_linear_wins(dim, heads):
    for scope, cost in (("core", core_macs), ("module", module_macs)):
        crossover = crossover_seq_len(dim, heads, scope=scope)
        wins = [n for n in range(1, 4 * crossover) if cost(AttentionShape(n, dim, heads), "linear").macs
                < cost(AttentionShape(n, dim, heads), "softmax").macs]
        assert wins[0] == crossover and wins == list(range(crossover, 4 * crossover))


def test_crossover_with_the_conv_branch():
    # t2i layout: the conv covers L = 4/5 of the N rows; per token linear − softmax = D·(2d + 1 + 25·4/5 − 2N).
    fraction = Fraction(4, 5)
    crossover = crossover_seq_len(1536, 16, fraction)
    assert crossover == 107  # (2·96 + 1 + 20) / 2 = 106.5
    for n in (crossover - 1, crossover):
        linear = 1536 * (2 * 96 + 1 + 25 * fraction) * n
        assert (linear < 2 * n * n * 1536) == (n == crossover)


def test_middle_ar_step_of_the_default_schedule():
    config = released_transformer_config("t2i", 1024)
    step = ARStep.of_schedule(config)
    counts = ar_schedule(config.num_image_tokens, 128)
    assert step.num_steps == len(counts) == 127
    assert step.index == 63
    assert (step.known, step.predicted) == (sum(counts[:63]), counts[63])
    assert (step.diffusion_steps, step.rows_per_image) == (25, 2)
    last = ARStep.of_schedule(config, -1)
    assert last.known + last.predicted == config.num_image_tokens
    with pytest.raises(InvalidConfigError, match="steps 0..126"):
        ARStep.of_schedule(config, 127)


def test_ar_step_terms_add_up():
    config = released_transformer_config("t2i", 1024)
    step = ARStep(known=1000, predicted=40, diffusion_steps=25, rows_per_image=2)
    linear = ar_step_macs(config, step, "linear")
    assert set(linear.terms) == {"canvas_embed", "encoder_blocks", "decoder_blocks", "head"}
    decoder_rows = decoder_shape(config, batch=2)
    assert linear.terms["decoder_blocks"] == 16 * block_macs(decoder_rows, "linear").macs
    encoder_rows = AttentionShape(1024 + 1000, 1536, 16, batch=2)
    assert linear.terms["encoder_blocks"] == 16 * block_macs(encoder_rows, "linear").macs
    # Only the attention differs between the two models; the head and embedding are shared.
    softmax = ar_step_macs(config, step, "softmax")
    assert softmax.terms["head"] == linear.terms["head"]
    assert ar_step_macs(config, step, "linear", batch=2).macs == 2 * linear.macs
