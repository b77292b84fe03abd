"""Numerical comparison helpers shared by the model and kernel tests."""

import torch


def relative_rms(actual: torch.Tensor, expected: torch.Tensor) -> float:
    """‖actual − expected‖_rms / ‖expected‖_rms, computed in float64."""
    actual, expected = actual.double(), expected.double()
    return ((actual - expected).pow(2).mean().sqrt() / expected.pow(2).mean().sqrt().clamp_min(1e-300)).item()
