"""`lina train vae`: train a small KL autoencoder in the `vae/` folder format the pipelines load.

The same `AutoencoderKL` class and config keys as the released VAEs (docs/architecture.md, "VAE, text encoder,
scheduler"), at small widths. The loss is L1 + L2 reconstruction plus a small KL term on the posterior (no
adversarial or perceptual term: the shapes images are flat colours). Afterwards the latents of fresh images
set `shift_factor` and `scaling_factor` so that model-space latents have zero mean and unit variance, as
Stable Diffusion's scaling factor was chosen. Data: `--data shapes` draws fresh images for every step;
a folder is read in seeded epochs.
"""

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from models.constants import VAE_FOLDER
from models.network.config import VAEConfig
from models.network.vae import AutoencoderKL
from models.pipeline.devices import resolve_dtype
from models.train.data import SHAPES, iter_batches, open_source, to_unit_range
from models.train.init_weights import default_init_
from models.train.optim import build_scheduler
from models.train.recipe import VAERecipe
from models.train.signals import StopRequest

VAE_LOG_NAME = "vae-log.jsonl"
STATS_BATCH = 64  # images encoded together while measuring the latents' statistics


@dataclass(frozen=True)
class VAEProgress:
    step: int
    steps: int
    loss: float
    reconstruction: float
    kl: float
    images_per_second: float


@dataclass(frozen=True)
class VAEResult:
    folder: Path
    step: int
    parameters: int
    scaling_factor: float
    shift_factor: float
    interrupted_by: str | None = None


def _indices(recipe: VAERecipe, length: int) -> list[int]:
    """Image order: the shapes stream in order (every image new); a folder in seeded epochs."""
    total = recipe.steps * recipe.batch_size
    if recipe.data == SHAPES:
        return list(range(total))
    generator = torch.Generator().manual_seed(recipe.seed)
    order: list[int] = []
    while len(order) < total:
        order += torch.randperm(length, generator=generator).tolist()
    return order[:total]


def _loss(vae: AutoencoderKL, images: torch.Tensor, eps_generator: torch.Generator, kl_weight: float):
    mean, logvar = vae.encode(images)
    eps = torch.randn(mean.shape, generator=eps_generator, device=mean.device)
    reconstruction = vae.decode(mean + torch.exp(0.5 * logvar) * eps).float()
    error = reconstruction - images
    rec = error.abs().mean() + error.square().mean()
    kl = 0.5 * (mean.float().square() + logvar.float().exp() - 1 - logvar.float()).mean()
    return rec + kl_weight * kl, rec, kl


def train_vae(
    out_folder: str | Path,
    recipe: VAERecipe | None = None,
    *,
    device: str | torch.device = "cpu",
    workers: int = 0,
    on_log: Callable[[VAEProgress], None] | None = None,
) -> VAEResult:
    """Train an autoencoder and write it to `out_folder/vae/` (config.json + safetensors).

    SIGINT/SIGTERM stop the run after the current step; the VAE trained so far is written.

    Raises:
        TrainingDataError: a `--data` folder without usable images.
    """
    out_folder, device, recipe = Path(out_folder), torch.device(device), recipe or VAERecipe()
    config = recipe.vae_config()
    with torch.device("meta"):
        vae = AutoencoderKL(config)
    vae.to_empty(device="cpu")
    default_init_(vae, torch.Generator().manual_seed(recipe.seed))
    vae.to(device).train()
    length = recipe.steps * recipe.batch_size + recipe.stats_images  # shapes: every image drawn once
    source = open_source(recipe.data, task=None, size=recipe.image_size, dataset_size=length, seed=recipe.seed)
    optimizer = torch.optim.AdamW(vae.parameters(), lr=recipe.lr, weight_decay=0.0)
    scheduler = build_scheduler(optimizer, recipe.warmup, 0.001)
    eps_generator = torch.Generator(device).manual_seed(recipe.seed + 1)
    dtype = resolve_dtype(recipe.dtype, device)
    out_folder.mkdir(parents=True, exist_ok=True)
    log_path = out_folder / VAE_LOG_NAME
    step, window_steps, window_start, interrupted = 0, 0, time.perf_counter(), None
    batches = iter_batches(source, _indices(recipe, len(source)), recipe.image_size, recipe.batch_size, workers)
    with StopRequest() as stop, log_path.open("a", encoding="utf-8") as log:
        for pixels, _, _ in batches:
            images = to_unit_range(pixels).to(device)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                loss, rec, kl = _loss(vae, images, eps_generator, recipe.kl_weight)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step, window_steps = step + 1, window_steps + 1
            if step % recipe.log_every == 0 or step == recipe.steps or stop.requested:
                values = (loss.item(), rec.item(), kl.item())  # waits for the device, so the time below is real
                speed = window_steps * recipe.batch_size / max(time.perf_counter() - window_start, 1e-9)
                progress = VAEProgress(step, recipe.steps, *values, speed)
                log.write(json.dumps(asdict(progress)) + "\n")
                if on_log is not None:
                    on_log(progress)
                window_steps, window_start = 0, time.perf_counter()
            if stop.requested:
                interrupted = stop.signal_name
                break
    shift, scaling = latent_statistics(vae.eval(), source, recipe, device, workers)
    vae.config = VAEConfig.from_dict({**config.to_dict(), "shift_factor": shift, "scaling_factor": scaling})
    vae.float().cpu().save_pretrained(out_folder / VAE_FOLDER)
    parameters = sum(p.numel() for p in vae.parameters())
    return VAEResult(out_folder / VAE_FOLDER, step, parameters, scaling, shift, interrupted)


@torch.no_grad()
def latent_statistics(
    vae: AutoencoderKL, source, recipe: VAERecipe, device: torch.device, workers: int
) -> tuple[float, float]:
    """(shift, scaling) = (mean, 1 / std) of posterior samples of the source's last images (shapes: unseen)."""
    start = max(len(source) - recipe.stats_images, 0)
    generator = torch.Generator(device).manual_seed(recipe.seed + 2)
    samples = []
    indices = list(range(start, len(source)))
    for pixels, _, _ in iter_batches(source, indices, recipe.image_size, STATS_BATCH, workers):
        mean, logvar = vae.encode(to_unit_range(pixels).to(device))
        samples.append(mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=generator, device=device))
    latents = torch.cat(samples).double()
    return latents.mean().item(), 1 / latents.std().item()
