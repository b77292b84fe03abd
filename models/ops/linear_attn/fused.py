"""Fused Triton forward of LINA's bidirectional linear attention (docs/architecture.md, "Blocks and linear attention"), inference only.

Same op and signature as `reference.linear_attention_qkv`: the `qkv` Linear output [B, N, 3·D] goes in, the
head-merged attention output [B, N, D] comes out, in one read of qkv and one write of the output, with no
intermediate [B, H, N, d] copies or float32 casts. Three launches:

1. `_state_partials_kernel`, grid (C, B·H): each program takes `ROWS_PER_CHUNK` rows of one (b, h), applies
   φ and the KV gate, and writes its partial Σ_n k_n v_nᵀ (d×d) and Σ_n k_n (d) to a float32 buffer
   [B·H, C, d+1, d] (the key sum is row d).
2. `_reduce_state_kernel`, grid (B·H, ⌈(d+1)/REDUCE_BLOCK_ROWS⌉): sums the C partials in chunk order and
   divides by N, giving S = Σ_n k_n v_nᵀ / N and k̄ = mean_n k_n in a [B·H, d+1, d] buffer.
3. `_output_kernel`, grid (⌈N/ROWS_PER_OUTPUT_PROGRAM⌉, B·H): o_n = (φ(q_n)·S) / (φ(q_n)·k̄ + ε), stored
   straight into the [B, N, D] layout.

Writing partials and reducing them in a fixed order (rather than atomics) makes the result deterministic, and
because the chunk size is a constant, the summation order depends on N only: a sample's output does not change
with the batch it is in or with the GPU's SM count.

Precision. φ(x) = ReLU(x) + 1e-6 is computed in float32 and rounded to the input dtype, exactly as the
reference (`F.relu(q) + 1e-6` on bf16 tensors computes in float32 and rounds), then widened to float32.
All sums accumulate in float32.
- float32 input: every matrix product is `tl.dot(..., input_precision="ieee")`, i.e. true float32 FMAs, no TF32.
- bf16/fp16 input: the products run on tensor cores with 16-bit operands and float32 accumulation, without
  losing accuracy against the float32 reference:
  * φ(k), φ(q) and v are exact in the input dtype (they are the rounded values the reference widens), and the
    product of two 16-bit floats is exact in float32, so Σ φ(k_n) v_nᵀ equals the reference's float32 matmul up
    to summation order.
  * A gated key w_n·φ(k_n), w_n = key_scale·value_scale, is not exact in 16 bits, and neither is S. Each such
    float32 operand x is split as x = hi + lo with hi = x rounded to the input dtype and lo = (x − hi) rounded
    again, and two dots are summed. The split keeps about 2× the input dtype's mantissa (relative error 2⁻¹⁷
    for bf16, about 2⁻²² for fp16 until lo reaches fp16's subnormals), far below the output's own rounding (2⁻⁹
    for bf16, 2⁻¹² for fp16), so outputs differ from the reference's by at most one final rounding step, like
    any float32 reordering. fp16 caveat: S and the gated keys must stay below fp16's maximum (65504), which
    float32 does not need; bf16 has float32's range.
  The 16-bit path costs one tensor-core dot per key tile (two with the gate) and two per query tile, on d
  padded 96 → 128; at the released sizes that arithmetic takes about as long as the op's memory traffic,
  while ieee float32 dots run on CUDA cores and would take several times longer (docs/performance.md,
  "Kernel tuning").
The head dim d is padded to a power of two ≥ 16 (tl.dot's minimum) with masks; padded lanes are zeroed after
φ, since φ(0) = 1e-6 ≠ 0.
"""

import torch
import triton
import triton.language as tl

from models.ops.device import on_input_device
from models.ops.linear_attn.reference import FEATURE_EPS, NORMALISER_EPS

SUPPORTED_DTYPES = (torch.bfloat16, torch.float16, torch.float32)
MAX_HEAD_DIM = 128  # the d×d float32 state of one (b, h) lives in registers; d = 96 in the released models
MIN_DOT_SIZE = 16  # tl.dot needs every dimension ≥ 16

