"""The run folder: what a training run is (recipe, transformer config, components) and where its files go.

    RUN/run.json            recipe, transformer config, component folders, where the weights started from
    RUN/log.jsonl           one line per log interval (step, loss, lr, images/s, grad norm, MFU)
    RUN/cache/              VAE moments and text features (`models.train.latents`)
    RUN/checkpoints/        weights, EMA, optimiser and generator states (`models.train.checkpoint`)

`run.json` is written once when a run starts; resuming reads it back, so a resumed run trains exactly the
recipe it started with (only the step count and the checkpoint and log intervals may change).
"""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.constants import (
    CONFIG_NAME,
    SCHEDULER_CONFIG_NAME,
    SCHEDULER_FOLDER,
    TEXT_ENCODER_FOLDER,
    TOKENIZER_FOLDER,
    TRANSFORMER_FOLDER,
    VAE_FOLDER,
)
from models.errors import MissingComponentError, RunFolderError, TrainingConfigError
from models.files import read_json, write_json_atomic
from models.network.config import SchedulerConfig, TransformerConfig, VAEConfig
from models.pipeline.hub import resolve_model_path
from models.train.data import SHAPES, data_task, open_source
from models.train.recipe import DEFAULT_GEOMETRY, TrainRecipe, read_geometry, transformer_config_for
from models.version import __version__

RUN_NAME = "run.json"
LOG_NAME = "log.jsonl"
CACHE_FOLDER = "cache"
# Recipe fields a resumed run may change: when it stops, how often it writes, and the cool-down of its last steps
# (the point of a warm-up/stable/decay schedule is that the decay can be decided once the run's length is known).
RESUMABLE_CHANGES = ("steps", "cooldown", "checkpoint_every", "log_every")


