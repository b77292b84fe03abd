"""The decoder's conv branch as one Triton kernel (forward only), same signature as `reference.py`.

The reference permutes the image rows of x to [B, D, h, w], convolves, transposes back and concatenates the
sum with the prefix rows: four passes over the activations and a [B, N, D] copy. Here one kernel reads x in
its token layout [B, N, D] (channels contiguous, so every tap is a coalesced row load), accumulates the k×k
taps of a tile of tokens × channels, and adds the result into `out` in place.

Precision: taps and bias accumulate in float32; the convolution is rounded to the input dtype before it is
added to `out` and the sum rounded again, the two roundings the reference makes, so results differ from
the reference's only by the order of the k² tap sums (the reference's conv kernel picks its own).
"""

import torch
import triton
import triton.language as tl

from models.ops.device import on_input_device

SUPPORTED_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
# Tile of one program: 32 consecutive image tokens (taps along a grid row share cache lines) × 256 channels
# (512-byte rows in bf16): the fastest of 18 tile/warp choices swept at the 1024-px decoder's size
# (docs/performance.md, "Kernel tuning").
BLOCK_TOKENS = 32
BLOCK_CHANNELS = 256
NUM_WARPS = 4


@triton.jit
def _add_depthwise_conv_kernel(
    out_ptr,
    x_ptr,
    weight_ptr,
    bias_ptr,
    seq_len,
    dim,
    prefix,
    grid_h,
    grid_w,
    KERNEL: tl.constexpr,
    BLOCK_T: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """out[b, prefix + t, c] += bias[c] + Σ_taps weight[c, dy, dx] · x[b, prefix + t', c] for a tile of (t, c)."""
    tokens = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    channels = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    batch = tl.program_id(2).to(tl.int64)
    token_mask = tokens < grid_h * grid_w
    channel_mask = channels < dim
    row, col = tokens // grid_w, tokens % grid_w
    base = batch * seq_len * dim + prefix * dim

    acc = tl.zeros((BLOCK_T, BLOCK_C), dtype=tl.float32)
    for dy in tl.static_range(KERNEL):
        for dx in tl.static_range(KERNEL):
            source_row, source_col = row + (dy - KERNEL // 2), col + (dx - KERNEL // 2)
            inside = token_mask & (source_row >= 0) & (source_row < grid_h) & (source_col >= 0) & (source_col < grid_w)
            source = (source_row * grid_w + source_col).to(tl.int64)
            mask = inside[:, None] & channel_mask[None, :]
            tap = tl.load(x_ptr + base + source[:, None] * dim + channels[None, :], mask=mask, other=0.0)
            tap_weight = tl.load(weight_ptr + channels * (KERNEL * KERNEL) + (dy * KERNEL + dx), mask=channel_mask, other=0.0)
            acc += tap.to(tl.float32) * tap_weight.to(tl.float32)[None, :]
    acc += tl.load(bias_ptr + channels, mask=channel_mask, other=0.0).to(tl.float32)[None, :]

    mask = token_mask[:, None] & channel_mask[None, :]
    out_offsets = base + tokens.to(tl.int64)[:, None] * dim + channels[None, :]
    previous = tl.load(out_ptr + out_offsets, mask=mask, other=0.0)
    conv = acc.to(previous.dtype).to(tl.float32)  # the reference's conv output, rounded
    tl.store(out_ptr + out_offsets, (previous.to(tl.float32) + conv).to(previous.dtype), mask=mask)


# Whether `triton.jit` built the kernel for Triton's CPU interpreter (TRITON_INTERPRET=1 at import).
INTERPRETED = not isinstance(_add_depthwise_conv_kernel, triton.runtime.JITFunction)


def _check_inputs(out, x, weight, bias, token_grid) -> None:
    """Raise ValueError naming the problem for anything the kernel cannot take."""
    if x.dim() != 3 or out.shape != x.shape:
        raise ValueError(f"out and x must both be [B, N, D]; got {tuple(out.shape)} and {tuple(x.shape)}")
    batch, seq_len, dim = x.shape
    grid_h, grid_w = token_grid
    if grid_h * grid_w > seq_len:
        raise ValueError(f"token grid {grid_h}×{grid_w} has more tokens than the sequence's {seq_len} rows")
    kernel = weight.shape[-1]
    if weight.shape != (dim, 1, kernel, kernel) or kernel % 2 == 0 or bias.shape != (dim,):
        raise ValueError(
            f"weight must be [D, 1, k, k] with k odd and bias [D], D = {dim}; got {tuple(weight.shape)} and {tuple(bias.shape)}"
        )
    if x.dtype not in SUPPORTED_DTYPES or len({out.dtype, x.dtype, weight.dtype, bias.dtype}) != 1:
        raise ValueError(
            f"out, x, weight and bias must share one dtype of {SUPPORTED_DTYPES}; got "
            f"{out.dtype}, {x.dtype}, {weight.dtype}, {bias.dtype}"
        )
    if not all(t.is_contiguous() for t in (out, x, weight, bias)):
        raise ValueError("out, x, weight and bias must be contiguous")
    if not (x.is_cuda or INTERPRETED) or len({t.device for t in (out, x, weight, bias)}) != 1:
        raise ValueError(
            "the fused kernel runs on CUDA tensors on one device (or under TRITON_INTERPRET=1) — "
            "use models.ops.depthwise_conv.reference.add_depthwise_conv"
        )


@on_input_device
def add_depthwise_conv(
    out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, token_grid: tuple[int, int]
) -> torch.Tensor:
    """out with dwconv(image rows of x) added to its image rows, computed in place in `out`.

    Args:
        out: attention output [B, N, D], contiguous; overwritten and returned.
        x: block input [B, N, D], contiguous; its last h·w rows are the image tokens, row-major.
        weight, bias: the depthwise Conv2d's [D, 1, k, k] (k odd) and [D].
        token_grid: (h, w).

    Returns:
        `out`, matching `reference.add_depthwise_conv` up to the order of the tap sums.

    Raises:
        ValueError: for mismatched shapes, dtypes or devices, an even kernel, a grid larger than the
            sequence, non-contiguous tensors, or non-CUDA tensors outside the interpreter.
    """
    _check_inputs(out, x, weight, bias, token_grid)
    batch, seq_len, dim = x.shape
    grid_h, grid_w = token_grid
    if out.numel() == 0:
        return out
    grid = (triton.cdiv(grid_h * grid_w, BLOCK_TOKENS), triton.cdiv(dim, BLOCK_CHANNELS), batch)
    _add_depthwise_conv_kernel[grid](
        out,
        x,
        weight,
        bias,
        seq_len,
        dim,
        seq_len - grid_h * grid_w,
        grid_h,
        grid_w,
        KERNEL=weight.shape[-1],
        BLOCK_T=BLOCK_TOKENS,
        BLOCK_C=BLOCK_CHANNELS,
        num_warps=NUM_WARPS,
    )
    return out
