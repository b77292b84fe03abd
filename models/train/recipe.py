"""What a training run is made of: the transformer and VAE recipes, the presets, and the geometry they build.

The transformer defaults are the paper's (arXiv 2601.22630, and the authors' `diffnext/config/defaults.py`): AdamW
β = (0.9, 0.95), weight decay 0.02, warm-up from 0.001× the learning rate, EMA 0.99 every 100 steps, 10 %
condition dropout, loss repeat 4. Sizes (steps, batch, learning rate, warm-up) default to a small run; the
paper's ImageNet recipe is lr 8e-4 at 768 images per step with 10k warm-up steps (docs/training.md).
This module imports no torch, so the CLI can show these defaults in its help.
"""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from models.errors import InvalidConfigError, TrainingConfigError
from models.eval.geneval.rules import RELATIONS
from models.network.config import TransformerConfig, VAEConfig

Task = Literal["t2i", "c2i"]
TASKS = ("t2i", "c2i")
TRAIN_DTYPES = ("auto", "bf16", "fp32")  # fp16 would need loss scaling; the authors train in bf16

# Transformer geometries by name: the (context encoder, image encoder, diffusion head) arch triple and, for
# text-to-image, the number of text rows P. `tiny` is for tests; `demo` is the shapes model (about 6 M
# parameters: 12 MB in fp16).
PRESETS: dict[str, dict[str, Any]] = {
    "tiny": {"arch": ["vit_d1w64", "vit_d2w64", "mlp_d1w64"], "text_token_len": 8},
    "demo": {"arch": ["vit_d4w192", "vit_d8w192", "mlp_d3w192"], "text_token_len": 16},
}
GEOMETRY_KEYS = {"arch", "text_token_len", "attention"}
DEFAULT_GEOMETRY = "demo"
SHAPES = "shapes"