@dataclass(frozen=True)
class Components:
    """The frozen parts a run trains with and exports: `vae/`, and for text-to-image `text_encoder/` + `tokenizer/`."""

    vae: Path
    text_encoder: Path | None = None
    tokenizer: Path | None = None

    @classmethod
    def in_folder(cls, folder: str | Path, task: str) -> "Components":
        """The components in a pipeline folder (or in a folder of `lina train vae` and `lina train text-encoder`)."""
        folder = Path(folder).expanduser().resolve()
        text = task == "t2i"
        parts = cls(folder / VAE_FOLDER, *((folder / TEXT_ENCODER_FOLDER, folder / TOKENIZER_FOLDER) if text else ()))
        missing = [str(path) for path in (parts.vae, parts.text_encoder, parts.tokenizer) if path and not path.is_dir()]
        if missing:
            raise MissingComponentError(
                f"{folder} lacks {', '.join(missing)}; a {task} run needs vae/"
                + (", text_encoder/ and tokenizer/" if text else "")
                + " (make them with `lina train vae` and `lina train text-encoder`)"
            )
        return parts

    def to_dict(self) -> dict[str, str | None]:
        return {k: None if v is None else str(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Components":
        return cls(**{k: None if v is None else Path(v) for k, v in data.items()})


@dataclass(frozen=True)
class RunSpec:
    """Everything that defines a run; `init_from` is the `transformer/` folder it starts from (None: from scratch)."""

    recipe: TrainRecipe
    transformer: TransformerConfig
    components: Components
    scheduler: SchedulerConfig = dataclasses.field(default_factory=SchedulerConfig)
    init_from: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "lina_version": __version__,
            "recipe": self.recipe.to_dict(),
            "transformer": self.transformer.to_dict(),
            "components": self.components.to_dict(),
            "scheduler": self.scheduler.to_dict(),
            "init_from": None if self.init_from is None else str(self.init_from),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "RunSpec":
        return cls(
            recipe=TrainRecipe.from_dict(data["recipe"]),
            transformer=TransformerConfig.from_dict(data["transformer"]),
            components=Components.from_dict(data["components"]),
            scheduler=SchedulerConfig.from_dict(data["scheduler"]),
            init_from=None if data.get("init_from") is None else Path(data["init_from"]),
        )


def plan_run(
    values: dict[str, Any],
    *,
    parts: str | Path | None = None,
    geometry: str | None = None,
    init_from: str | None = None,
    attention: str | None = None,
    offline: bool | None = None,
) -> RunSpec:
    """The spec of a new run: from scratch on the components in `parts` with a `geometry` (preset or JSON file,
    default "demo"), or fine-tuning the pipeline `init_from` (folder, alias or hub repo: its geometry and parts).

    Args:
        values: recipe fields given (the rest are `TrainRecipe` defaults). The task defaults to the `init_from`
            model's or the data's kind (text-to-image for shapes), the image size to the `init_from` model's.

    Raises:
        TrainingConfigError: neither or both of `parts` and `init_from`, a geometry with `init_from`, or a task or
            image size other than the `init_from` model's.
    """
    if (parts is None) == (init_from is None):
        raise TrainingConfigError("give the components to train with: --parts DIR (from scratch) or --init-from MODEL")
    if init_from is not None:
        if geometry is not None:
            raise TrainingConfigError("--init-from keeps the model's geometry; drop --config")
        folder = resolve_model_path(init_from, offline=offline).resolve()
        config = TransformerConfig.from_dict(read_json(folder / TRANSFORMER_FOLDER / CONFIG_NAME, "transformer"))
        recipe = TrainRecipe.from_dict({"task": config.task, "image_size": config.image_size[0], **values})
        if attention is not None and attention != config.attention:
            raise TrainingConfigError(
                f"{init_from} has {config.attention} attention; its weights cannot train as {attention}"
            )
        if (recipe.task, recipe.image_size) != (config.task, config.image_size[0]):
            raise TrainingConfigError(
                f"{init_from} is a {config.task} model of {config.image_size[0]} px; drop --task and --size, "
                "or train another model"
            )
        scheduler_file = folder / SCHEDULER_FOLDER / SCHEDULER_CONFIG_NAME
        scheduler = SchedulerConfig()
        if scheduler_file.is_file():
            scheduler = SchedulerConfig.from_dict(read_json(scheduler_file, "scheduler"))
        parts = Components.in_folder(folder, config.task)
        return RunSpec(recipe, config, parts, scheduler, folder / TRANSFORMER_FOLDER)

    recipe = TrainRecipe.from_dict({"task": data_task(values.get("data", SHAPES)) or "t2i", **values})
    components = Components.in_folder(parts, recipe.task)
    vae = VAEConfig.from_dict(read_json(components.vae / CONFIG_NAME, "vae"))
    text_dim = None
    if recipe.task == "t2i":
        text_dim = int(read_json(components.text_encoder / CONFIG_NAME, "text_encoder")["hidden_size"])
    source = open_source(
        recipe.data, task=recipe.task, size=recipe.image_size, dataset_size=recipe.dataset_size,
        shapes_mix=recipe.shapes_mix, shapes_relations=recipe.shapes_relations,
    )
    config = transformer_config_for(
        read_geometry(geometry or DEFAULT_GEOMETRY), task=recipe.task, image_size=recipe.image_size, vae=vae,
        text_dim=text_dim, num_classes=source.num_classes, attention=attention,
    )
    return RunSpec(recipe, config, components)


def start_run(folder: str | Path, spec: RunSpec) -> Path:
    """Create the run folder and write `run.json`.

    Raises:
        RunFolderError: the folder already holds a run.
    """
    folder = Path(folder)
    if (folder / RUN_NAME).exists():
        raise RunFolderError(f"{folder} already holds a training run; resume it with --resume, or choose another --out")
    write_json_atomic(folder / RUN_NAME, spec.to_dict())
    return folder


def read_run(folder: str | Path) -> RunSpec:
    """The spec of an existing run.

    Raises:
        RunFolderError: the folder holds no run.
    """
    path = Path(folder) / RUN_NAME
    if not path.is_file():
        raise RunFolderError(f"{folder} holds no training run ({RUN_NAME} is missing); start one without --resume")
    return RunSpec.from_dict(read_json(path, "training run"))


def resumed_recipe(recorded: TrainRecipe, changes: dict[str, Any]) -> TrainRecipe:
    """The recorded recipe with the allowed `changes` applied; any other value that differs is refused.

    Raises:
        TrainingConfigError: a change to a field outside RESUMABLE_CHANGES, naming it and its recorded value.
    """
    current = recorded.to_dict()
    conflicts = [
        f"{key} (the run has {current[key]!r}, given {value!r})"
        for key, value in changes.items()
        if key not in RESUMABLE_CHANGES and value is not None and _normalised(value) != current[key]
    ]
    if conflicts:
        raise TrainingConfigError(
            "a resumed run keeps its recipe, but these options differ: " + "; ".join(conflicts)
            + f". Drop them, or start a new run with another --out (only {', '.join(RESUMABLE_CHANGES)} may change)"
        )
    allowed = {key: value for key, value in changes.items() if key in RESUMABLE_CHANGES and value is not None}
    return recorded.replace(**allowed)


def _normalised(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value
