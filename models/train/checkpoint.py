"""Training checkpoints: everything an exact resume needs, written atomically.

    RUN/checkpoints/step-<step:08d>/transformer.safetensors   the trained weights (float32)
    RUN/checkpoints/step-<step:08d>/ema.safetensors           the EMA weights (what is exported)
    RUN/checkpoints/step-<step:08d>/state.pt                  step, images consumed, optimiser and LR-schedule
                                                              state, every generator's state (as tensors)
    RUN/checkpoints/latest.json                               which one is the newest

`state.pt` holds only tensors and plain Python values, so it is read with `torch.load(weights_only=True)`.
A checkpoint is written into a hidden folder and renamed into place, then `latest.json` is replaced, so an
interrupted write never leaves a half checkpoint that a resume would pick up. The `KEEP` newest are kept.
"""

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models.errors import CheckpointMismatchError
from models.files import read_json, write_json_atomic

CHECKPOINTS_FOLDER = "checkpoints"
LATEST_NAME = "latest.json"
MODEL_NAME = "transformer.safetensors"
EMA_NAME = "ema.safetensors"
STATE_NAME = "state.pt"
KEEP = 2


@dataclass
class Checkpoint:
    """What a checkpoint holds; `state` is the `state.pt` dictionary."""

    folder: Path
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor]
    state: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.state["step"])


def _tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().contiguous().cpu() for name, tensor in module.state_dict().items()}


def save_checkpoint(
    run_dir: Path, step: int, model: torch.nn.Module, ema: torch.nn.Module, state: dict[str, Any]
) -> Path:
    """Write the checkpoint of `step` and make it the latest; returns its folder.

    Args:
        state: plain data and tensors (optimizer and scheduler state dicts, generator states, counters).
    """
    root = Path(run_dir) / CHECKPOINTS_FOLDER
    final = root / f"step-{step:08d}"
    staging = root / f".{final.name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    save_file(_tensors(model), str(staging / MODEL_NAME), metadata={"format": "pt"})
    save_file(_tensors(ema), str(staging / EMA_NAME), metadata={"format": "pt"})
    torch.save({**state, "step": step}, staging / STATE_NAME)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(staging, final)
    write_json_atomic(root / LATEST_NAME, {"step": step, "folder": final.name})
    for old in sorted(p for p in root.glob("step-*") if p.is_dir())[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The newest complete checkpoint folder of a run, or None."""
    root = Path(run_dir) / CHECKPOINTS_FOLDER
    if not (root / LATEST_NAME).is_file():
        return None
    folder = root / read_json(root / LATEST_NAME, "checkpoint")["folder"]
    return folder if folder.is_dir() else None


def load_checkpoint(folder: Path) -> Checkpoint:
    """Read a checkpoint folder (`state.pt` with weights_only=True).

    Raises:
        CheckpointMismatchError: a file is missing or `state.pt` holds objects other than plain data and tensors.
    """
    folder = Path(folder)
    missing = [name for name in (MODEL_NAME, EMA_NAME, STATE_NAME) if not (folder / name).is_file()]
    if missing:
        raise CheckpointMismatchError(f"checkpoint {folder} is incomplete: {', '.join(missing)} missing")
    try:
        state = torch.load(folder / STATE_NAME, map_location="cpu", weights_only=True)
    except Exception as error:  # an UnpicklingError for refused objects, or a damaged file
        raise CheckpointMismatchError(f"{folder / STATE_NAME} cannot be read as plain data: {error}") from error
    return Checkpoint(folder, load_file(str(folder / MODEL_NAME)), load_file(str(folder / EMA_NAME)), state)


def load_ema_weights(folder: Path) -> dict[str, torch.Tensor]:
    """The EMA weights of a checkpoint folder, without the optimiser state."""
    return load_file(str(Path(folder) / EMA_NAME))


def load_model_weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(folder) / MODEL_NAME))
