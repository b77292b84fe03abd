"""LINA's LayerNorm patterns as one Triton kernel each (forward only), same signatures as `reference.py`.

One program normalises `ROWS_PER_PROGRAM` rows of W values held in registers (W ≤ MAX_WIDTH) and applies
the element-wise work around the norm in the same pass: the residual add (and gate) of `add_layer_norm`, the (1 + scale) and
shift of `modulated_layer_norm`. The reference runs three to five kernels for each, every one a full read and
write of the activations.

Precision: statistics and arithmetic in float32; every value the reference rounds to the input dtype
between its ops (the normalised row, the gated row, 1 + scale, the scaled row) is rounded at the same point
here too, so outputs differ from the reference's only through the order of the mean and variance sums.
"""

import torch
import triton
import triton.language as tl

from models.ops.device import on_input_device

SUPPORTED_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
MAX_WIDTH = 8192  # one row lives in registers; LINA's widths are 1536 (transformer and head)
# Rows per program and warps: a plain default, not tuned. A sweep on the H200 (1-16 rows, 2-16 warps, calls
# back to back) measured the host's launch cost rather than the kernel, so it could not rank them.
ROWS_PER_PROGRAM = 4
NUM_WARPS = 8


@triton.jit
def _round(x, dtype: tl.constexpr):
    """Round float32 x to `dtype` and widen it again: a rounding step of the reference's op sequence."""
    return x.to(dtype).to(tl.float32)


