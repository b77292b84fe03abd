"""The guidance mix and Euler step of `reference.py` as one Triton kernel (forward only), same signature.

The reference runs up to seven element-wise kernels per diffusion step of every head call (subtract, scale,
add; widen, multiply, add, narrow); on a 1024-px image's small head calls each kernel costs about as much as
its launch. Every value the reference rounds to the velocity's dtype is rounded at the same point here.
"""

import torch
import triton
import triton.language as tl

from models.ops.device import on_input_device

SUPPORTED_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
BLOCK = 1024
NUM_WARPS = 4


@triton.jit
def _round(x, dtype: tl.constexpr):
    """Round float32 x to `dtype` and widen it again: a rounding step of the reference's op sequence."""
    return x.to(dtype).to(tl.float32)


@triton.jit
def _guided_euler_step_kernel(
    velocity_ptr, sample_ptr, out_ptr, numel, step, scale, GUIDED: tl.constexpr, BLOCK: tl.constexpr
):
    """out = sample + step·v with v = uncond + (cond − uncond)·scale (GUIDED) or the velocity as it is."""
    offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < numel
    first = tl.load(velocity_ptr + offsets, mask=mask, other=0.0)
    dtype = first.dtype
    velocity = first.to(tl.float32)
    if GUIDED:  # the first B rows are the conditional ones, the next B the unconditional
        uncond = tl.load(velocity_ptr + numel + offsets, mask=mask, other=0.0).to(tl.float32)
        velocity = _round(uncond + _round(_round(velocity - uncond, dtype) * scale, dtype), dtype)
    sample = tl.load(sample_ptr + offsets, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + offsets, (sample + _round(step * velocity, dtype)).to(dtype), mask=mask)


# Whether `triton.jit` built the kernel for Triton's CPU interpreter (TRITON_INTERPRET=1 at import).
INTERPRETED = not isinstance(_guided_euler_step_kernel, triton.runtime.JITFunction)


@on_input_device
def guided_euler_step(
    velocity: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor, sample: torch.Tensor, scale: float | None
) -> torch.Tensor:
    """`reference.guided_euler_step` in one kernel.

    Args:
        velocity: [2B, n, K] ([cond ; uncond] rows) with a scale, [B, n, K] without; bf16/fp16/fp32, CUDA.
        sigma, sigma_next: 0-dim float32 CPU tensors (read on the host: no device sync).
        sample: [B, n, K] in the velocity's dtype.
        scale: the CFG scale, or None.

    Returns:
        A new contiguous [B, n, K] tensor; equal to the reference's but for float32 inputs, where the compiler
        may fuse the final multiply-add (one rounding instead of two).
    """
    if velocity.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"velocity dtype {velocity.dtype} is not supported; use one of {SUPPORTED_DTYPES}")
    if not (velocity.is_cuda or INTERPRETED):
        raise ValueError(
            f"the fused kernel runs on CUDA tensors (or under TRITON_INTERPRET=1); got a {velocity.device} tensor — "
            "use models.ops.guided_euler_step.reference"
        )
    rows = 2 if scale is not None else 1
    if velocity.shape[0] != rows * sample.shape[0] or velocity.shape[1:] != sample.shape[1:]:
        raise ValueError(
            f"velocity {tuple(velocity.shape)} must hold {rows} rows per row of sample {tuple(sample.shape)}"
        )
    if (sample.dtype, sample.device) != (velocity.dtype, velocity.device):
        raise ValueError(
            f"sample is {sample.dtype} on {sample.device}; velocity is {velocity.dtype} on {velocity.device}"
        )
    velocity, sample = velocity.contiguous(), sample.contiguous()
    out = torch.empty_like(sample)
    numel = sample.numel()
    if numel:
        _guided_euler_step_kernel[(triton.cdiv(numel, BLOCK),)](
            velocity,
            sample,
            out,
            numel,
            (sigma_next - sigma).item(),
            1.0 if scale is None else scale,
            GUIDED=scale is not None,
            BLOCK=BLOCK,
            num_warps=NUM_WARPS,
        )
    return out
