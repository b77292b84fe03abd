"""The KL autoencoder of the SDXL and MAR KL-16 VAEs, loading the official `vae/` folders unchanged (docs/architecture.md, "VAE, text encoder, scheduler").

Module and parameter names are those of diffusers' `AutoencoderKL`, so one state dict serves both. The MAR
variant (`_class_name: AutoencoderKLMAR`) only adds `layers_per_block` attention layers to the last encoder
down block. Shapes: B images, 3 RGB channels, H × W pixels, C latent channels, s = 2^(levels − 1) the stride,
latents [B, C, H/s, W/s]; inside a block F feature channels on an h × w grid, N = h·w positions.
"""

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.constants import CONFIG_NAME
from models.errors import InvalidConfigError
from models.files import load_weights, read_json, save_weights, write_json_atomic
from models.network.config import VAEConfig

NORM_EPS = 1e-6  # eps of every GroupNorm in both VAEs
# The posterior log-variance is clamped so exp(logvar) stays finite (diffusers' DiagonalGaussianDistribution).
LOGVAR_MIN, LOGVAR_MAX = -30.0, 20.0
RESAMPLE_FACTOR = 2  # each down/up sampler halves/doubles h and w


def _group_norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(groups, channels, eps=NORM_EPS)


# ----------------------------------------------------------------------------------------------------
# Building blocks
# ----------------------------------------------------------------------------------------------------


def vae_compute_dtype(dtype: torch.dtype, config: VAEConfig) -> torch.dtype:
    """The dtype a VAE runs in for a pipeline of `dtype`.

    SDXL's VAE overflows in float16 (diffusers' `force_upcast`), so it runs in float32 then; bf16 and fp32
    decode in the pipeline dtype, as the reference does.
    """
    return torch.float32 if dtype == torch.float16 and config.force_upcast else dtype


class ResnetBlock(nn.Module):
    """GroupNorm → SiLU → 3×3 conv, twice, plus a shortcut (a 1×1 conv only when the width changes)."""

    def __init__(self, in_dim: int, out_dim: int, groups: int):
        super().__init__()
        self.norm1 = _group_norm(in_dim, groups)
        self.conv1 = nn.Conv2d(in_dim, out_dim, 3, padding=1)
        self.norm2 = _group_norm(out_dim, groups)
        self.conv2 = nn.Conv2d(out_dim, out_dim, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(in_dim, out_dim, 1) if in_dim != out_dim else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, F_in, h, w] → [B, F_out, h, w]."""
        # Same values as the reference's order, less memory at the decoder's peak (its full-resolution stage):
        # SiLU runs in place on the fresh GroupNorm output, and the shortcut is computed last, so its output
        # is not held while the 3×3 convolutions and their workspaces are.
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        return h + (x if self.conv_shortcut is None else self.conv_shortcut(x))


class SelfAttention(nn.Module):
    """Single-head self-attention over the N = h·w positions of a feature map, head width F.

    Returns only the update; callers add the residual (as both reference VAEs do).
    """

    def __init__(self, dim: int, groups: int):
        super().__init__()
        self.group_norm = _group_norm(dim, groups)
        self.to_q, self.to_k, self.to_v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.to_out = nn.ModuleList([nn.Linear(dim, dim)])  # a list only to keep diffusers' `to_out.0` name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, F, h, w] → update [B, F, h, w]."""
        batch, dim, height, width = x.shape
        # A contiguous token matrix and an explicit head axis [B, 1, N, F] make the projections and SDPA
        # take the same kernels as the reference VAEs, which keeps low-precision decodes pixel-identical.
        tokens = self.group_norm(x).flatten(2).transpose(1, 2).contiguous()  # [B, N, F]
        q, k, v = (proj(tokens).unsqueeze(1) for proj in (self.to_q, self.to_k, self.to_v))
        out = F.scaled_dot_product_attention(q, k, v).squeeze(1)  # softmax(q kᵀ / √F) v, [B, N, F]
        return self.to_out[0](out).transpose(1, 2).reshape(batch, dim, height, width)


