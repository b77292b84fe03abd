"""The fused linear-attention kernel against its plain-PyTorch reference, and the reference against the model.

Without CUDA the kernels run in Triton's CPU interpreter, in a child pytest (test_interpreter.py; for per-case
results run `TRITON_INTERPRET=1 pytest tests/models/ops`), so those shapes stay tiny; the released shapes
(N = 5120, d = 96, H = 16) and bf16 run only with compiled kernels on CUDA.
"""

import importlib

import pytest
import torch

from models.network.attention import FEATURE_EPS, LinearAttention, linear_attention
from models.ops.linear_attn.reference import linear_attention_qkv as reference_attention
from tests.models.ops.conftest import (
    DEVICE,
    DTYPES,
    FUSED_KERNEL_MODE,
    FUSED_MODULE,
    LARGE_NEEDS_CUDA,
    RELATIVE_RMS_TOLERANCE,
    assert_close,
    dtype_marks,
    dtype_name,
    dtype_params,
    requires_fused,
)
from tests.numerics import relative_rms

# (B, N, H, d): encoder-mode odd lengths and decoder-like ones; d = 96 is the released models' head dim (padded
# to 128 inside), 60 and 12 pad to 64 and 16, 8 pads up to tl.dot's minimum of 16.
INTERPRETER_SHAPES = [(1, 17, 2, 12), (2, 65, 3, 96), (2, 80, 2, 8), (1, 63, 4, 60)]
CUDA_SHAPES = [(2, 5120, 16, 96), (2, 1024, 16, 96), (1, 4097, 16, 96), (3, 1300, 5, 60)]


def case_id(shape: tuple[int, int, int, int], gate: bool, dtype: torch.dtype) -> str:
    batch, seq_len, heads, head_dim = shape
    return f"B{batch}-N{seq_len}-H{heads}-d{head_dim}-gate{gate}-{dtype_name(dtype)}"


def cases(shapes) -> list:
    """(shape, gate, dtype) for every combination, with readable ids."""
    return [
        pytest.param(shape, gate, dtype, marks=dtype_marks(dtype), id=case_id(shape, gate, dtype))
        for shape in shapes
        for gate in (False, True)
        for dtype in DTYPES
    ]


def make_inputs(shape, gate: bool, dtype: torch.dtype, seed: int = 0):
    """qkv [B, N, 3·D] like a Linear's output, and KV gates [1, H, N, 1] around 1 (or None)."""
    batch, seq_len, heads, head_dim = shape
    generator = torch.Generator().manual_seed(seed)
    qkv = torch.randn(batch, seq_len, 3 * heads * head_dim, generator=generator).to(DEVICE, dtype)
    if not gate:
        return qkv, None, None
    key_scale, value_scale = (
        (0.5 + torch.rand(1, heads, seq_len, 1, generator=generator)).to(DEVICE, dtype) for _ in range(2)
    )
    return qkv, key_scale, value_scale


def fused_attention():
    from models.ops.linear_attn import linear_attention_qkv

    return linear_attention_qkv


# ----------------------------------------------------------------------------------------------------
# The reference is what the model computes
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["float32", "bfloat16"])
@pytest.mark.parametrize("decoder", [False, True], ids=["encoder", "decoder"])
def test_reference_is_bit_identical_to_linear_attention_module(decoder, dtype):
    """proj(reference(qkv(x))) == LinearAttention(x); the decoder's conv branch is zeroed so that it adds exactly 0."""
    torch.manual_seed(0)
    heads, head_dim, grid = 2, 12, (3, 4)
    seq_len = 5 + grid[0] * grid[1]  # 5 prefix tokens + the image grid
    module = LinearAttention(heads * head_dim, heads, *((seq_len, grid) if decoder else ()))
    if decoder:
        with torch.no_grad():
            module.key_scale.uniform_(0.5, 1.5)
            module.value_scale.uniform_(0.5, 1.5)
            module.dw_conv.weight.zero_()
            module.dw_conv.bias.zero_()
    module = module.to(dtype)
    x = torch.randn(2, seq_len, heads * head_dim, dtype=dtype)
    gates = (module.key_scale, module.value_scale) if decoder else (None, None)
    with torch.no_grad():
        expected = module(x)
        actual = module.proj(reference_attention(module.qkv(x), heads, *gates))
    assert torch.equal(actual, expected)


# ----------------------------------------------------------------------------------------------------
# Fused kernel against the reference
# ----------------------------------------------------------------------------------------------------


@requires_fused
@pytest.mark.parametrize(("shape", "gate", "dtype"), cases(INTERPRETER_SHAPES))
def test_fused_matches_reference(shape, gate, dtype):
    qkv, key_scale, value_scale = make_inputs(shape, gate, dtype)
    actual = fused_attention()(qkv, shape[2], key_scale, value_scale)
    expected = reference_attention(qkv, shape[2], key_scale, value_scale)
    assert actual.dtype == dtype
    assert_close(actual, expected, RELATIVE_RMS_TOLERANCE[dtype], case_id(shape, gate, dtype))


@requires_fused
@LARGE_NEEDS_CUDA
@pytest.mark.parametrize(("shape", "gate", "dtype"), cases(CUDA_SHAPES))
def test_fused_matches_reference_at_released_sizes(shape, gate, dtype):
    qkv, key_scale, value_scale = make_inputs(shape, gate, dtype)
    actual = fused_attention()(qkv, shape[2], key_scale, value_scale)
    expected = reference_attention(qkv, shape[2], key_scale, value_scale)
    assert_close(actual, expected, RELATIVE_RMS_TOLERANCE[dtype], case_id(shape, gate, dtype))


