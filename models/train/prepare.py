"""What a run trains on: images encoded once into cached VAE moments, captions into text features, and the batch order.

The first process of each machine (LOCAL_RANK 0) builds a missing cache; the others wait for its file to
appear, so no collective can time out during a long encode. Every process then reads the same file.
Shapes: N images, B a batch, P text rows.
"""

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from models.errors import CheckpointMismatchError, TrainingDataError
from models.network.text_encoder import PhiTextEncoder
from models.network.transformer import LinaTransformer
from models.network.vae import AutoencoderKL
from models.train.data import open_source
from models.train.latents import (
    LatentCache,
    TextFeatures,
    build_latent_cache,
    build_text_features,
    latent_cache_path,
    load_latent_cache,
    load_text_features,
    text_cache_path,
)
from models.train.run import CACHE_FOLDER, RunSpec

EPOCH_SEED_STRIDE = 1_000_003  # epoch e of seed s shuffles with seed s·stride + e: no two (s, e) pairs share one
SETUP_IMAGES = "encoding images"  # the stages `on_setup` reports
SETUP_TEXT = "encoding captions"
POLL_SECONDS = 1.0
ENCODE_BATCH = 64


@dataclass
class TrainingData:
    """The cached dataset on the training device, and the VAE whose `scale` maps its latents to model space."""

    latents: LatentCache
    text: TextFeatures | None
    vae: AutoencoderKL

    def __len__(self) -> int:
        return len(self.latents)

    def conditions(self, indices: torch.Tensor, transformer: LinaTransformer) -> torch.Tensor:
        """Class ids [B] or text feature matrices [B, P, text_dim] (null rows after the caption) of images `indices`."""
        if self.text is None:
            return self.latents.class_ids[indices]
        null_rows = transformer.text_embed.weight[: transformer.config.text_token_len].float()
        return self.text.batch(self.latents.caption_ids[indices], null_rows)


class BatchOrder:
    """Image indices of each global batch: epochs of seeded permutations of the N cached images, read in order."""

    def __init__(self, num_images: int, batch_size: int, seed: int):
        self.num_images, self.batch_size, self.seed = num_images, batch_size, seed
        self._epoch, self._order = -1, torch.empty(0, dtype=torch.long)

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(self.seed * EPOCH_SEED_STRIDE + epoch)
            self._epoch, self._order = epoch, torch.randperm(self.num_images, generator=generator)
        return self._order

    def batch(self, step: int) -> torch.Tensor:
        """The global batch of step `step` (0-based), [G] long: stream positions step·G … step·G + G − 1."""
        positions = torch.arange(step * self.batch_size, (step + 1) * self.batch_size)
        epochs, offsets = positions // self.num_images, positions % self.num_images
        indices = torch.empty_like(positions)
        for epoch in epochs.unique().tolist():  # one epoch, or two where the batch crosses an epoch's end
            rows = epochs == epoch
            indices[rows] = self._permutation(epoch)[offsets[rows]]
        return indices


def wait_for(path: Path) -> None:
    """Block until another process has written `path` (caches appear atomically, complete)."""
    while not path.exists():
        time.sleep(POLL_SECONDS)


def prepare_data(
    run_dir: Path,
    spec: RunSpec,
    device: torch.device,
    *,
    builds: bool,
    compute_dtype: torch.dtype,
    workers: int = 0,
    on_setup: Callable[[str, int, int], None] | None = None,
) -> TrainingData:
    """Load (building when `builds`, else waiting for) the caches of a run and move them to `device`.

    Args:
        builds: whether this process builds missing caches (LOCAL_RANK 0) or waits for them.
        compute_dtype: the dtype the text encoder runs in, as it will at inference on this device.
        workers: processes that render or decode images while encoding.
        on_setup: called as on_setup(stage, done, total) while a cache is built.

    Raises:
        CheckpointMismatchError: the VAE's stride or channels do not fit the transformer config.
        TrainingDataError: an image without a caption (text-to-image) or with a class id the model has no row for.
    """
    recipe, config, parts = spec.recipe, spec.transformer, spec.components
    cache_dir = Path(run_dir) / CACHE_FOLDER
    vae = AutoencoderKL.from_pretrained(parts.vae, device=device)
    if (vae.config.stride, vae.config.latent_channels) != (config.image_stride, config.image_dim):
        raise CheckpointMismatchError(
            f"{parts.vae} has stride {vae.config.stride} and {vae.config.latent_channels} latent channels, "
            f"but the run's transformer expects image_stride={config.image_stride}, image_dim={config.image_dim}"
        )
    source = open_source(
        recipe.data, task=recipe.task, size=recipe.image_size, dataset_size=recipe.dataset_size,
        shapes_mix=recipe.shapes_mix, shapes_relations=recipe.shapes_relations,
    )
    path = latent_cache_path(cache_dir, source, parts.vae)
    if not path.exists():
        if builds:
            report = (lambda done, total: on_setup(SETUP_IMAGES, done, total)) if on_setup else None
            build_latent_cache(
                path, source, vae, recipe.image_size, batch_size=ENCODE_BATCH, workers=workers, progress=report
            )
        else:
            wait_for(path)
    latents = load_latent_cache(path)
    vae.to("cpu")  # only its config is used from here on (`scale`)

    text = None
    if config.is_text_conditioned:
        if bool((latents.caption_ids < 0).any()):
            raise TrainingDataError(f"--data {recipe.data}: a text-to-image run needs a caption for every image")
        rows = config.text_token_len
        text_path = text_cache_path(cache_dir, latents.captions, parts.text_encoder, parts.tokenizer, rows)
        if not text_path.exists():
            if builds:
                if on_setup:
                    on_setup(SETUP_TEXT, 0, len(latents.captions))
                encoder = PhiTextEncoder.from_pretrained(
                    parts.text_encoder, parts.tokenizer, device=device, dtype=compute_dtype
                )
                build_text_features(text_path, latents.captions, encoder, rows)
                del encoder
                if on_setup:
                    on_setup(SETUP_TEXT, len(latents.captions), len(latents.captions))
            else:
                wait_for(text_path)
        text = load_text_features(text_path).to(device)
    else:
        labels = latents.class_ids
        if bool((labels < 0).any()) or bool((labels >= config.num_classes).any()):
            raise TrainingDataError(
                f"--data {recipe.data}: a class-conditional run needs a class id in 0..{config.num_classes - 1} "
                "for every image"
            )
    return TrainingData(latents.to(device), text, vae)