# Pass 1: a fixed chunk size keeps the reduction order a function of N alone (batch- and GPU-invariant);
# 512 rows give 10 chunks × B·H = 32 → 320 programs for the 1024px decoder (N = 5120) on 132 SMs.
ROWS_PER_CHUNK = 512
STATE_BLOCK_N = 64  # rows per tile inside a chunk: the K dimension of the kᵀv dot
REDUCE_BLOCK_ROWS = 16  # state rows summed per reduction program
# Pass 3: S is loaded and split once per 256 query rows; 20 × 32 programs at N = 5120.
ROWS_PER_OUTPUT_PROGRAM = 256
OUTPUT_BLOCK_N = 64  # query rows per tile inside a pass-3 program
# 4 warps: the fastest of a sweep on an H200 (docs/performance.md, "Kernel tuning"). The 128×128 float32
# accumulator then takes 128 registers a thread (8 warps halve that), and the extra register pressure costs
# less than the halved occupancy did.
STATE_NUM_WARPS = 4
OUTPUT_NUM_WARPS = 4


@triton.jit
def _feature_map(x, eps: tl.constexpr):
    """φ(x) = ReLU(x) + ε rounded to x's dtype (where the reference computes it), returned as float32."""
    return (tl.maximum(x.to(tl.float32), 0.0) + eps).to(x.dtype).to(tl.float32)


@triton.jit
def _split(x, dtype: tl.constexpr):
    """float32 x as hi + lo in a 16-bit dtype: hi = x rounded, lo = x − hi rounded (≈ 2× the mantissa)."""
    hi = x.to(dtype)
    return hi, (x - hi.to(tl.float32)).to(dtype)