@dataclass(frozen=True)
class TrainRecipe:
    """Hyper-parameters of a transformer training run (stored in the run folder's `run.json`).

    Attributes:
        task: "t2i" (captions) or "c2i" (class ids).
        data: "shapes" or a folder / captions `.jsonl` (`models.train.data.open_source`).
        image_size: image side in pixels (square).
        dataset_size: images of the shapes dataset (ignored for folders).
        shapes_mix: relative weights of the shapes dataset's tasks (GenEval tags; a task left out weighs 1);
            None: every task equally often.
        shapes_relations: relative weights of the relations of its position scenes ("left of", "right of",
            "above", "below"; one left out weighs 1); None: every relation equally often.
        steps: optimiser steps of the whole run.
        batch_size: images per step across all processes (the global batch).
        lr, warmup, warmup_factor: constant learning rate after a linear warm-up from `warmup_factor`·lr.
        cooldown: the last `cooldown` steps of `steps` take the learning rate linearly to 0 (0: no cool-down, as the
            authors).
        weight_decay, betas: AdamW's; LayerNorm/GroupNorm parameters get no decay.
        grad_clip: clip the gradient norm to this (None: no clipping, as the authors).
        ema_decay, ema_every: EMA of the weights, updated every `ema_every` steps.
        condition_dropout: probability of training a sample on the null condition (for CFG).
        loss_repeat: noise draws of the diffusion head per transformer pass.
        seed: seeds the initialisation, the data order and every random draw of the objective.
        dtype: "auto" (bf16 autocast on CUDA, fp32 on the CPU), "bf16" or "fp32".
        checkpoint_every, log_every: steps between checkpoints and between log lines.
    """

    task: Task = "t2i"
    data: str = SHAPES
    image_size: int = 128
    dataset_size: int = 50_000
    shapes_mix: dict[str, float] | None = None
    shapes_relations: dict[str, float] | None = None
    steps: int = 10_000
    batch_size: int = 64
    lr: float = 1e-4
    warmup: int = 1000
    warmup_factor: float = 0.001
    cooldown: int = 0
    weight_decay: float = 0.02
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float | None = None
    ema_decay: float = 0.99
    ema_every: int = 100
    condition_dropout: float = 0.1
    loss_repeat: int = 4
    seed: int = 0
    dtype: str = "auto"
    checkpoint_every: int = 1000
    log_every: int = 10

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(self.betas))
        problems = []
        if self.task not in TASKS:
            problems.append(f"task={self.task!r} (expected t2i or c2i)")
        if self.dtype not in TRAIN_DTYPES:
            problems.append(f"dtype={self.dtype!r} (expected {', '.join(TRAIN_DTYPES)}; fp16 is not supported)")
        for name in ("image_size", "dataset_size", "steps", "batch_size", "ema_every", "loss_repeat",
                     "checkpoint_every", "log_every"):
            if getattr(self, name) < 1:
                problems.append(f"{name}={getattr(self, name)} (must be ≥ 1)")
        if self.warmup < 0 or not 0 < self.warmup_factor <= 1:
            problems.append(f"warmup={self.warmup}, warmup_factor={self.warmup_factor} (need ≥ 0 and in (0, 1])")
        if not 0 <= self.cooldown <= self.steps:
            problems.append(f"cooldown={self.cooldown} (need 0 ≤ cooldown ≤ steps={self.steps})")
        if not self.lr > 0 or self.weight_decay < 0:
            problems.append(f"lr={self.lr}, weight_decay={self.weight_decay} (need lr > 0, decay ≥ 0)")
        if not 0 <= self.ema_decay < 1 or not 0 <= self.condition_dropout < 1:
            problems.append(f"ema_decay={self.ema_decay}, condition_dropout={self.condition_dropout} (need [0, 1))")
        if self.grad_clip is not None and not self.grad_clip > 0:
            problems.append(f"grad_clip={self.grad_clip} (must be > 0, or None for no clipping)")
        problems += _shapes_mix_problems(self) + _shapes_relations_problems(self)
        if problems:
            raise TrainingConfigError("training recipe: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TrainRecipe":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise TrainingConfigError(f"training recipe: unknown keys {unknown}; expected some of {sorted(known)}")
        return cls(**data)

    def replace(self, **changes: Any) -> "TrainRecipe":
        return dataclasses.replace(self, **changes)


def _shapes_mix_problems(recipe: TrainRecipe) -> list[str]:
    if recipe.shapes_mix is None:
        return []
    # here, not at the top: the task list's module pulls in torch, which this module keeps out of `lina --help`
    from models.eval.geneval.prompts import TAGS

    return _shapes_weights_problems(recipe, "shapes_mix", "tasks", TAGS)


def _shapes_relations_problems(recipe: TrainRecipe) -> list[str]:
    if recipe.shapes_relations is None:
        return []
    return _shapes_weights_problems(recipe, "shapes_relations", "relations", RELATIONS)


def _shapes_weights_problems(recipe: TrainRecipe, field: str, kind: str, names: tuple[str, ...]) -> list[str]:
    """What is wrong with the weights of `field` over the `kind` `names` (a name left out weighs 1)."""
    weighted: dict[str, float] = getattr(recipe, field)
    if recipe.data != SHAPES or recipe.task != "t2i":
        return [f"{field} weights the {kind} of text-to-image shapes data, not of {recipe.task} data {recipe.data!r}"]
    unknown = sorted(set(weighted) - set(names))
    if unknown:
        return [f"{field} {kind} {unknown} (expected some of {', '.join(names)})"]
    weights = [weighted.get(name, 1.0) for name in names]
    if min(weights) < 0 or not sum(weights) > 0:
        return [f"{field} {weighted} (weights must be ≥ 0 and not all 0)"]
    return []


@dataclass(frozen=True)
class VAERecipe:
    """A small autoencoder and how to train it; `block_out_channels` has a width per level (stride 2^(levels − 1))."""

    data: str = SHAPES
    image_size: int = 128
    block_out_channels: tuple[int, ...] = (32, 64, 64, 64)
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 16
    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    warmup: int = 100
    kl_weight: float = 1e-4
    seed: int = 0
    dtype: str = "auto"
    log_every: int = 20
    stats_images: int = 1024  # images whose latents set the shift and scaling factors

    def __post_init__(self) -> None:
        object.__setattr__(self, "block_out_channels", tuple(self.block_out_channels))
        counted = ("image_size", "layers_per_block", "latent_channels", "norm_num_groups", "steps", "batch_size",
                   "log_every", "stats_images")
        problems = [f"{name}={getattr(self, name)} (must be ≥ 1)" for name in counted if getattr(self, name) < 1]
        stride = 2 ** (len(self.block_out_channels) - 1)
        if not self.block_out_channels or any(width % self.norm_num_groups for width in self.block_out_channels):
            widths = list(self.block_out_channels)
            problems.append(f"widths {widths} must be multiples of norm_num_groups={self.norm_num_groups}")
        if self.image_size % stride:
            problems.append(f"image_size={self.image_size} must be a multiple of the stride {stride}")
        if not self.lr > 0 or self.kl_weight < 0 or self.warmup < 0 or self.dtype not in TRAIN_DTYPES:
            problems.append(f"lr={self.lr}, kl_weight={self.kl_weight}, warmup={self.warmup}, dtype={self.dtype!r}")
        if problems:
            raise TrainingConfigError("VAE recipe: " + "; ".join(problems))

    def vae_config(self) -> VAEConfig:
        levels = len(self.block_out_channels)
        return VAEConfig(
            block_out_channels=tuple(self.block_out_channels), layers_per_block=self.layers_per_block,
            latent_channels=self.latent_channels, norm_num_groups=self.norm_num_groups, sample_size=self.image_size,
            down_block_types=("DownEncoderBlock2D",) * levels, up_block_types=("UpDecoderBlock2D",) * levels,
            scaling_factor=1.0, force_upcast=False,
        )


# ----------------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------------


def read_geometry(name_or_path: str) -> dict[str, Any]:
    """A preset name (`tiny`, `demo`) or a JSON file `{"arch": [3 names], "text_token_len"?: P, "attention"?: ...}`."""
    if name_or_path in PRESETS:
        return dict(PRESETS[name_or_path])
    path = Path(name_or_path)
    if not path.is_file():
        raise TrainingConfigError(
            f"--config {name_or_path!r}: not a preset ({', '.join(PRESETS)}) and no such JSON file"
        )
    try:
        geometry = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise TrainingConfigError(f"--config {path}: not valid JSON ({error})") from error
    if not isinstance(geometry, dict) or "arch" not in geometry or set(geometry) - GEOMETRY_KEYS:
        raise TrainingConfigError(
            f"--config {path}: expected a JSON object with 'arch' (3 names, e.g. {PRESETS['demo']['arch']}) and "
            f"optionally 'text_token_len' and 'attention'; got {geometry!r}"
        )
    return geometry


def transformer_config_for(
    geometry: dict[str, Any],
    *,
    task: Task,
    image_size: int,
    vae: VAEConfig,
    text_dim: int | None = None,
    num_classes: int | None = None,
    attention: str | None = None,
) -> TransformerConfig:
    """The transformer config of a run: the geometry's arch on the VAE's latent grid (docs/architecture.md, "Geometry").

    Args:
        geometry: from `read_geometry`.
        task: "t2i" needs `text_dim` (the text encoder's width); "c2i" needs `num_classes`.
        image_size: image side in pixels.
        vae: its stride and latent channels fix the latent grid and the patch size.
        attention: "linear" or "softmax"; overrides the geometry's.

    Raises:
        TrainingConfigError: the image size does not fit the VAE stride and patch layout, or the arch is invalid.
    """
    stride = vae.stride
    patch = 15 // stride + 1
    latent = image_size // stride
    unit = stride * 2 * patch  # one context token covers a 2p × 2p latent patch
    if image_size % unit:
        raise TrainingConfigError(
            f"image size {image_size}: with a VAE of stride {stride} (patch {patch}) it must be a multiple of {unit} px"
        )
    grid, context = latent // patch, latent // (2 * patch)
    text = {}
    if task == "t2i":
        text = {"text_token_dim": text_dim, "text_token_len": int(geometry.get("text_token_len", 1))}
    try:
        return TransformerConfig(
            image_dim=vae.latent_channels, image_size=(image_size, image_size), image_stride=stride,
            image_base_size=(grid, grid), video_base_size=(1, context, context), arch=tuple(geometry["arch"]),
            attention=attention or geometry.get("attention", "linear"),
            **text, **({"num_classes": num_classes} if task == "c2i" else {}),
        )
    except (InvalidConfigError, TypeError) as error:
        raise TrainingConfigError(f"transformer geometry {geometry}: {error}") from error