@triton.jit
def _layer_norm_kernel(
    x_ptr,
    out_ptr,
    residual_ptr,
    weight_ptr,
    bias_ptr,
    gate_ptr,
    scale_ptr,
    shift_ptr,
    width,
    x_row_stride,
    residual_row_stride,
    gate_row_stride,
    scale_row_stride,
    shift_row_stride,
    num_rows,
    eps,
    HAS_AFFINE: tl.constexpr,
    HAS_GATE: tl.constexpr,
    HAS_RESIDUAL: tl.constexpr,
    HAS_MODULATION: tl.constexpr,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """out = [residual +] [gate ·] (LN(x)[·w + b] [·(1 + scale) + shift]) for BLOCK_ROWS rows."""
    rows = (tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)).to(tl.int64)[:, None]  # [R, 1]
    cols = tl.arange(0, BLOCK_W)[None, :]  # [1, W]
    mask = (rows < num_rows) & (cols < width)
    x_raw = tl.load(x_ptr + rows * x_row_stride + cols, mask=mask, other=0.0)
    dtype = x_raw.dtype
    x = x_raw.to(tl.float32)
    mean = tl.sum(x, axis=1)[:, None] / width
    centred = tl.where(mask, x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1)[:, None] / width + eps)
    y = centred * rstd
    if HAS_AFFINE:
        weight = tl.load(weight_ptr + cols, mask=cols < width, other=0.0).to(tl.float32)
        bias = tl.load(bias_ptr + cols, mask=cols < width, other=0.0).to(tl.float32)
        y = y * weight + bias
    y = _round(y, dtype)
    if HAS_MODULATION:
        scale = tl.load(scale_ptr + rows * scale_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
        shift = tl.load(shift_ptr + rows * shift_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
        y = _round(_round(y * _round(1.0 + scale, dtype), dtype) + shift, dtype)
    if HAS_GATE:
        gate = tl.load(gate_ptr + rows * gate_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
        y = _round(y * gate, dtype)
    if HAS_RESIDUAL:
        residual = tl.load(residual_ptr + rows * residual_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
        y = residual + y
    tl.store(out_ptr + rows * width + cols, y.to(dtype), mask=mask)


# Whether `triton.jit` built the kernel for Triton's CPU interpreter (TRITON_INTERPRET=1 at import).
INTERPRETED = not isinstance(_layer_norm_kernel, triton.runtime.JITFunction)


def _rows(tensor: torch.Tensor, name: str, like: torch.Tensor) -> torch.Tensor:
    """`tensor` as a [M, W] matrix with unit column stride (a view when possible), checked against x."""
    if tensor.shape != like.shape:
        raise ValueError(f"{name} must have x's shape {tuple(like.shape)}; got {tuple(tensor.shape)}")
    if tensor.dtype != like.dtype or tensor.device != like.device:
        raise ValueError(f"{name} is {tensor.dtype} on {tensor.device}; x is {like.dtype} on {like.device}")
    rows = tensor.reshape(-1, like.shape[-1])
    return rows if rows.stride(-1) == 1 else rows.contiguous()


def _check_x(x: torch.Tensor) -> None:
    if x.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"x dtype {x.dtype} is not supported; use one of {SUPPORTED_DTYPES}")
    if x.dim() == 0 or x.shape[-1] > MAX_WIDTH:
        raise ValueError(f"x must be [..., W] with W ≤ {MAX_WIDTH}; got shape {tuple(x.shape)}")
    if not (x.is_cuda or INTERPRETED):
        raise ValueError(
            f"the fused kernel runs on CUDA tensors (or under TRITON_INTERPRET=1); got a {x.device} tensor — "
            "use models.ops.layer_norm.reference"
        )


def _launch(x: torch.Tensor, eps: float, **tensors: torch.Tensor | None) -> torch.Tensor:
    """Run the kernel on x with the optional tensors named as the kernel's pointers (residual, weight, …)."""
    _check_x(x)
    width = x.shape[-1]
    weight, bias = tensors.get("weight"), tensors.get("bias")
    if weight is not None and (weight.shape != (width,) or bias is None or bias.shape != (width,)):
        raise ValueError(f"weight and bias must both be [W] = [{width}]")
    for name in ("weight", "bias"):
        if tensors.get(name) is not None and (tensors[name].dtype, tensors[name].device) != (x.dtype, x.device):
            raise ValueError(f"{name} is {tensors[name].dtype} on {tensors[name].device}; x is {x.dtype} on {x.device}")
    if (tensors.get("scale") is None) != (tensors.get("shift") is None):
        raise ValueError("scale and shift go together")
    x_rows = _rows(x, "x", x)
    out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    rows = {
        name: _rows(tensors[name], name, x)
        for name in ("residual", "gate", "scale", "shift")
        if tensors.get(name) is not None
    }

    def pointer(name: str) -> torch.Tensor:
        return rows.get(name, x_rows)  # an absent tensor's stand-in; the kernel never reads it

    def row_stride(name: str) -> int:
        return rows[name].stride(0) if name in rows else 0

    num_rows = x_rows.shape[0]
    _layer_norm_kernel[(triton.cdiv(num_rows, ROWS_PER_PROGRAM),)](
        x_rows,
        out,
        pointer("residual"),
        weight if weight is not None else x_rows,
        bias if bias is not None else x_rows,
        pointer("gate"),
        pointer("scale"),
        pointer("shift"),
        width,
        x_rows.stride(0),
        row_stride("residual"),
        row_stride("gate"),
        row_stride("scale"),
        row_stride("shift"),
        num_rows,
        eps,
        HAS_AFFINE=weight is not None,
        HAS_GATE="gate" in rows,
        HAS_RESIDUAL="residual" in rows,
        HAS_MODULATION="scale" in rows,
        BLOCK_ROWS=ROWS_PER_PROGRAM,
        BLOCK_W=triton.next_power_of_2(width),
        num_warps=NUM_WARPS,
    )
    return out


@on_input_device
def add_layer_norm(
    residual: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    gate: torch.Tensor | None = None,
) -> torch.Tensor:
    """residual + LayerNorm(x)·weight + bias (times `gate` first when given), in one kernel.

    Args:
        residual, x, gate: [..., W], one shape and dtype (bf16/fp16/fp32), CUDA; any strides with a unit
            last-dim stride are read in place (the head's gate is a chunk of a wider matrix).
        weight, bias: [W] in x's dtype.
        eps: the LayerNorm's epsilon.

    Returns:
        A new contiguous tensor of x's shape and dtype; matches `reference.add_layer_norm` up to the order of
        the mean and variance sums.
    """
    if weight is None or bias is None:
        raise ValueError("add_layer_norm needs the LayerNorm's weight and bias")
    return _launch(x, eps, residual=residual, weight=weight, bias=bias, gate=gate)


@on_input_device
def modulated_layer_norm(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm(x) without affine, ·(1 + scale) + shift, in one kernel; same contract as `add_layer_norm`."""
    return _launch(x, eps, scale=scale, shift=shift)
