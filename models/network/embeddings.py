"""Embedding layers: patches, sin-cos tables, timestep features, special tokens, class and text conditions.

Attribute names are the official state-dict names (`mask_embed.bos_token`, `text_embed.weight`, ...).
Tables with no weights (sin-cos grids, frequency vectors) are computed from the config when needed,
never stored, so models can be built on the meta device.
"""

import math

import torch
from torch import nn

SINCOS_THETA = 10000.0  # base of every sin-cos table (position and timestep), as in the Transformer paper
TIMESTEP_FEATURES = 256  # cos ‖ sin features of t = 1000·σ fed to the head and the frame embedding
TEXT_NULL_ROWS = 512  # rows of the checkpoint's null-text table; the first `text_token_len` are used


# ----------------------------------------------------------------------------------------------------
# Patches
# ----------------------------------------------------------------------------------------------------


def patchify(latents: torch.Tensor, patch_size: int) -> torch.Tensor:
    """[B, C, H, W] → [B, L, p²C], tokens row-major, each vector ordered (row-in-patch, col-in-patch, C)."""
    batch, channels, height, width = latents.shape
    grid_h, grid_w = height // patch_size, width // patch_size
    x = latents.reshape(batch, channels, grid_h, patch_size, grid_w, patch_size)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(batch, grid_h * grid_w, patch_size * patch_size * channels)


