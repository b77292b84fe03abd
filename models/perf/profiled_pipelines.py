"""The pipelines a benchmark times: a released architecture with random weights, or a folder's weights.

Weights do not change the time, so `lina profile pipeline --random-init` builds a released alias's
architecture in place with random values (`random_init_pipeline`) and never downloads anything; a folder
(or a cached hub snapshot) is loaded through `load_pipeline`. Either way the text encoder is left out: the
paper's latency protocol excludes it.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.constants import CONFIG_NAME, RELEASED_MODELS, TRANSFORMER_FOLDER, VAE_FOLDER
from models.errors import CheckpointMismatchError, InvalidConfigError, ModelNotFoundError, WeightsNotCachedError
from models.files import read_json
from models.network.config import TransformerConfig, VAEConfig, released_transformer_config
from models.network.transformer import LinaTransformer
from models.network.vae import AutoencoderKL, vae_compute_dtype
from models.ops import resolve_kernels
from models.pipeline.devices import resolve_device, resolve_dtype
from models.pipeline.hub import download_command, resolve_model_path
from models.pipeline.pipeline import load_pipeline
from models.sampling.scheduler import FlowMatchEulerScheduler

# The released VAEs' architectures (docs/architecture.md, "VAE, text encoder, scheduler"), for random-init timing of an alias: SDXL for t2i (the
# VAEConfig defaults), MAR KL-16 for c2i. The scaling factors do not change the time.
RELEASED_VAE_CONFIGS = {
    "t2i": VAEConfig(),
    "c2i": VAEConfig(
        block_out_channels=(128, 128, 256, 256, 512), latent_channels=16, scaling_factor=0.2325, variant="mar"
    ),
}
_GATE_SUFFIXES = ("key_scale", "value_scale")  # the KV gates, ones at initialisation like the reference's
RANDOM_WEIGHTS_NOTE = "random weights: the architecture, not the trained model (weights do not change the time)"


@dataclass(frozen=True)
class BenchmarkModel:
    """A model to time, resolved from its name without touching any weights."""

    name: str
    config: TransformerConfig  # with the requested attention
    random_init: bool
    path: Path | None = None  # the pipeline folder; None for a released alias built with random weights
    vae_config: VAEConfig | None = None  # the VAE to build, with random_init


def resolve_model(
    name_or_path: str | Path,
    *,
    random_init: bool = False,
    attention: str | None = None,
    cache_dir: str | Path | None = None,
) -> BenchmarkModel:
    """Resolve a released alias or a pipeline folder (or a cached hub snapshot); never downloads.

    Args:
        name_or_path: `lina-t2i-1024`, `lina-t2i-512`, `lina-c2i-256`, or a pipeline folder.
        random_init: time the architecture with random weights; an alias then needs nothing on disk.
        attention: "linear" or "softmax" to time the same architecture with that attention (a change
            needs random_init: trained weights fit one attention only); None keeps the model's.
        cache_dir: Hugging Face hub cache to look for an alias's weights in.
    """
    name = str(name_or_path)
    if random_init and name in RELEASED_MODELS:
        release = RELEASED_MODELS[name]
        config = released_transformer_config(release["task"], release["resolution"])
        path, vae_config = None, RELEASED_VAE_CONFIGS[release["task"]]
    else:
        if random_init and not Path(name).expanduser().is_dir():
            raise ModelNotFoundError(
                f"{name!r}: random initialisation builds a released alias ({', '.join(RELEASED_MODELS)}) or the "
                "config of a local pipeline folder"
            )
        try:
            path = resolve_model_path(name, offline=True, cache_dir=cache_dir)
        except WeightsNotCachedError:
            released = name in RELEASED_MODELS
            alternative = "time its architecture with random weights (--random-init), or " if released else ""
            raise WeightsNotCachedError(
                f"the weights of {name} are not downloaded (the benchmark never downloads); "
                f"{alternative}run `{download_command(name)}` first"
            ) from None
        config = TransformerConfig.from_dict(read_json(path / TRANSFORMER_FOLDER / CONFIG_NAME, "transformer"))
        vae_config = VAEConfig.from_dict(read_json(path / VAE_FOLDER / CONFIG_NAME, "vae")) if random_init else None
    requested = config if attention is None else config.replace(attention=attention)  # validates the name
    if requested != config and not random_init:
        raise CheckpointMismatchError(
            f"{name} holds {config.attention}-attention weights, which do not fit {attention} attention; "
            "time that variant with random weights (--random-init)"
        )
    return BenchmarkModel(name, requested, random_init, path, vae_config)


@dataclass
class PipelineParts:
    """The components the timed path runs. No text encoder: the latency protocol excludes it."""

    transformer: LinaTransformer
    vae: AutoencoderKL
    scheduler: FlowMatchEulerScheduler


@torch.no_grad()
def _random_module(
    module_class: type[nn.Module], config: Any, device: torch.device, dtype: torch.dtype, generator: torch.Generator
) -> nn.Module:
    """Build on the meta device, allocate on `device` in `dtype`, fill with random values.

    Matrices (and tables) ~ N(0, 1/fan_in), biases 0, norm weights and KV gates 1: values stay sane, and
    nothing is ever allocated in another dtype or on another device.
    """
    with torch.device("meta"):
        module = module_class(config)
    module = module.to(dtype).to_empty(device=device)
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if name.endswith("bias"):
            tensor.zero_()
        elif tensor.dim() < 2 or name.endswith(_GATE_SUFFIXES):
            tensor.fill_(1)
        else:
            tensor.normal_(0, tensor[0].numel() ** -0.5, generator=generator)
    return module.eval()


def random_init_pipeline(
    config: TransformerConfig,
    vae_config: VAEConfig,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    seed: int = 0,
) -> PipelineParts:
    """A transformer and VAE of the given architectures with random weights, built in place.

    Args:
        config, vae_config: the architectures; the VAE's stride and latent channels must fit the transformer.
        device: None → CUDA if available, else CPU.
        dtype: torch dtype or "auto"/"bf16"/"fp16"/"fp32" (auto: bf16 on CUDA, fp32 on CPU); an SDXL-style
            VAE decodes in float32 under fp16, as `load_pipeline` does.
        seed: the weights' seed.
    """
    if (vae_config.stride, vae_config.latent_channels) != (config.image_stride, config.image_dim):
        raise InvalidConfigError(
            f"the VAE has stride {vae_config.stride} and {vae_config.latent_channels} latent channels, but the "
            f"transformer expects image_stride={config.image_stride}, image_dim={config.image_dim}"
        )
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    generator = torch.Generator(device).manual_seed(seed)
    transformer = _random_module(LinaTransformer, config, device, dtype, generator)
    vae = _random_module(AutoencoderKL, vae_config, device, vae_compute_dtype(dtype, vae_config), generator)
    return PipelineParts(transformer, vae, FlowMatchEulerScheduler())


def build_pipeline(model: BenchmarkModel, device: torch.device, dtype: torch.dtype, kernels: str = "auto") -> PipelineParts:
    """Random weights (`random_init_pipeline`) or the folder's weights through `load_pipeline`, running the
    `kernels` op set ("auto", "fused" or "reference", as `load_pipeline` takes it).

    A loaded text-to-image pipeline's text encoder is dropped before anything is timed or measured.
    """
    if not model.random_init:
        pipe = load_pipeline(model.path, device=device, dtype=dtype, attention=model.config.attention, kernels=kernels)
        return PipelineParts(pipe.transformer, pipe.vae, pipe.scheduler)
    kernels = resolve_kernels(kernels, device)
    parts = random_init_pipeline(model.config, model.vae_config, device, dtype)
    parts.transformer.set_kernels(kernels)
    return parts
