"""The fused LayerNorm kernels against their plain-PyTorch references, and the references against the modules.

Shapes are [rows, W] stacks as the blocks see them: W = 1536 is the released width (a non-power of two,
padded to 2048 in the kernel), 40 a tiny one; the head's gate, scale and shift are chunks of a wider matrix
(row stride 3W), read in place.
"""

import pytest
import torch
from torch import nn

from models.network.diffusion_head import ADALN_EPS
from models.ops.layer_norm import reference
from tests.models.ops.conftest import DEVICE, RELATIVE_RMS_TOLERANCE, assert_close, dtype_params, requires_fused

SHAPES = [(2, 5, 40), (3, 1536), (1, 7, 1536)]
LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, what the transformer blocks use


def fused_module():
    from models.ops.layer_norm import fused

    return fused


def inputs(shape, dtype, seed=0):
    """x, residual, weight, bias, and (gate, scale, shift) as chunks of one [..., 3W] matrix."""
    generator = torch.Generator().manual_seed(seed)
    width = shape[-1]

    def randn(*size, scale=1.0):
        return (scale * torch.randn(*size, generator=generator)).to(DEVICE, dtype)

    x, residual = randn(*shape, scale=3.0), randn(*shape)
    weight, bias = 1 + randn(width, scale=0.1), randn(width, scale=0.1)
    gate, scale, shift = randn(*shape[:-1], 3 * width, scale=0.5).chunk(3, dim=-1)
    return x, residual, weight, bias, gate, scale, shift


# ----------------------------------------------------------------------------------------------------
# The references are what the modules compute
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
def test_references_are_the_module_expressions(dtype):
    x, residual, weight, bias, gate, scale, shift = inputs((2, 5, 40), dtype)
    norm = nn.LayerNorm(40).to(DEVICE, dtype)
    with torch.no_grad():
        norm.weight.copy_(weight)
        norm.bias.copy_(bias)
        adaln_norm = nn.LayerNorm(40, eps=ADALN_EPS, elementwise_affine=False)
        assert torch.equal(reference.add_layer_norm(residual, x, weight, bias, norm.eps), residual + norm(x))
        assert torch.equal(
            reference.add_layer_norm(residual, x, weight, bias, norm.eps, gate=gate), norm(x).mul(gate).add_(residual)
        )
        assert torch.equal(
            reference.modulated_layer_norm(x, scale, shift, ADALN_EPS), adaln_norm(x).mul(1 + scale).add_(shift)
        )
        total, modulated = reference.add_layer_norm_modulated(
            residual, x, weight, bias, norm.eps, gate, scale, shift, ADALN_EPS
        )
        assert torch.equal(total, norm(x).mul(gate).add_(residual))
        assert torch.equal(modulated, adaln_norm(total).mul(1 + scale).add_(shift))


# ----------------------------------------------------------------------------------------------------
# Fused against reference
# ----------------------------------------------------------------------------------------------------


# Each pattern as (op name, call(module, tensors)): the post-norm residual, the head's gated residual (gate a
# strided chunk, read in place) and the head's AdaLN modulation.
PATTERNS = {
    "add": lambda ops, x, residual, weight, bias, gate, scale, shift: ops.add_layer_norm(
        residual, x, weight, bias, LAYER_NORM_EPS
    ),
    "gated_add": lambda ops, x, residual, weight, bias, gate, scale, shift: ops.add_layer_norm(
        residual, x, weight, bias, LAYER_NORM_EPS, gate=gate
    ),
    "modulated": lambda ops, x, residual, weight, bias, gate, scale, shift: ops.modulated_layer_norm(
        x, scale, shift, ADALN_EPS
    ),
}


@requires_fused
@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: "x".join(map(str, shape)))
@pytest.mark.parametrize("pattern", list(PATTERNS))
def test_fused_layer_norm_matches_reference(pattern, shape, dtype):
    tensors = inputs(shape, dtype, seed=len(pattern))
    assert not tensors[4].is_contiguous()  # the gate (and scale, shift): chunks of one wider matrix
    actual = PATTERNS[pattern](fused_module(), *tensors)
    expected = PATTERNS[pattern](reference, *tensors)
    assert actual.dtype == dtype and actual.is_contiguous()
    assert_close(actual, expected, RELATIVE_RMS_TOLERANCE[dtype], f"{pattern} {shape}")


@requires_fused
@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: "x".join(map(str, shape)))
def test_fused_add_layer_norm_modulated_matches_reference(shape, dtype):
    x, residual, weight, bias, gate, scale, shift = inputs(shape, dtype, seed=5)
    arguments = (residual, x, weight, bias, LAYER_NORM_EPS, gate, scale, shift, ADALN_EPS)
    actual = fused_module().add_layer_norm_modulated(*arguments)
    expected = reference.add_layer_norm_modulated(*arguments)
    for name, actual_part, expected_part in zip(("sum", "modulated"), actual, expected):
        assert actual_part.dtype == dtype and actual_part.is_contiguous()
        assert_close(actual_part, expected_part, RELATIVE_RMS_TOLERANCE[dtype], f"{name} {shape}")


@requires_fused
@pytest.mark.parametrize("dtype", dtype_params())
def test_fused_add_layer_norm_modulated_is_the_two_fused_kernels_in_turn(dtype):
    """One kernel instead of two changes no value: the modulation reads the sum as the first kernel stores it."""
    fused = fused_module()
    x, residual, weight, bias, gate, scale, shift = inputs((3, 1536), dtype, seed=6)
    total, modulated = fused.add_layer_norm_modulated(
        residual, x, weight, bias, LAYER_NORM_EPS, gate, scale, shift, ADALN_EPS
    )
    in_turn = fused.add_layer_norm(residual, x, weight, bias, LAYER_NORM_EPS, gate=gate)
    assert torch.equal(total, in_turn)
    assert torch.equal(modulated, fused.modulated_layer_norm(in_turn, scale, shift, ADALN_EPS))


@requires_fused
def test_fused_layer_norm_of_a_constant_row_is_the_bias():
    """Zero variance: the row normalises to ≈ 0 (no NaN from 0/0), leaving residual + bias.

    Not exactly 0 on CUDA: Triton divides float32 approximately (div.full.f32), so the mean of a constant row
    can be off by an ulp, which 1/√ε then scales up to ~1e-4.
    """
    x = torch.full((2, 40), 3.0, device=DEVICE)
    residual, weight, bias = torch.randn(2, 40, device=DEVICE), torch.ones(40, device=DEVICE), torch.randn(40, device=DEVICE)
    actual = fused_module().add_layer_norm(residual, x, weight, bias, LAYER_NORM_EPS)
    assert torch.allclose(actual, residual + bias, atol=1e-3)


@requires_fused
def test_fused_layer_norm_rejects_bad_input():
    fused = fused_module()
    x = torch.randn(2, 8, device=DEVICE)
    weight = torch.ones(8, device=DEVICE)
    with pytest.raises(ValueError, match="residual must have x's shape"):
        fused.add_layer_norm(x[:1], x, weight, weight, LAYER_NORM_EPS)
    with pytest.raises(ValueError, match="weight and bias must both be"):
        fused.add_layer_norm(x, x, weight[:4], weight, LAYER_NORM_EPS)
    with pytest.raises(ValueError, match="scale is torch.float16"):
        fused.modulated_layer_norm(x, x.half(), x, ADALN_EPS)
    with pytest.raises(ValueError, match="not supported"):
        fused.modulated_layer_norm(x.double(), x.double(), x.double(), ADALN_EPS)
