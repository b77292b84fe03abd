"""LINA's bidirectional linear attention and the softmax baseline, in plain PyTorch (spec §3.6-3.7).

Shapes use the spec's letters: B batch, N sequence (prefix + image tokens), D width, H heads, d = D / H,
L image tokens on an (h, w) grid.
"""

import torch
import torch.nn.functional as F
from torch import nn

from models.ops import REFERENCE_KERNELS
from models.ops.linear_attn.reference import FEATURE_EPS, NORMALISER_EPS, linear_attention

__all__ = ["DW_CONV_KERNEL", "FEATURE_EPS", "NORMALISER_EPS", "LinearAttention", "SoftmaxAttention", "linear_attention"]

DW_CONV_KERNEL = 5  # depthwise conv of the decoder blocks: 5×5, zero padding 2 (spec §3.7)


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
        # φ is applied in the compute dtype and the core runs in float32, as the reference does
        # ("necessary for NaN-free training"); the result comes back in the compute dtype before `proj`.
        out = self.kernels.linear_attention_qkv(self.qkv(x), self.num_heads, *gates)  # [B, N, D]
        if self.is_decoder:
            # dw_conv over the image rows of x, added to the image rows of `out`; prefix rows get nothing.
            out = self.kernels.add_depthwise_conv(out, x, self.dw_conv.weight, self.dw_conv.bias, self.token_grid)
        return self.proj(out)


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
