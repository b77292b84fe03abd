"""LINA's bidirectional linear attention and the softmax baseline, in plain PyTorch (docs/architecture.md, "Blocks and linear attention").

Shapes use the letters of docs/architecture.md: B batch, N sequence (prefix + image tokens), D width, H heads, d = D / H,
L image tokens on an (h, w) grid.
"""

import torch
import torch.nn.functional as F
from torch import nn

from models.ops import REFERENCE_KERNELS
from models.ops.linear_attn.reference import (
    FEATURE_EPS,
    NORMALISER_EPS,
    feature_map,
    linear_attention,
    merge_heads,
    split_heads,
)

__all__ = ["DW_CONV_KERNEL", "FEATURE_EPS", "NORMALISER_EPS", "LinearAttention", "SoftmaxAttention", "linear_attention"]

DW_CONV_KERNEL = 5  # depthwise conv of the decoder blocks: 5×5, zero padding 2 (docs/architecture.md, "Blocks and linear attention")


class LinearAttention(nn.Module):
    """LINA attention: ReLU feature map, float32 core, and in decoder blocks a KV gate and a conv branch.

    Decoder blocks (`gate_len` set) see a fixed sequence [context (Lv) ; image (L)] of length `gate_len`;
    their per-head, per-position gates `key_scale`/`value_scale` index that sequence, and a 5×5 depthwise
    conv over the image rows of the block input is added to the attention output before `proj`.
    """

    def __init__(self, dim: int, num_heads: int, gate_len: int | None = None, token_grid: tuple[int, int] | None = None):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.token_grid = token_grid
        # The ops (attention core, conv branch): plain references or fused Triton kernels
        # (`LinaTransformer.set_kernels`). Not a parameter: never saved.
        self.kernels = REFERENCE_KERNELS
        if gate_len is not None:
            self.key_scale = nn.Parameter(torch.ones(1, num_heads, gate_len, 1))
            self.value_scale = nn.Parameter(torch.ones(1, num_heads, gate_len, 1))
            self.dw_conv = nn.Conv2d(dim, dim, DW_CONV_KERNEL, padding=DW_CONV_KERNEL // 2, groups=dim)

    @property
    def is_decoder(self) -> bool:
        return self.token_grid is not None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, N, D] → [B, N, D]."""
        gates = (self.key_scale, self.value_scale) if self.is_decoder else (None, None)
        qkv = self.qkv(x)  # [B, N, 3D]
        if self.kernels.fused:
            return self.proj(self._fused_attention(qkv, x, gates))
        q, k, v = split_heads(qkv, self.num_heads)  # [B, H, N, d] each
        # φ = ReLU (+ ε) is rounded in the compute dtype, then the core runs in float32, as the authors' code does
        # ("necessary for NaN-free training"). In decoder blocks the KV gate scales k_j and v_j per head and
        # position inside the core; the core is division-normalised:
        #     o_i = φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ / (φ(q_i)ᵀ Σ_j φ(k_j) + ε)
        out = linear_attention(feature_map(q).float(), feature_map(k).float(), v.float(), *gates)  # [B, H, N, d]
        out = merge_heads(out, qkv.dtype)  # [B, N, D]
        if self.is_decoder:
            # Conv branch: a depthwise conv over the image rows of the block input, laid out on the token grid,
            # added to the image rows of the output; the context rows get nothing.
            batch, seq_len, dim = x.shape
            grid_h, grid_w = self.token_grid
            prefix = seq_len - grid_h * grid_w
            image = x[:, prefix:].reshape(batch, grid_h, grid_w, dim).permute(0, 3, 1, 2)  # [B, D, h, w]
            conv = self.dw_conv(image).flatten(2).transpose(1, 2)  # [B, L, D]
            out = torch.cat([out[:, :prefix], out[:, prefix:] + conv], dim=1)
        return self.proj(out)

    def _fused_attention(self, qkv: torch.Tensor, x: torch.Tensor, gates: tuple) -> torch.Tensor:
        """The same attention and conv branch through the fused kernels (`models.ops`), before `proj`."""
        out = self.kernels.linear_attention_qkv(qkv, self.num_heads, *gates)  # [B, N, D]
        if self.is_decoder:
            out = self.kernels.add_depthwise_conv(out, x, self.dw_conv.weight, self.dw_conv.bias, self.token_grid)
        return out


class SoftmaxAttention(nn.Module):
    """Scaled-dot-product attention with the same projections: the full-attention baseline."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads, self.head_dim = num_heads, dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, N, D] → [B, N, D]."""
        batch, seq_len, dim = x.shape
        q, k, v = self.qkv(x).view(batch, seq_len, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)  # [B, H, N, d]
        return self.proj(out.transpose(1, 2).reshape(batch, seq_len, dim))
