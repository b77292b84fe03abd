"""The fused conv-branch kernel against its plain-PyTorch reference, and the reference against the module.

Cases: a prefix of context rows before the image rows (as in the decoder), none, channel counts that cross
the kernel's channel tiles, grids whose token count is not a multiple of the token tile, k = 3 and 5.
"""

import pytest
import torch

from models.network.attention import LinearAttention
from models.ops.depthwise_conv.reference import add_depthwise_conv as reference_conv
from tests.models.ops.conftest import (
    DEVICE,
    LARGE_NEEDS_CUDA,
    RELATIVE_RMS_TOLERANCE,
    assert_close,
    dtype_params,
    requires_fused,
)

# (B, prefix, (h, w), D, k)
CASES = [(2, 5, (6, 7), 40, 5), (1, 0, (3, 3), 130, 3), (2, 3, (8, 9), 16, 5)]
RELEASED_CASES = [(2, 1024, (64, 64), 1536, 5), (2, 256, (32, 32), 1536, 5)]


def case_id(case) -> str:
    batch, prefix, (grid_h, grid_w), dim, kernel = case
    return f"B{batch}-P{prefix}-{grid_h}x{grid_w}-D{dim}-k{kernel}"


def inputs(case, dtype, seed=0):
    batch, prefix, (grid_h, grid_w), dim, kernel = case
    generator = torch.Generator().manual_seed(seed)
    seq_len = prefix + grid_h * grid_w
    out, x = (torch.randn(batch, seq_len, dim, generator=generator).to(DEVICE, dtype) for _ in range(2))
    weight = (torch.randn(dim, 1, kernel, kernel, generator=generator) / kernel).to(DEVICE, dtype)
    bias = torch.randn(dim, generator=generator).to(DEVICE, dtype)
    return out, x, weight, bias, (grid_h, grid_w)


def fused_conv():
    from models.ops.depthwise_conv import add_depthwise_conv

    return add_depthwise_conv


def test_reference_is_the_module_conv_branch():
    """LinearAttention's decoder output minus its conv-free output is the reference's added conv."""
    torch.manual_seed(0)
    dim, heads, grid, prefix = 24, 2, (3, 4), 5
    module = LinearAttention(dim, heads, gate_len=prefix + 12, token_grid=grid)
    x = torch.randn(2, prefix + 12, dim)
    with torch.no_grad():
        attention = module.kernels.linear_attention_qkv(module.qkv(x), heads, module.key_scale, module.value_scale)
        expected = module.proj(reference_conv(attention, x, module.dw_conv.weight, module.dw_conv.bias, grid))
        assert torch.equal(module(x), expected)
        image = x[:, prefix:].reshape(2, *grid, dim).permute(0, 3, 1, 2)
        conv = module.dw_conv(image).flatten(2).transpose(1, 2)
        added = reference_conv(attention, x, module.dw_conv.weight, module.dw_conv.bias, grid) - attention
        assert torch.allclose(added[:, prefix:], conv) and torch.equal(added[:, :prefix], torch.zeros_like(added[:, :prefix]))


def _check(case, dtype, seed=0):
    out, x, weight, bias, grid = inputs(case, dtype, seed)
    expected = reference_conv(out, x, weight, bias, grid)
    prefix = case[1]
    out_before = out.clone()
    actual = fused_conv()(out, x, weight, bias, grid)
    assert actual.data_ptr() == out.data_ptr()  # in place
    assert torch.equal(actual[:, :prefix], out_before[:, :prefix])  # prefix rows untouched
    assert_close(actual, expected, RELATIVE_RMS_TOLERANCE[dtype], f"{case_id(case)} {dtype}")


@requires_fused
@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_fused_conv_matches_reference(case, dtype):
    _check(case, dtype)


@requires_fused
@LARGE_NEEDS_CUDA
@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("case", RELEASED_CASES, ids=case_id)
def test_fused_conv_matches_reference_at_released_sizes(case, dtype):
    _check(case, dtype)


@requires_fused
def test_fused_conv_rejects_bad_input():
    out, x, weight, bias, grid = inputs(CASES[0], torch.float32)
    conv = fused_conv()
    with pytest.raises(ValueError, match="must both be \\[B, N, D\\]"):
        conv(out[:, 1:], x, weight, bias, grid)
    with pytest.raises(ValueError, match="more tokens than"):
        conv(out, x, weight, bias, (9, 9))
    with pytest.raises(ValueError, match="k odd"):
        conv(out, x, weight[..., :4, :4], bias, grid)
    with pytest.raises(ValueError, match="share one dtype"):
        conv(out, x, weight.half(), bias, grid)
    with pytest.raises(ValueError, match="contiguous"):
        conv(out, x.transpose(0, 1).contiguous().transpose(0, 1), weight, bias, grid)
