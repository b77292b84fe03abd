"""Tiny real LINA pipelines for tests, written with our own `save_pretrained`.

Weights are random but not degenerate: every parameter and buffer is redrawn so that gates, null rows
and special tokens all influence the output (the reference's zero/one inits would hide bugs).
"""

from pathlib import Path

import torch

from models.network.config import TransformerConfig, VAEConfig
from models.network.transformer import LinaTransformer
from models.network.vae import AutoencoderKL
from models.pipeline.pipeline import LinaPipeline
from models.sampling.scheduler import FlowMatchEulerScheduler
from tests.tiny_text import write_tiny_text_components

TINY_TEXT_HIDDEN = 64
TINY_TEXT_ROWS = 8
TINY_ARCH = ("vit_d2w128", "vit_d4w128", "mlp_d2w128")  # width 128 → 2 heads


def tiny_transformer_config(task: str = "c2i", attention: str = "linear", image_size: int = 64) -> TransformerConfig:
    """c2i: stride 16, patch 1, 16 channels; t2i: stride 8, patch 2, 4 channels. 64 px → a 4×4 token grid."""
    if task == "c2i":
        grid = image_size // 16
        return TransformerConfig(
            image_dim=16, image_size=(image_size, image_size), image_stride=16, image_base_size=(grid, grid),
            video_base_size=(1, grid // 2, grid // 2), arch=TINY_ARCH, attention=attention,
        )
    grid = image_size // 16
    return TransformerConfig(
        image_dim=4, image_size=(image_size, image_size), image_stride=8, image_base_size=(grid, grid),
        video_base_size=(1, grid // 2, grid // 2), arch=TINY_ARCH, attention=attention,
        text_token_dim=TINY_TEXT_HIDDEN, text_token_len=TINY_TEXT_ROWS,
    )


def tiny_vae_config(task: str = "c2i") -> VAEConfig:
    """32 channels with 32 groups: the reference VAEs hard-code 32 GroupNorm groups, and the parity slices
    in test_reference_parity.py come from running them on these folders."""
    if task == "c2i":
        return VAEConfig(block_out_channels=(32,) * 5, layers_per_block=1, latent_channels=16,
                         scaling_factor=0.2325, sample_size=64, variant="mar")
    return VAEConfig(block_out_channels=(32,) * 4, layers_per_block=1, latent_channels=4,
                     scaling_factor=0.13025, sample_size=64)


@torch.no_grad()
def randomize_(module: torch.nn.Module, seed: int, scale: float = 0.05) -> None:
    """Redraw every parameter and buffer; gates and norms stay near 1 so activations stay sane."""
    generator = torch.Generator().manual_seed(seed)
    for name, tensor in list(module.named_parameters()) + list(module.named_buffers()):
        noise = torch.randn(tensor.shape, generator=generator) * scale
        near_one = name.endswith(("key_scale", "value_scale")) or (".norm" in name and name.endswith("weight") and tensor.dim() == 1)
        tensor.copy_(1 + noise if near_one else noise)


def make_tiny_pipeline(folder: str | Path, task: str = "c2i", attention: str = "linear", seed: int = 0) -> Path:
    """Write a complete tiny pipeline folder (model_index.json, transformer/, vae/, scheduler/, text parts)."""
    folder = Path(folder)
    torch.manual_seed(seed)
    transformer = LinaTransformer(tiny_transformer_config(task, attention))
    randomize_(transformer, seed)
    vae = AutoencoderKL(tiny_vae_config(task))
    randomize_(vae, seed + 1, scale=0.1)
    text_encoder = None
    if task == "t2i":
        write_tiny_text_components(folder / "text_encoder", folder / "tokenizer", hidden_size=TINY_TEXT_HIDDEN, seed=seed)
        from models.network.text_encoder import PhiTextEncoder

        text_encoder = PhiTextEncoder.from_pretrained(folder / "text_encoder", folder / "tokenizer")
    LinaPipeline(transformer, vae, FlowMatchEulerScheduler(), text_encoder).save_pretrained(folder)
    return folder
