"""The LayerNorm patterns of LINA's blocks, in plain PyTorch: the readable reference and the default ops.

Each function is exactly the expression the model's modules evaluate (same ops, same order), so the
reference path keeps its bit-for-bit agreement with the authors' code. `fused.py` has the same signatures.
"""

import torch
import torch.nn.functional as F


def add_layer_norm(
    residual: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    eps: float,
    gate: torch.Tensor | None = None,
) -> torch.Tensor:
    """residual + LayerNorm(x)·weight + bias, times `gate` first when given.

    The transformer's post-norm residual (`x + norm(attn(x))`, no gate) and the head's gated residual
    (`norm(mlp(h))·gate + x`). All tensors are [..., W]; gate has x's shape.
    """
    normed = F.layer_norm(x, (x.shape[-1],), weight, bias, eps)
    if gate is not None:
        normed = normed.mul(gate)
    return residual + normed


def modulated_layer_norm(x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor, eps: float) -> torch.Tensor:
    """LayerNorm(x) without affine, then ·(1 + scale) + shift: the head's AdaLN modulation. All [..., W]."""
    return F.layer_norm(x, (x.shape[-1],), eps=eps).mul(1 + scale).add_(shift)


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
    """`add_layer_norm` (gated), then `modulated_layer_norm` of its result: the sum and the modulated sum.

    Where one head block ends and the next AdaLN (the next block's, or the head's final one) begins: the block's
    gated residual makes the new residual stream, which the next AdaLN normalises and modulates.
    """
    out = add_layer_norm(residual, x, weight, bias, eps, gate)
    return out, modulated_layer_norm(out, scale, shift, modulation_eps)
