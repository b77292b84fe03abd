"""Fixtures local to the model tests: a relative-RMS comparison helper and tiny transformer configs."""

import pytest
import torch

from models.network.config import TransformerConfig
from tests.numerics import relative_rms

# Relative-RMS bounds per compute dtype. fp64 references are exact up to summation order (~1e-15).
# fp32 has eps 1.2e-7; a few chained matmuls and LayerNorms of width ≤ 128 stay well below 1e-5.
# bf16 has eps 3.9e-3 (8-bit mantissa); one rounding per op over a handful of ops gives ~1e-2.
RELATIVE_RMS_TOLERANCE = {torch.float64: 1e-12, torch.float32: 1e-5, torch.bfloat16: 2e-2}

TINY_ARCH = ("vit_d2w128", "vit_d4w128", "mlp_d2w128")  # width 128 → 2 heads; 2 encoder + 2 decoder blocks


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, what: str = "output") -> None:
    """Fail on shape mismatch, NaN/inf, or a relative-RMS error above the tolerance of `dtype` (fla's idea)."""
    assert actual.shape == expected.shape, f"{what}: shape {tuple(actual.shape)} != {tuple(expected.shape)}"
    assert torch.isfinite(actual).all(), f"{what}: non-finite values"
    error = relative_rms(actual, expected)
    max_abs = (actual.double() - expected.double()).abs().max().item()
    tolerance = RELATIVE_RMS_TOLERANCE[dtype]
    assert error <= tolerance, f"{what}: relative RMS error {error:.3e} > {tolerance:.0e} (max abs error {max_abs:.3e})"


@pytest.fixture
def assert_close():
    """`assert_close(actual, expected, dtype, what)` with the per-dtype relative-RMS tolerance."""
    return _assert_close


def tiny_t2i_config(**changes) -> TransformerConfig:
    """Stride 8, p = 2, 4 channels: 64 px → latent 8×8, token grid 4×4 (L = 16), context grid 2×2 (Lv = 4)."""
    base = dict(
        image_dim=4, image_size=(64, 64), image_stride=8, image_base_size=(4, 4), video_base_size=(1, 2, 2),
        arch=TINY_ARCH, text_token_dim=32, text_token_len=8,
    )
    return TransformerConfig(**{**base, **changes})


def tiny_c2i_config(**changes) -> TransformerConfig:
    """Stride 16, p = 1, 16 channels, non-square 64×96 px → token grid 4×6 (L = 24), context grid 2×3 (Lv = 6)."""
    base = dict(
        image_dim=16, image_size=(64, 96), image_stride=16, image_base_size=(4, 6), video_base_size=(1, 2, 3),
        arch=TINY_ARCH, num_classes=10,
    )
    return TransformerConfig(**{**base, **changes})


@pytest.fixture(params=["t2i", "c2i"])
def tiny_config(request) -> TransformerConfig:
    return tiny_t2i_config() if request.param == "t2i" else tiny_c2i_config()
