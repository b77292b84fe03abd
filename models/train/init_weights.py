"""Initialisation for training from scratch, and the parameters the authors keep frozen (docs/training.md).

`default_init_` draws what PyTorch's own `reset_parameters` draws (U(±1/√fan_in) for Linear and Conv2d weights and
biases, ones and zeros for norms) but from an explicit generator, so a seed alone fixes the weights. On top of
it `init_transformer_` applies the authors' choices (`tools/init.py`, `diffnext/models/embeddings.py` of
github.com/techmonsterwang/LINA): the special tokens, the label table and the null text rows N(0, 0.02), the KV
gates at one, and a zero-initialised head (AdaLN projections and the output layer zero, patch-embedding bias
zero, timestep-projection weights N(0, 0.02)), so the untrained head predicts zero velocity.
"""

import math

import torch
from torch import nn

from models.network.config import TransformerConfig
from models.network.diffusion_head import AdaLayerNormZero
from models.network.transformer import LinaTransformer

INIT_STD = 0.02  # the authors' std for tokens, label table, null text rows and timestep projections


@torch.no_grad()
def default_init_(module: nn.Module, generator: torch.Generator) -> None:
    """PyTorch's default initialisation of every Linear, Conv2d, LayerNorm and GroupNorm in `module`, from `generator`.

    Linear and Conv2d draw weight and bias from U(±1/√fan_in) (kaiming_uniform with a = √5, as `reset_parameters`).
    """
    for layer in module.modules():
        if isinstance(layer, (nn.Linear, nn.Conv2d)):
            bound = 1 / math.sqrt(layer.weight[0].numel())  # fan_in: inputs × kernel area (per group)
            nn.init.uniform_(layer.weight, -bound, bound, generator=generator)
            if layer.bias is not None:
                nn.init.uniform_(layer.bias, -bound, bound, generator=generator)
        elif isinstance(layer, (nn.LayerNorm, nn.GroupNorm)) and layer.weight is not None:
            nn.init.ones_(layer.weight)
            nn.init.zeros_(layer.bias)


@torch.no_grad()
def init_transformer_(transformer: LinaTransformer, generator: torch.Generator) -> None:
    """Initialise every parameter and buffer of a transformer as the authors do for training from scratch."""
    default_init_(transformer, generator)
    for name, parameter in transformer.named_parameters():
        if name.endswith(("key_scale", "value_scale")):
            nn.init.ones_(parameter)
    embeddings = [transformer.mask_embed.bos_token, transformer.mask_embed.mask_token]
    if transformer.config.is_text_conditioned:
        embeddings.append(transformer.text_embed.weight)  # the null rows, a buffer
    else:
        embeddings.append(transformer.label_embed.weight)
    for tensor in embeddings:
        nn.init.normal_(tensor, std=INIT_STD, generator=generator)

    head = transformer.image_decoder
    nn.init.zeros_(head.patch_embed.proj.bias)
    for layer in head.time_cond_embed.timestep_proj.modules():
        if isinstance(layer, nn.Linear):
            nn.init.normal_(layer.weight, std=INIT_STD, generator=generator)
    for layer in head.modules():
        if isinstance(layer, AdaLayerNormZero):
            nn.init.zeros_(layer.proj.weight)
            nn.init.zeros_(layer.proj.bias)
    nn.init.zeros_(head.head.weight)
    nn.init.zeros_(head.head.bias)


def new_transformer(config: TransformerConfig, seed: int) -> LinaTransformer:
    """A float32 CPU transformer initialised from `seed` alone (built on the meta device, then every tensor drawn)."""
    with torch.device("meta"):
        transformer = LinaTransformer(config)
    transformer.to_empty(device="cpu")
    init_transformer_(transformer, torch.Generator().manual_seed(seed))
    return transformer


def frozen_modules(transformer: LinaTransformer) -> list[nn.Module]:
    """What the authors never train (their `configure_model`): the condition LayerNorm, the frame-time embedding,
    and the context encoder's patch embedding (which only ever embeds an empty canvas)."""
    condition = transformer.text_embed if transformer.config.is_text_conditioned else transformer.label_embed
    return [condition.norm, transformer.video_pos_embed, transformer.video_encoder.patch_embed]


def prepare_for_training_(transformer: LinaTransformer) -> LinaTransformer:
    """Train mode, every parameter trainable except `frozen_modules` (loaded models come frozen)."""
    transformer.train().requires_grad_(True)
    for module in frozen_modules(transformer):
        module.requires_grad_(False)
    return transformer