@triton.jit
def _state_partials_kernel(
    qkv_ptr,
    key_scale_ptr,
    value_scale_ptr,
    partials_ptr,
    seq_len,
    dim,
    head_dim,
    num_heads,
    rows_per_chunk,
    num_chunks,
    gate_head_stride,
    gate_row_stride,
    HAS_GATE: tl.constexpr,
    IS_FP32: tl.constexpr,
    FEATURE_EPS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Partial Σ_n w_n φ(k_n) v_nᵀ and Σ_n key_scale_n φ(k_n) over one chunk of rows of one (b, h)."""
    chunk = tl.program_id(0)
    batch_head = tl.program_id(1)
    batch = (batch_head // num_heads).to(tl.int64)
    head = batch_head % num_heads
    row_stride = 3 * dim
    key_base = qkv_ptr + batch * seq_len * row_stride + dim + head * head_dim
    value_base = key_base + dim
    cols = tl.arange(0, BLOCK_D)
    col_mask = cols < head_dim

    state = tl.zeros((BLOCK_D, BLOCK_D), dtype=tl.float32)
    key_sum = tl.zeros((BLOCK_D,), dtype=tl.float32)
    chunk_start = chunk * rows_per_chunk
    chunk_end = tl.minimum(chunk_start + rows_per_chunk, seq_len)
    for start in range(chunk_start, chunk_end, BLOCK_N):
        rows = start + tl.arange(0, BLOCK_N)
        row_mask = rows < chunk_end
        mask = row_mask[:, None] & col_mask[None, :]
        offsets = rows.to(tl.int64)[:, None] * row_stride + cols[None, :]
        key = tl.where(mask, _feature_map(tl.load(key_base + offsets, mask=mask, other=0.0), FEATURE_EPS), 0.0)
        value = tl.load(value_base + offsets, mask=mask, other=0.0)  # [BLOCK_N, BLOCK_D], input dtype
        if HAS_GATE:
            gate_offsets = head * gate_head_stride + rows * gate_row_stride
            key_gate = tl.load(key_scale_ptr + gate_offsets, mask=row_mask, other=0.0).to(tl.float32)
            value_gate = tl.load(value_scale_ptr + gate_offsets, mask=row_mask, other=0.0).to(tl.float32)
            key = key * key_gate[:, None]  # k ← k·key_scale in float32, as the reference
            key_sum += tl.sum(key, axis=0)
            if IS_FP32:
                value = value * value_gate[:, None]
                state = tl.dot(tl.trans(key), value, state, input_precision="ieee")
            else:
                # (k·g_k)(v·g_v)ᵀ = (g_v·k·g_k) vᵀ keeps v exact in 16 bits; the gated key is split in two.
                key_hi, key_lo = _split(tl.trans(key * value_gate[:, None]), value.dtype)
                state = tl.dot(key_lo, value, state)
                state = tl.dot(key_hi, value, state)
        else:
            key_sum += tl.sum(key, axis=0)
            if IS_FP32:
                state = tl.dot(tl.trans(key), value, state, input_precision="ieee")
            else:
                state = tl.dot(tl.trans(key.to(value.dtype)), value, state)  # φ(k) is exact in the input dtype

    partial_base = partials_ptr + (batch_head * num_chunks + chunk).to(tl.int64) * (head_dim + 1) * head_dim
    state_mask = col_mask[:, None] & col_mask[None, :]
    tl.store(partial_base + cols[:, None] * head_dim + cols[None, :], state, mask=state_mask)
    tl.store(partial_base + head_dim * head_dim + cols, key_sum, mask=col_mask)


@triton.jit
def _reduce_state_kernel(
    partials_ptr,
    stats_ptr,
    seq_len,
    head_dim,
    num_chunks,
    BLOCK_ROWS: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """Rows of [S ; k̄] for one (b, h): the chunk partials summed in chunk order, divided by N."""
    batch_head = tl.program_id(0)
    rows = tl.program_id(1) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    cols = tl.arange(0, BLOCK_D)
    mask = (rows < head_dim + 1)[:, None] & (cols < head_dim)[None, :]
    offsets = rows[:, None] * head_dim + cols[None, :]
    stats_size = (head_dim + 1) * head_dim
    partial_base = partials_ptr + batch_head.to(tl.int64) * num_chunks * stats_size
    total = tl.zeros((BLOCK_ROWS, BLOCK_D), dtype=tl.float32)
    for chunk in range(num_chunks):
        total += tl.load(partial_base + chunk * stats_size + offsets, mask=mask, other=0.0)
    tl.store(stats_ptr + batch_head.to(tl.int64) * stats_size + offsets, total / seq_len, mask=mask)


@triton.jit
def _output_kernel(
    qkv_ptr,
    stats_ptr,
    out_ptr,
    seq_len,
    dim,
    head_dim,
    num_heads,
    rows_per_program,
    IS_FP32: tl.constexpr,
    FEATURE_EPS: tl.constexpr,
    NORMALISER_EPS: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
):
    """o_n = (φ(q_n)·S) / (φ(q_n)·k̄ + ε) for a run of rows of one (b, h), written into [B, N, D].

    S and k̄ are loaded (and split) once per program, then reused for every tile of rows.
    """
    batch_head = tl.program_id(1)
    batch = (batch_head // num_heads).to(tl.int64)
    head = batch_head % num_heads
    cols = tl.arange(0, BLOCK_D)
    col_mask = cols < head_dim

    stats_base = stats_ptr + batch_head.to(tl.int64) * (head_dim + 1) * head_dim
    state = tl.load(
        stats_base + cols[:, None] * head_dim + cols[None, :],
        mask=col_mask[:, None] & col_mask[None, :],
        other=0.0,
    )  # [BLOCK_D, BLOCK_D] float32, S = Σ k vᵀ / N
    key_mean = tl.load(stats_base + head_dim * head_dim + cols, mask=col_mask, other=0.0)  # [BLOCK_D]
    if not IS_FP32:
        # φ(q) is exact in the input dtype; S is split into hi + lo parts (see the module docstring).
        state_hi, state_lo = _split(state, out_ptr.dtype.element_ty)

    query_base = qkv_ptr + batch * seq_len * 3 * dim + head * head_dim
    out_base = out_ptr + batch * seq_len * dim + head * head_dim
    run_start = tl.program_id(0) * rows_per_program
    run_end = tl.minimum(run_start + rows_per_program, seq_len)
    for start in range(run_start, run_end, BLOCK_N):
        rows = start + tl.arange(0, BLOCK_N)
        mask = (rows < run_end)[:, None] & col_mask[None, :]
        rows_64 = rows.to(tl.int64)[:, None]
        query_raw = tl.load(query_base + rows_64 * (3 * dim) + cols[None, :], mask=mask, other=0.0)
        query = tl.where(mask, _feature_map(query_raw, FEATURE_EPS), 0.0)  # [BLOCK_N, BLOCK_D] float32

        # The reference multiplies by 1 / (q·k̄ + ε) rather than dividing; do the same.
        normaliser = 1.0 / (tl.sum(query * key_mean[None, :], axis=1) + NORMALISER_EPS)  # [BLOCK_N]
        numerator = tl.zeros((BLOCK_N, BLOCK_D), dtype=tl.float32)
        if IS_FP32:
            numerator = tl.dot(query, state, numerator, input_precision="ieee")
        else:
            query_16 = query.to(query_raw.dtype)
            numerator = tl.dot(query_16, state_lo, numerator)
            numerator = tl.dot(query_16, state_hi, numerator)
        out = numerator * normaliser[:, None]
        tl.store(out_base + rows_64 * dim + cols[None, :], out.to(out_ptr.dtype.element_ty), mask=mask)


# Whether `triton.jit` built the kernels above for Triton's CPU interpreter: it decides once, when it decorates
# them, from TRITON_INTERPRET.
INTERPRETED = not isinstance(_output_kernel, triton.runtime.JITFunction)


def _check_inputs(
    qkv: torch.Tensor, num_heads: int, key_scale: torch.Tensor | None, value_scale: torch.Tensor | None
) -> None:
    """Raise ValueError naming the problem for anything the kernels cannot take."""
    if qkv.dim() != 3 or qkv.shape[-1] % 3:
        raise ValueError(f"qkv must be [B, N, 3·D] (the qkv Linear's output); got shape {tuple(qkv.shape)}")
    dim = qkv.shape[-1] // 3
    if num_heads <= 0 or dim % num_heads:
        raise ValueError(f"D = {dim} (qkv width {qkv.shape[-1]} / 3) is not divisible by num_heads = {num_heads}")
    if dim // num_heads > MAX_HEAD_DIM:
        raise ValueError(
            f"head dim d = {dim // num_heads} exceeds the fused kernel's maximum {MAX_HEAD_DIM}; "
            "use models.ops.linear_attn.reference.linear_attention_qkv"
        )
    if qkv.dtype not in SUPPORTED_DTYPES:
        raise ValueError(f"qkv dtype {qkv.dtype} is not supported; use one of {SUPPORTED_DTYPES}")
    if not qkv.is_contiguous():
        raise ValueError(f"qkv must be contiguous; got strides {qkv.stride()} for shape {tuple(qkv.shape)}")
    if not (qkv.is_cuda or INTERPRETED):
        raise ValueError(
            f"the fused kernel runs on CUDA tensors (or under TRITON_INTERPRET=1); got a {qkv.device} tensor — "
            "use models.ops.linear_attn.reference.linear_attention_qkv"
        )
    if (key_scale is None) != (value_scale is None):
        raise ValueError("key_scale and value_scale go together: pass both (decoder blocks) or neither")
    expected_gate = (1, num_heads, qkv.shape[1], 1)
    for name, gate in (("key_scale", key_scale), ("value_scale", value_scale)):
        if gate is None:
            continue
        if tuple(gate.shape) != expected_gate:
            raise ValueError(f"{name} must be [1, H, N, 1] = {list(expected_gate)}; got {list(gate.shape)}")
        if gate.dtype not in SUPPORTED_DTYPES:
            raise ValueError(f"{name} dtype {gate.dtype} is not supported; use one of {SUPPORTED_DTYPES}")
        if gate.device != qkv.device:
            raise ValueError(f"{name} is on {gate.device} but qkv is on {qkv.device}")
    if key_scale is not None and key_scale.stride()[1:3] != value_scale.stride()[1:3]:
        raise ValueError(
            f"key_scale and value_scale must share strides; got {key_scale.stride()} and {value_scale.stride()}"
        )


@on_input_device
def linear_attention_qkv(
    qkv: torch.Tensor,
    num_heads: int,
    key_scale: torch.Tensor | None = None,
    value_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """LINA's bidirectional linear attention on the output of the `qkv` Linear, fused (forward only).

    Args:
        qkv: [B, N, 3·D], contiguous, bf16/fp16/fp32, on CUDA; channels [q | k | v], head h owns channels
            h·d … h·d+d−1 of each third; d ≤ 128 (padded to a power of two inside the kernels).
        num_heads: H.
        key_scale, value_scale: decoder KV gates, [1, H, N, 1], or both None (encoder blocks).

    Returns:
        [B, N, D] in qkv's dtype, heads concatenated along D (head-major), matching
        `reference.linear_attention_qkv` up to float32 summation order.

    Raises:
        ValueError: for a wrong rank or width, D not divisible by H, d > 128, an unsupported dtype, a
            non-contiguous or non-CUDA qkv, or gates of the wrong shape, dtype or device.
    """
    _check_inputs(qkv, num_heads, key_scale, value_scale)
    batch, seq_len, width = qkv.shape
    dim = width // 3
    head_dim = dim // num_heads
    out = torch.empty(batch, seq_len, dim, dtype=qkv.dtype, device=qkv.device)
    if out.numel() == 0:
        return out

    block_d = max(MIN_DOT_SIZE, triton.next_power_of_2(head_dim))
    batch_heads = batch * num_heads
    num_chunks = triton.cdiv(seq_len, ROWS_PER_CHUNK)
    stats_shape = (head_dim + 1, head_dim)  # rows 0..d−1: Σ k vᵀ; row d: Σ k
    partials = torch.empty(batch_heads, num_chunks, *stats_shape, dtype=torch.float32, device=qkv.device)
    stats = torch.empty(batch_heads, *stats_shape, dtype=torch.float32, device=qkv.device)
    has_gate = key_scale is not None
    is_fp32 = qkv.dtype == torch.float32

    _state_partials_kernel[(num_chunks, batch_heads)](
        qkv,
        key_scale if has_gate else qkv,  # unused pointers when there is no gate
        value_scale if has_gate else qkv,
        partials,
        seq_len,
        dim,
        head_dim,
        num_heads,
        ROWS_PER_CHUNK,
        num_chunks,
        key_scale.stride(1) if has_gate else 0,
        key_scale.stride(2) if has_gate else 0,
        HAS_GATE=has_gate,
        IS_FP32=is_fp32,
        FEATURE_EPS=FEATURE_EPS,
        BLOCK_N=STATE_BLOCK_N,
        BLOCK_D=block_d,
        num_warps=STATE_NUM_WARPS,
    )
    _reduce_state_kernel[(batch_heads, triton.cdiv(head_dim + 1, REDUCE_BLOCK_ROWS))](
        partials,
        stats,
        seq_len,
        head_dim,
        num_chunks,
        BLOCK_ROWS=REDUCE_BLOCK_ROWS,
        BLOCK_D=block_d,
    )
    _output_kernel[(triton.cdiv(seq_len, ROWS_PER_OUTPUT_PROGRAM), batch_heads)](
        qkv,
        stats,
        out,
        seq_len,
        dim,
        head_dim,
        num_heads,
        ROWS_PER_OUTPUT_PROGRAM,
        IS_FP32=is_fp32,
        FEATURE_EPS=FEATURE_EPS,
        NORMALISER_EPS=NORMALISER_EPS,
        BLOCK_N=OUTPUT_BLOCK_N,
        BLOCK_D=block_d,
        num_warps=OUTPUT_NUM_WARPS,
    )
    return out
