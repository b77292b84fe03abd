"""LINA's LayerNorm patterns as one Triton kernel each (forward only), same signatures as `reference.py`.

One program normalises `ROWS_PER_PROGRAM` rows of W values held in registers (W ≤ MAX_WIDTH) and applies
the element-wise work around the norm in the same pass: the residual add (and gate) of `add_layer_norm`, the (1 + scale) and
shift of `modulated_layer_norm`. The reference runs three to five kernels for each, every one a full read and
write of the activations. `add_layer_norm_modulated` runs both patterns on the same rows in one kernel, where a
head block's gated residual meets the next AdaLN.

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
# Rows per program and warps, from a sweep on one H200 (1/2/4/8 rows × 2/4/8/16 warps, bf16, W = 1536, 100
# launches per CUDA graph so the host's launch cost is out; docs/performance.md, "Kernel tuning"): one row and
# 4 warps was within 0.2 µs of the fastest for the head's 128 rows and the fastest for the decoder's 10240,
# where the former default of 4 rows × 8 warps took 0.8–1.0 µs more on 128 rows and 2–7 µs more on 10240.
ROWS_PER_PROGRAM = 1
NUM_WARPS = 4


@triton.jit
def _round(x, dtype: tl.constexpr):
    """Round float32 x to `dtype` and widen it again: a rounding step of the reference's op sequence."""
    return x.to(dtype).to(tl.float32)


@triton.jit
def _normalised(x, mask, width, eps):
    """(x − mean) / √(var + eps) of each row of float32 x [R, W_pad] (padding masked out), in float32."""
    mean = tl.sum(x, axis=1)[:, None] / width
    centred = tl.where(mask, x - mean, 0.0)
    rstd = 1.0 / tl.sqrt(tl.sum(centred * centred, axis=1)[:, None] / width + eps)
    return centred * rstd


@triton.jit
def _modulated(normed, scale_ptrs, shift_ptrs, mask):
    """normed·(1 + scale) + shift with the reference's roundings; `normed` is float32 holding dtype values."""
    scale_raw = tl.load(scale_ptrs, mask=mask, other=0.0)
    dtype = scale_raw.dtype
    scale = scale_raw.to(tl.float32)
    shift = tl.load(shift_ptrs, mask=mask, other=0.0).to(tl.float32)
    return _round(_round(normed * _round(1.0 + scale, dtype), dtype) + shift, dtype)


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
    y = _normalised(x_raw.to(tl.float32), mask, width, eps)
    if HAS_AFFINE:
        weight = tl.load(weight_ptr + cols, mask=cols < width, other=0.0).to(tl.float32)
        bias = tl.load(bias_ptr + cols, mask=cols < width, other=0.0).to(tl.float32)
        y = y * weight + bias
    y = _round(y, dtype)
    if HAS_MODULATION:
        y = _modulated(y, scale_ptr + rows * scale_row_stride + cols, shift_ptr + rows * shift_row_stride + cols, mask)
    if HAS_GATE:
        gate = tl.load(gate_ptr + rows * gate_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
        y = _round(y * gate, dtype)
    if HAS_RESIDUAL:
        residual = tl.load(residual_ptr + rows * residual_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
        y = residual + y
    tl.store(out_ptr + rows * width + cols, y.to(dtype), mask=mask)


@triton.jit
def _add_layer_norm_modulated_kernel(
    x_ptr,
    sum_ptr,
    modulated_ptr,
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
    modulation_eps,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """sum = residual + gate · (LN(x)·w + b); modulated = LN(sum)·(1 + scale) + shift, for BLOCK_ROWS rows."""
    rows = (tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)).to(tl.int64)[:, None]  # [R, 1]
    cols = tl.arange(0, BLOCK_W)[None, :]  # [1, W]
    mask = (rows < num_rows) & (cols < width)
    x_raw = tl.load(x_ptr + rows * x_row_stride + cols, mask=mask, other=0.0)
    dtype = x_raw.dtype
    weight = tl.load(weight_ptr + cols, mask=cols < width, other=0.0).to(tl.float32)
    bias = tl.load(bias_ptr + cols, mask=cols < width, other=0.0).to(tl.float32)
    y = _round(_normalised(x_raw.to(tl.float32), mask, width, eps) * weight + bias, dtype)
    gate = tl.load(gate_ptr + rows * gate_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
    residual = tl.load(residual_ptr + rows * residual_row_stride + cols, mask=mask, other=0.0).to(tl.float32)
    total = _round(residual + _round(y * gate, dtype), dtype)  # the stored sum is what the next norm reads
    tl.store(sum_ptr + rows * width + cols, total.to(dtype), mask=mask)
    modulated = _modulated(
        _round(_normalised(total, mask, width, modulation_eps), dtype),
        scale_ptr + rows * scale_row_stride + cols,
        shift_ptr + rows * shift_row_stride + cols,
        mask,
    )
    tl.store(modulated_ptr + rows * width + cols, modulated.to(dtype), mask=mask)


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


def _check_affine(x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None) -> None:
    width = x.shape[-1]
    if weight is None or bias is None or weight.shape != (width,) or bias.shape != (width,):
        raise ValueError(f"weight and bias must both be [W] = [{width}]")
    for name, tensor in (("weight", weight), ("bias", bias)):
        if (tensor.dtype, tensor.device) != (x.dtype, x.device):
            raise ValueError(f"{name} is {tensor.dtype} on {tensor.device}; x is {x.dtype} on {x.device}")


def _launch(x: torch.Tensor, eps: float, **tensors: torch.Tensor | None) -> torch.Tensor:
    """Run the kernel on x with the optional tensors named as the kernel's pointers (residual, weight, …)."""
    _check_x(x)
    width = x.shape[-1]
    weight, bias = tensors.get("weight"), tensors.get("bias")
    if weight is not None:
        _check_affine(x, weight, bias)
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


@on_input_device
def add_layer_norm_modulated(
    residual: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    gate: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
    modulation_eps: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`add_layer_norm` with a gate, then `modulated_layer_norm` of its result, in one kernel.

    Args:
        residual, x, gate, scale, shift: [..., W], as for `add_layer_norm` and `modulated_layer_norm`.
        weight, bias, eps: the block's LayerNorm; modulation_eps: the next AdaLN's.

    Returns:
        (sum, modulated), new contiguous tensors of x's shape and dtype; each matches its reference up to the
        order of the mean and variance sums (the modulation reads the sum as rounded to x's dtype, as stored).
    """
    _check_x(x)
    _check_affine(x, weight, bias)
    x_rows = _rows(x, "x", x)
    rows = {name: _rows(tensor, name, x) for name, tensor in
            (("residual", residual), ("gate", gate), ("scale", scale), ("shift", shift))}
    total, modulated = (torch.empty(x.shape, dtype=x.dtype, device=x.device) for _ in range(2))
    if total.numel() == 0:
        return total, modulated
    num_rows = x_rows.shape[0]
    _add_layer_norm_modulated_kernel[(triton.cdiv(num_rows, ROWS_PER_PROGRAM),)](
        x_rows,
        total,
        modulated,
        rows["residual"],
        weight,
        bias,
        rows["gate"],
        rows["scale"],
        rows["shift"],
        x.shape[-1],
        x_rows.stride(0),
        rows["residual"].stride(0),
        rows["gate"].stride(0),
        rows["scale"].stride(0),
        rows["shift"].stride(0),
        num_rows,
        eps,
        modulation_eps,
        BLOCK_ROWS=ROWS_PER_PROGRAM,
        BLOCK_W=triton.next_power_of_2(x.shape[-1]),
        num_warps=NUM_WARPS,
    )
    return total, modulated
