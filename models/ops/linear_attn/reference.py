"""LINA's linear attention in plain PyTorch: the readable reference, and the model's default op.

`linear_attention` is the division-normalised core; `linear_attention_qkv` adds the split, feature map and
reshape around it, from the qkv projection output to the head-merged output (docs/architecture.md, "Blocks and linear attention"). Both follow the
authors' operation order and dtypes exactly, so images match theirs bit for bit. The fused Triton kernel in
`fused.py` has the same signature as `linear_attention_qkv` and is tested against it.

Shapes use the letters of docs/architecture.md: B batch, N sequence, H heads, d head dim, D = H·d.
"""

import torch
import torch.nn.functional as F

# ReLU(x) + 1e-6 is the feature map φ, and 1e-6 also guards the normaliser's division (docs/architecture.md, "Blocks and linear attention").
FEATURE_EPS = 1e-6
NORMALISER_EPS = 1e-6
AUTOCAST_DEVICES = ("cpu", "cuda")  # where a training step may run under autocast


def linear_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_scale: torch.Tensor | None = None,
    value_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """Division-normalised bidirectional linear attention on feature-mapped inputs.

    o_i = [φ(q_i)ᵀ Σ_j φ(k_j) v_jᵀ / N] / [φ(q_i)ᵀ mean_j φ(k_j) + ε], with the optional KV gate scaling
    k_j and v_j per head and position first. The two N^-½ factors and ε are kept exactly as the reference
    applies them: N cancels except inside ε, so dropping them would change results slightly.

    Args:
        q, k: φ-mapped queries and keys, [B, H, N, d], float32.
        v: values, [B, H, N, d], float32.
        key_scale, value_scale: KV gates, [1, H, N, 1], or None (encoder blocks).

    Returns:
        [B, H, N, d] float32, also under autocast (training): the authors run this core with autocast off.
    """
    device = q.device.type
    if device in AUTOCAST_DEVICES and torch.is_autocast_enabled(device):
        with torch.autocast(device, enabled=False):
            return linear_attention(q, k, v, key_scale, value_scale)
    seq_len = q.shape[-2]
    if key_scale is not None:
        k = k * key_scale
        v = v * value_scale
    normaliser = 1 / (q @ k.mean(dim=-2, keepdim=True).transpose(-2, -1) + NORMALISER_EPS)  # [B, H, N, 1]
    state = (k.transpose(-2, -1) * seq_len**-0.5) @ (v * seq_len**-0.5)  # [B, H, d, d]
    return q @ state * normaliser


def split_heads(qkv: torch.Tensor, num_heads: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """[B, N, 3·D] with channels [q | k | v] (head h owns channels h·d … h·d+d−1 of each) → q, k, v [B, H, N, d]."""
    batch, seq_len, width = qkv.shape
    return qkv.view(batch, seq_len, 3, num_heads, width // (3 * num_heads)).permute(2, 0, 3, 1, 4).unbind(0)


def feature_map(x: torch.Tensor) -> torch.Tensor:
    """φ(x) = ReLU(x) + ε, in x's dtype."""
    return F.relu(x) + FEATURE_EPS


def merge_heads(out: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """[B, H, N, d] → [B, N, D] in `dtype`, heads concatenated along D (head-major)."""
    batch, heads, seq_len, head_dim = out.shape
    return out.transpose(1, 2).reshape(batch, seq_len, heads * head_dim).to(dtype)


def linear_attention_qkv(
    qkv: torch.Tensor,
    num_heads: int,
    key_scale: torch.Tensor | None = None,
    value_scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """LINA's bidirectional linear attention on the output of the `qkv` Linear (what `LinearAttention` computes
    between its projections).

    Args:
        qkv: [B, N, 3·D] in bf16, fp16 or fp32; channels [q | k | v], head h owns channels h·d … h·d+d−1 of each.
        num_heads: H.
        key_scale, value_scale: decoder KV gates, [1, H, N, 1] in the model dtype, or both None (encoder blocks).

    Returns:
        [B, N, D] in qkv's dtype, heads concatenated along D (head-major).
    """
    q, k, v = split_heads(qkv, num_heads)  # [B, H, N, d] each
    # φ is rounded in qkv's dtype before the float32 core, as the authors' code does.
    out = linear_attention(feature_map(q).float(), feature_map(k).float(), v.float(), key_scale, value_scale)
    return merge_heads(out, qkv.dtype)
