"""Kernel-test set-up: where the fused kernels can run, NaN-filled `torch.empty`, relative RMS.

Without CUDA the kernels run in Triton's CPU interpreter, which must be switched on (TRITON_INTERPRET=1) before
triton is first imported: `triton.jit` picks interpreted or compiled when it decorates a function, and that
includes triton.language's own jit helpers (`tl.zeros`, `tl.sum`), decorated when triton is imported
(triton 3.8, `runtime/jit.py`). Importing torch does not import triton, but `torch.utils.flop_counter` does,
and `models.perf.attention_profile` imports that while tests/cli is collected, long before this file runs. No in-process
switch is reliable then, so on a machine without CUDA the fused tests (every test named `*fused*`) run in a
child pytest started with TRITON_INTERPRET=1 (`test_interpreter.py`); running `TRITON_INTERPRET=1 pytest
tests/models/ops` directly runs them in-process.
"""

import importlib

import pytest
import torch

from tests.numerics import relative_rms

FUSED_MODULE = "models.ops.linear_attn.fused"


def _fused_kernel_mode() -> str:
    """'compiled' (CUDA), 'interpreted' (TRITON_INTERPRET=1 from the start), 'subprocess' or 'missing' (no Triton)."""
    try:
        importlib.import_module("triton")
    except ImportError:
        return "missing"
    if importlib.import_module(FUSED_MODULE).INTERPRETED:
        return "interpreted"
    return "compiled" if torch.cuda.is_available() else "subprocess"


FUSED_KERNEL_MODE = _fused_kernel_mode()
DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
SKIP_FUSED_REASON = {
    "missing": "Triton is not installed: no fused kernel to test",
    "subprocess": "runs in a child pytest under TRITON_INTERPRET=1 (tests/models/ops/test_interpreter.py)",
}
requires_fused = pytest.mark.skipif(
    FUSED_KERNEL_MODE in SKIP_FUSED_REASON, reason=SKIP_FUSED_REASON.get(FUSED_KERNEL_MODE, "")
)
LARGE_NEEDS_CUDA = pytest.mark.skipif(
    FUSED_KERNEL_MODE != "compiled", reason="released sizes need compiled kernels (too slow for the interpreter)"
)
# Triton's interpreter stores bf16 as uint16: it multiplies the bit patterns in tl.dot (triton-lang/triton#11584;
# its debugging guide: no bf16 arithmetic), and its bf16 conversions do not round to nearest. fp16 takes the
# very same 16-bit code paths there.
BF16_NEEDS_CUDA = pytest.mark.skipif(
    FUSED_KERNEL_MODE == "interpreted", reason="Triton's CPU interpreter has no bf16 arithmetic"
)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)

# Both sides round the same float32 values to the output dtype; float32 summation-order differences (and the
# attention kernel's hi/lo operand split, ≈ 2× the input mantissa) flip a rounding now and then, by one ulp: at
# most 2⁻⁷ relative for bf16, 2⁻¹⁰ for fp16. The bounds let a quarter of the elements flip (√¼ · ulp). fp32
# outputs differ only by float32 reordering of sums (~1e-6).
RELATIVE_RMS_TOLERANCE = {torch.float32: 1e-5, torch.float16: 2**-11, torch.bfloat16: 2**-8}


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def dtype_marks(dtype: torch.dtype) -> list:
    return [BF16_NEEDS_CUDA] if dtype == torch.bfloat16 else []


def dtype_params(dtypes=DTYPES) -> list:
    """One pytest param per dtype, bf16 marked to need CUDA, with readable ids."""
    return [pytest.param(dtype, marks=dtype_marks(dtype), id=dtype_name(dtype)) for dtype in dtypes]


@pytest.fixture(autouse=True)
def nan_filled_empty(monkeypatch):
    """Make torch.empty/empty_like return NaN-filled float tensors, so reading unwritten memory shows (fla's idea)."""

    def filled_with_nan(factory):
        def factory_filled(*args, **kwargs):
            tensor = factory(*args, **kwargs)
            if tensor.is_floating_point():
                tensor.fill_(float("nan"))
            return tensor

        return factory_filled

    monkeypatch.setattr(torch, "empty", filled_with_nan(torch.empty))
    monkeypatch.setattr(torch, "empty_like", filled_with_nan(torch.empty_like))


def assert_close(actual: torch.Tensor, expected: torch.Tensor, tolerance: float, what: str) -> None:
    """Fail on a shape mismatch, NaN/inf, or a relative-RMS error above `tolerance`; report the max abs error too."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values (uninitialised or unmasked reads?)"
    error = relative_rms(actual, expected)
    max_abs = (actual.double() - expected.double()).abs().max().item()
    assert error <= tolerance, f"{what}: relative RMS error {error:.3e} > {tolerance:.1e} (max abs error {max_abs:.3e})"
