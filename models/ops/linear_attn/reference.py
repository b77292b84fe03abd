"""Plain-PyTorch reference of the fused linear-attention op: qkv projection output in, head-merged output out.

It wraps `models.attention.linear_attention` with exactly the split, feature map and reshape that
`LinearAttention.forward` applies around it (spec §3.6-3.7), so its result is bit-identical to that forward
before the conv branch and `proj`. The fused Triton kernel in `fused.py` has the same signature and is tested
against this function.

Shapes use the spec's letters: B batch, N sequence, H heads, d head dim, D = H·d.
"""

import torch
import torch.nn.functional as F

from models.attention import FEATURE_EPS, linear_attention


def linear_attention_qkv(
    qkv: torch.Tensor,
    num_heads: int,
    key_scale: torch.Tensor | None = None,
    value_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """LINA's bidirectional linear attention on the output of the `qkv` Linear.

    Args:
        qkv: [B, N, 3·D] in bf16, fp16 or fp32; channels [q | k | v], head h owns channels h·d … h·d+d−1 of each.
        num_heads: H.
        key_scale, value_scale: decoder KV gates, [1, H, N, 1] in the model dtype, or both None (encoder blocks).

    Returns:
        [B, N, D] in qkv's dtype, heads concatenated along D (head-major).
    """
    batch, seq_len, width = qkv.shape
    dim = width // 3
    q, k, v = qkv.view(batch, seq_len, 3, num_heads, dim // num_heads).permute(2, 0, 3, 1, 4)  # [B, H, N, d] each
    # φ is rounded in qkv's dtype before the float32 core, as LinearAttention.forward does.
    q, k = F.relu(q) + FEATURE_EPS, F.relu(k) + FEATURE_EPS
    out = linear_attention(q.float(), k.float(), v.float(), key_scale, value_scale)  # [B, H, N, d] float32
    return out.transpose(1, 2).reshape(batch, seq_len, dim).to(qkv.dtype)  # [B, N, D]
