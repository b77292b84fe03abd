"""The fused guidance mix and Euler step against its plain-PyTorch reference, and the reference against the sampler.

Shapes are the head loop's: [B, n, K] tokens with K = p²C (64 for the released models, 12 for a tiny one), the
velocity holding [cond ; uncond] rows under guidance; σ and σ_next are float32 CPU scalars from the scheduler.
"""

import pytest
import torch

from models.ops.guided_euler_step import reference
from models.sampling.scheduler import FlowMatchEulerScheduler
from tests.models.ops.conftest import (
    DEVICE,
    FUSED_KERNEL_MODE,
    RELATIVE_RMS_TOLERANCE,
    assert_close,
    dtype_params,
    requires_fused,
)

SHAPES = [(1, 3, 12), (2, 40, 64)]
SCALES = [None, 7.0, 1.8]


def fused_module():
    from models.ops.guided_euler_step import fused

    return fused


def inputs(shape, dtype, scale, seed=0):
    """velocity (two rows per sample row under guidance), σ, σ_next and the sample."""
    generator = torch.Generator().manual_seed(seed)
    rows = 1 if scale is None else 2
    velocity = torch.randn(rows * shape[0], *shape[1:], generator=generator).to(DEVICE, dtype)
    sample = torch.randn(*shape, generator=generator).to(DEVICE, dtype)
    sigmas, _ = FlowMatchEulerScheduler().sigmas(25)
    return velocity, sigmas[3], sigmas[4], sample


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("scale", SCALES)
def test_reference_is_the_samplers_mix_and_scheduler_step(scale, dtype):
    velocity, sigma, sigma_next, sample = inputs((2, 5, 12), dtype, scale)
    mixed = velocity
    if scale is not None:
        cond, uncond = velocity.chunk(2)
        mixed = uncond + (cond - uncond) * scale
    expected = FlowMatchEulerScheduler.step(mixed, sigma, sigma_next, sample)
    assert torch.equal(reference.guided_euler_step(velocity, sigma, sigma_next, sample, scale), expected)


@requires_fused
@pytest.mark.parametrize("dtype", dtype_params())
@pytest.mark.parametrize("shape", SHAPES, ids=lambda shape: "x".join(map(str, shape)))
@pytest.mark.parametrize("scale", SCALES)
def test_fused_guided_euler_step_matches_reference(scale, shape, dtype):
    tensors = inputs(shape, dtype, scale, seed=shape[1])
    actual = fused_module().guided_euler_step(*tensors, scale)
    expected = reference.guided_euler_step(*tensors, scale)
    assert actual.dtype == dtype and actual.shape == shape and actual.is_contiguous()
    assert_close(actual, expected, RELATIVE_RMS_TOLERANCE[dtype], f"scale {scale} {shape}")


@pytest.mark.skipif(FUSED_KERNEL_MODE != "compiled", reason="bf16 rounding as the GPU does it needs CUDA")
@pytest.mark.parametrize("scale", SCALES)
def test_fused_guided_euler_step_rounds_bf16_as_the_reference(scale):
    """Every rounding of the reference happens at the same point in the kernel, so bf16 results are identical."""
    tensors = inputs((4, 64, 64), torch.bfloat16, scale, seed=1)
    assert torch.equal(fused_module().guided_euler_step(*tensors, scale), reference.guided_euler_step(*tensors, scale))


@requires_fused
def test_fused_guided_euler_step_rejects_bad_input():
    fused = fused_module()
    velocity, sigma, sigma_next, sample = inputs((2, 3, 12), torch.float32, 7.0)
    with pytest.raises(ValueError, match="must hold 2 rows per row of sample"):
        fused.guided_euler_step(velocity[:2], sigma, sigma_next, sample, 7.0)
    with pytest.raises(ValueError, match="must hold 1 rows per row of sample"):
        fused.guided_euler_step(velocity, sigma, sigma_next, sample, None)
    with pytest.raises(ValueError, match="sample is torch.float16"):
        fused.guided_euler_step(velocity, sigma, sigma_next, sample.half(), 7.0)
    with pytest.raises(ValueError, match="not supported"):
        fused.guided_euler_step(velocity.double(), sigma, sigma_next, sample.double(), 7.0)