class Downsample(nn.Module):
    """Zero-pad right and bottom by one, then a 3×3 stride-2 conv: [B, F, h, w] → [B, F, ⌊h/2⌋, ⌊w/2⌋]."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, stride=RESAMPLE_FACTOR, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The asymmetric pad (not padding=1) is what the checkpoints were trained with.
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest-neighbour ×2, then a 3×3 conv: [B, F, h, w] → [B, F, 2h, 2w]."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=RESAMPLE_FACTOR, mode="nearest"))


class ResnetStage(nn.Module):
    """One level of the encoder or decoder: `depth` resnets, optional attention after each, optional resampler.

    Args:
        in_dim, out_dim: width entering the stage and width of all its resnets.
        depth: number of resnets.
        groups: GroupNorm groups.
        attention: give each resnet a residual self-attention (the MAR encoder's last level).
        resample: "down" (encoder), "up" (decoder) or None (the last level of either).
    """

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        depth: int,
        groups: int,
        *,
        attention: bool = False,
        resample: Literal["down", "up"] | None = None,
    ):
        super().__init__()
        self.resnets = nn.ModuleList(ResnetBlock(in_dim if j == 0 else out_dim, out_dim, groups) for j in range(depth))
        self.attentions = nn.ModuleList(SelfAttention(out_dim, groups) for _ in range(depth if attention else 0))
        # Empty lists add no state-dict keys; the names match diffusers' `downsamplers.0` / `upsamplers.0`.
        self.downsamplers = nn.ModuleList([Downsample(out_dim)] if resample == "down" else [])
        self.upsamplers = nn.ModuleList([Upsample(out_dim)] if resample == "up" else [])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, F_in, h, w] → [B, F_out, h', w'] (h' = h/2 after a downsampler, 2h after an upsampler)."""
        for layer in self.layers():
            x = layer(x)
        return x

    def layers(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The stage as a sequence of one-input layers: each resnet (with its residual attention), then the resampler."""
        layers: list[Callable[[torch.Tensor], torch.Tensor]] = []
        for j, resnet in enumerate(self.resnets):
            layers.append(resnet)
            if self.attentions:
                layers.append(partial(_add_residual, self.attentions[j]))
        return layers + [*self.downsamplers, *self.upsamplers]


def _add_residual(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return x + module(x)


class MidBlock(nn.Module):
    """Resnet → residual self-attention → resnet, at the lowest resolution."""

    def __init__(self, dim: int, groups: int):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(dim, dim, groups), ResnetBlock(dim, dim, groups)])
        self.attentions = nn.ModuleList([SelfAttention(dim, groups)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, F, h, w] → [B, F, h, w]."""
        x = self.resnets[0](x)
        x = x + self.attentions[0](x)
        return self.resnets[1](x)


# ----------------------------------------------------------------------------------------------------
# Encoder and decoder
# ----------------------------------------------------------------------------------------------------


class Encoder(nn.Module):
    """Images [B, 3, H, W] → mean‖logvar features [B, 2C, H/s, W/s] (before `quant_conv`)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        widths, groups, last = config.block_out_channels, config.norm_num_groups, len(config.block_out_channels) - 1
        self.conv_in = nn.Conv2d(config.in_channels, widths[0], 3, padding=1)
        self.down_blocks = nn.ModuleList(
            ResnetStage(
                widths[max(i - 1, 0)], width, config.layers_per_block, groups,
                # MAR's LDM-derived encoder attends only at its lowest resolution (docs/architecture.md, "VAE, text encoder, scheduler").
                attention=config.variant == "mar" and i == last,
                resample="down" if i < last else None,
            )
            for i, width in enumerate(widths)
        )
        self.mid_block = MidBlock(widths[-1], groups)
        self.conv_norm_out = _group_norm(widths[-1], groups)
        self.conv_out = nn.Conv2d(widths[-1], 2 * config.latent_channels, 3, padding=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(images)  # [B, F, H, W]
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)  # [B, F, H/s, W/s]
        return self.conv_out(F.silu(self.conv_norm_out(x), inplace=True))  # [B, 2C, H/s, W/s]


class Decoder(nn.Module):
    """Latents [B, C, H/s, W/s] (after `post_quant_conv`) → images [B, 3, H, W].

    Both variants attend only in the mid block here (MAR's decoder has no up-block attention).
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        widths, groups = tuple(reversed(config.block_out_channels)), config.norm_num_groups
        self.conv_in = nn.Conv2d(config.latent_channels, widths[0], 3, padding=1)
        self.mid_block = MidBlock(widths[0], groups)
        self.up_blocks = nn.ModuleList(
            ResnetStage(
                widths[max(i - 1, 0)], width, config.layers_per_block + 1, groups,
                resample="up" if i < len(widths) - 1 else None,
            )
            for i, width in enumerate(widths)
        )
        self.conv_norm_out = _group_norm(widths[-1], groups)
        self.conv_out = nn.Conv2d(widths[-1], config.out_channels, 3, padding=1)

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(latents))  # [B, F, H/s, W/s]
        # The stages' layers run from this one loop, not through each stage's forward: a stage's input would
        # stay referenced here while its upsampler makes the next, 4× larger activation (the decode's peak).
        for layer in [layer for block in self.up_blocks for layer in block.layers()]:
            x = layer(x)
        return self.conv_out(F.silu(self.conv_norm_out(x), inplace=True))  # [B, 3, H, W]


# ----------------------------------------------------------------------------------------------------
# Autoencoder
# ----------------------------------------------------------------------------------------------------


class AutoencoderKL(nn.Module):
    """KL autoencoder with diffusers' state-dict names; `config.variant` picks the SDXL or MAR layout.

    Geometry comes from `block_out_channels`, `layers_per_block`, `latent_channels` and the in/out channels.
    `down_block_types` / `up_block_types` are kept in the config but not read: the reference classes ignore
    them too, so a MAR config whose type lists are shorter than its five levels still loads.
    """

    def __init__(self, config: VAEConfig):
        super().__init__()
        _check_geometry(config)
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv2d(2 * config.latent_channels, 2 * config.latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(config.latent_channels, config.latent_channels, 1)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior of the images.

        Args:
            images: [B, 3, H, W] in [-1, 1].

        Returns:
            (mean, logvar), each [B, C, H/s, W/s] in VAE space; logvar clamped to [-30, 20].
        """
        moments = self.quant_conv(self.encoder(images))  # [B, 2C, H/s, W/s]
        mean, logvar = moments.chunk(2, dim=1)
        return mean, logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE-space latents [B, C, H/s, W/s] → images [B, 3, H, W], nominally in [-1, 1] (not clamped)."""
        return self.decoder(self.post_quant_conv(latents))

    def scale(self, latents: torch.Tensor) -> torch.Tensor:
        """VAE-space → model-space latents: z = (latents − shift) · scaling (shift skipped when None)."""
        if self.config.shift_factor is not None:
            latents = latents - self.config.shift_factor
        return latents * self.config.scaling_factor

    def unscale(self, z: torch.Tensor) -> torch.Tensor:
        """Model-space → VAE-space latents: z · (1 / scaling) + shift (shift skipped when None).

        Multiplying by the reciprocal, not dividing, matches the reference's rounding.
        """
        latents = z * (1 / self.config.scaling_factor)
        if self.config.shift_factor is not None:
            latents = latents + self.config.shift_factor
        return latents

    @torch.no_grad()
    def decode_latents(self, z: torch.Tensor, *, batch_size: int = 1) -> torch.Tensor:
        """Unscale model-space latents and decode them `batch_size` images at a time.

        The decoder's full-resolution activations grow with the batch, so decoding all B images at once
        can run out of memory after a long sampling run has already succeeded; micro-batches bound the
        peak (the reference decodes one image at a time). Every image is decoded independently (GroupNorm
        statistics are per image), so the result does not depend on `batch_size`.

        Args:
            z: model-space latents [B, C, H/s, W/s], in the VAE's dtype and device.
            batch_size: images per decoder call, ≥ 1.

        Returns:
            images [B, 3, H, W], nominally in [-1, 1].
        """
        if batch_size < 1:
            raise ValueError(f"VAE decode batch size {batch_size}: must be ≥ 1")
        latents = self.unscale(z)
        return torch.cat([self.decode(chunk) for chunk in latents.split(batch_size)])

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> "AutoencoderKL":
        """Load a `vae/` folder (config.json + weights), checking every key and shape.

        Args:
            folder: the component folder.
            device, dtype: where the weights go.

        Raises:
            CheckpointMismatchError: the weights do not fit the config (a key missing, extra or reshaped).
        """
        folder = Path(folder)
        config = VAEConfig.from_dict(read_json(folder / CONFIG_NAME, "vae"))
        with torch.device("meta"):
            model = cls(config)
        return load_weights(model, folder, device=device, dtype=dtype, expected=f"VAEConfig{config.to_dict()}")

    def save_pretrained(self, folder: str | Path) -> None:
        """Write `config.json` (its `_class_name` selects the variant) and `diffusion_pytorch_model.safetensors`."""
        folder = Path(folder)
        write_json_atomic(folder / CONFIG_NAME, self.config.to_dict())
        save_weights(self, folder)


def _check_geometry(config: VAEConfig) -> None:
    """Raise InvalidConfigError for a geometry no network can be built from."""
    widths, groups = config.block_out_channels, config.norm_num_groups
    if not widths or config.layers_per_block < 1 or groups < 1:
        raise InvalidConfigError(
            f"vae/config.json: block_out_channels={list(widths)}, layers_per_block={config.layers_per_block}, "
            f"norm_num_groups={groups}: need at least one level, one layer per block and one group"
        )
    uneven = [width for width in widths if width % groups]
    if uneven:
        raise InvalidConfigError(
            f"vae/config.json: block_out_channels {uneven} are not divisible by norm_num_groups={groups}"
        )