@requires_fused
@pytest.mark.parametrize("gate", [False, True], ids=["gateFalse", "gateTrue"])
@pytest.mark.parametrize("dtype", dtype_params())
def test_fused_with_small_chunks_and_tiles(monkeypatch, gate, dtype):
    """Several chunks and output runs of several tiles, the last of each short: partials summed, all rows written."""
    fused_module = importlib.import_module(FUSED_MODULE)
    for name in ("ROWS_PER_CHUNK", "ROWS_PER_OUTPUT_PROGRAM"):
        monkeypatch.setattr(fused_module, name, 24)  # 65 rows → runs of 24, 24, 17
    for name in ("STATE_BLOCK_N", "OUTPUT_BLOCK_N"):
        monkeypatch.setattr(fused_module, name, 16)  # tl.dot's minimum; a run of 24 → tiles of 16 and 8
    shape = (2, 65, 2, 12)
    qkv, key_scale, value_scale = make_inputs(shape, gate, dtype, seed=1)
    actual = fused_module.linear_attention_qkv(qkv, shape[2], key_scale, value_scale)
    expected = reference_attention(qkv, shape[2], key_scale, value_scale)
    assert_close(actual, expected, RELATIVE_RMS_TOLERANCE[dtype], case_id(shape, gate, dtype))


@requires_fused
@pytest.mark.parametrize("dtype", dtype_params((torch.float16, torch.bfloat16)))
def test_fused_is_as_accurate_as_reference(dtype):
    """Against a float64 evaluation of the same φ-rounded inputs, the kernel's error is the reference's, to 10 %.

    This is what justifies 16-bit tensor-core operands with the hi/lo split: beyond the output's own rounding,
    which dominates both errors, they cost no accuracy.
    """
    shape, heads = (2, 80, 2, 96), 2
    qkv, key_scale, value_scale = make_inputs(shape, True, dtype, seed=2)
    batch, seq_len, width = qkv.shape
    q, k, v = qkv.view(batch, seq_len, 3, heads, width // 3 // heads).permute(2, 0, 3, 1, 4)
    q, k = torch.relu(q) + FEATURE_EPS, torch.relu(k) + FEATURE_EPS  # rounded in dtype, as both sides do
    exact = linear_attention(q.double(), k.double(), v.double(), key_scale.double(), value_scale.double())
    exact = exact.transpose(1, 2).reshape(batch, seq_len, width // 3)
    fused_error = relative_rms(fused_attention()(qkv, heads, key_scale, value_scale), exact)
    reference_error = relative_rms(reference_attention(qkv, heads, key_scale, value_scale), exact)
    assert fused_error <= 1.1 * reference_error, f"fused {fused_error:.3e} vs reference {reference_error:.3e}"


@requires_fused
def test_fused_is_batch_invariant():
    """A sample's output does not depend on the batch around it (the reduction order depends on N only)."""
    shape = (3, 65, 2, 12)
    qkv, key_scale, value_scale = make_inputs(shape, True, torch.float16, seed=3)
    fused = fused_attention()
    batched = fused(qkv, shape[2], key_scale, value_scale)
    for index in range(shape[0]):
        alone = fused(qkv[index : index + 1], shape[2], key_scale, value_scale)
        assert torch.equal(alone[0], batched[index])


# ----------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------


def _bad_inputs():
    qkv = torch.randn(2, 8, 3 * 24, device=DEVICE, dtype=torch.float16)
    gate = torch.ones(1, 2, 8, 1, device=DEVICE, dtype=torch.float16)
    return [
        pytest.param(qkv[0], 2, None, None, "must be \\[B, N, 3·D\\]", id="rank"),
        pytest.param(qkv[..., :-1], 2, None, None, "must be \\[B, N, 3·D\\]", id="width-not-3D"),
        pytest.param(qkv, 5, None, None, "not divisible by num_heads = 5", id="heads"),
        pytest.param(qkv.double(), 2, None, None, "dtype torch.float64 is not supported", id="dtype"),
        pytest.param(qkv.transpose(0, 1), 2, None, None, "must be contiguous", id="non-contiguous"),
        pytest.param(torch.randn(1, 4, 3 * 256, device=DEVICE), 1, None, None, "exceeds", id="head-dim"),
        pytest.param(qkv, 2, gate, None, "go together", id="one-gate"),
        pytest.param(qkv, 2, gate[:, :, :4], gate[:, :, :4], "key_scale must be \\[1, H, N, 1\\]", id="gate-shape"),
    ]


@requires_fused
@pytest.mark.parametrize(("qkv", "heads", "key_scale", "value_scale", "message"), _bad_inputs())
def test_fused_rejects_bad_input(qkv, heads, key_scale, value_scale, message):
    with pytest.raises(ValueError, match=message):
        fused_attention()(qkv, heads, key_scale, value_scale)


@pytest.mark.skipif(FUSED_KERNEL_MODE != "compiled", reason="only compiled kernels refuse CPU tensors")
def test_fused_rejects_cpu_tensor_when_compiled():
    with pytest.raises(ValueError, match="runs on CUDA tensors"):
        fused_attention()(torch.randn(1, 4, 3 * 16), 1)