def unpatchify(tokens: torch.Tensor, token_grid: tuple[int, int], patch_size: int) -> torch.Tensor:
    """[B, L, p²C] → [B, C, h·p, w·p]; the inverse of `patchify`."""
    batch = tokens.shape[0]
    grid_h, grid_w = token_grid
    channels = tokens.shape[-1] // (patch_size * patch_size)
    x = tokens.reshape(batch, grid_h, grid_w, patch_size, patch_size, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(batch, channels, grid_h * patch_size, grid_w * patch_size)


class PatchEmbed(nn.Module):
    """Conv2d with kernel = stride = p: one D-vector per p×p latent patch.

    Both entry points run the convolution itself rather than the equivalent linear map, because that is
    the operation the reference runs: on CUDA in bf16 the two round differently, and only the convolution
    reproduces the authors' images bit for bit.
    """

    def __init__(self, in_channels: int, dim: int, patch_size: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, patch_size, patch_size)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        """latents [B, C, H, W] → tokens [B, L, D], row-major."""
        return self.proj(latents).flatten(2).transpose(1, 2)

    def embed_patches(self, patches: torch.Tensor) -> torch.Tensor:
        """Selected patches [B, n, p²C] in `patchify` order → [B, n, D], each convolved as its own p×p image."""
        batch, count, _ = patches.shape
        p = self.patch_size
        images = patches.reshape(batch * count, p, p, -1).permute(0, 3, 1, 2)  # [B·n, C, p, p]
        return self.proj(images).reshape(batch, count, -1)


# ----------------------------------------------------------------------------------------------------
# Sin-cos tables
# ----------------------------------------------------------------------------------------------------


def sincos_2d(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """Absolute 2-D position table, float32 [h·w, D]: [sin(c·f) ‖ cos(c·f) ‖ sin(r·f) ‖ cos(r·f)].

    Token n = r·w + c; f_k = θ^(−k/(D/4)), k < D/4 (docs/architecture.md, "Image tokens and the image encoder"). Column (width) features come first.
    """
    quarter = dim // 4
    freq = 1 / (SINCOS_THETA ** (torch.arange(quarter, dtype=torch.float32) / quarter))
    rows, cols = torch.meshgrid(
        torch.arange(grid[0], dtype=torch.float32), torch.arange(grid[1], dtype=torch.float32), indexing="ij"
    )
    angle_c = cols.reshape(-1, 1) * freq
    angle_r = rows.reshape(-1, 1) * freq
    return torch.cat([angle_c.sin(), angle_c.cos(), angle_r.sin(), angle_r.cos()], dim=-1)


def timestep_features(timesteps: torch.Tensor, dim: int = TIMESTEP_FEATURES) -> torch.Tensor:
    """Float32 [B', dim] = [cos(t·f) ‖ sin(t·f)], f_k = exp(−ln θ · k / (dim/2)); t is 1000·σ (docs/architecture.md, "Diffusion head")."""
    half = dim // 2
    freq = torch.arange(half, dtype=torch.float32, device=timesteps.device).mul(-math.log(SINCOS_THETA) / half).exp()
    angle = timesteps.float().unsqueeze(-1) * freq
    return torch.cat([angle.cos(), angle.sin()], dim=-1)


def frame_features(frame: int = 0, dim: int = TIMESTEP_FEATURES) -> torch.Tensor:
    """Float32 [1, dim] = [sin(t·f) ‖ cos(t·f)] of a video frame index (images are frame 0)."""
    half = dim // 2
    freq = 1 / (SINCOS_THETA ** (torch.arange(half, dtype=torch.float32) / half))
    angle = float(frame) * freq.unsqueeze(0)
    return torch.cat([angle.sin(), angle.cos()], dim=-1)


# ----------------------------------------------------------------------------------------------------
# Special tokens and conditions
# ----------------------------------------------------------------------------------------------------


class MaskEmbed(nn.Module):
    """The learned `bos_token` (every context token starts from it) and `mask_token` (ungenerated tokens)."""

    def __init__(self, dim: int):
        super().__init__()
        self.bos_token = nn.Parameter(torch.zeros(1, dim))
        self.mask_token = nn.Parameter(torch.zeros(1, dim))

    def apply_mask(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """tokens [B, L, D], mask [B, L, 1] (1 = not generated yet) → tokens·(1−m) + mask_token·m."""
        return tokens.mul(1 - mask).add_(self.mask_token * mask)


class VideoPosEmbed(nn.Module):
    """Frame-time embedding of the context tokens: LayerNorm(MLP(frame features))."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.time_proj = nn.Sequential(nn.Linear(TIMESTEP_FEATURES, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """`frame_features(frame)` [1, F] on the weights' device, in their dtype → [1, D]."""
        return self.norm(self.time_proj(features))


class LabelEmbed(nn.Module):
    """Class condition: LayerNorm(weight[label]); row `num_classes` is the null class used for CFG."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.weight = nn.Parameter(torch.zeros(num_classes + 1, dim))
        self.norm = nn.LayerNorm(dim)

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """labels [B] (long) → [B, 1, D]."""
        return self.norm(self.weight[labels]).unsqueeze(1)


class TextEmbed(nn.Module):
    """Text condition: LayerNorm(Linear(features)) over P rows of text features.

    `weight` is a persistent buffer of learned null rows: the empty prompt uses rows 0..P−1, and a real
    prompt of n tokens uses its n Phi-2 rows followed by null rows n..P−1 (docs/architecture.md, "Conditioning and context").
    """

    def __init__(self, text_dim: int, dim: int, num_rows: int):
        super().__init__()
        self.num_rows = num_rows
        self.proj = nn.Linear(text_dim, dim)
        self.norm = nn.LayerNorm(dim)
        self.register_buffer("weight", torch.zeros(TEXT_NULL_ROWS, text_dim))

    def build_features(self, prompt_features: list[torch.Tensor]) -> torch.Tensor:
        """Fill each prompt's rows into a copy of the null rows: list of [n_i, text_dim] → [B, P, text_dim]."""
        rows = self.weight[: self.num_rows].expand(len(prompt_features), -1, -1).clone()
        for i, features in enumerate(prompt_features):
            count = min(features.shape[0], self.num_rows)
            rows[i, :count] = features[:count].to(device=rows.device, dtype=rows.dtype)
        return rows

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """features [B, P, text_dim] → [B, P, D]."""
        return self.norm(self.proj(features))
