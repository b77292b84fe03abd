"""Read and write the files of a model folder: JSON configs and weights, atomically on write.

Weights are read from `.safetensors` (single file or a sharded index); a `.bin` file is only read with
`torch.load(weights_only=True)`. Nothing named inside a model folder is ever imported or executed.
Models are built on the meta device and the checkpoint tensors are assigned straight into them, cast to
the target dtype and device one tensor at a time, so a 1.45 B model never exists twice in memory.
"""

import json
import logging
import os
import pickle
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.constants import (
    BIN_WEIGHTS_NAME,
    SAFETENSORS_INDEX_NAME,
    SAFETENSORS_WEIGHTS_NAME,
)
from models.errors import CheckpointMismatchError, InvalidConfigError, MissingComponentError

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------------
# Configs
# ----------------------------------------------------------------------------------------------------


def read_json(path: Path, component: str) -> dict[str, Any]:
    """Read one JSON file of a pipeline folder, with errors that name the component."""
    if not path.is_file():
        raise MissingComponentError(f"{component}: {path} does not exist; is {path.parent.parent} a LINA pipeline folder?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidConfigError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(data, dict):
        raise InvalidConfigError(f"{path} must hold a JSON object")
    return data


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write a JSON file through a temp file and a rename, so a crash never leaves half a config."""
    write_atomic(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8"))


def write_atomic(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------------
# Weights
# ----------------------------------------------------------------------------------------------------


def weight_files(folder: Path) -> list[Path]:
    """The weight files of one component folder: safetensors preferred, then a sharded index, then .bin."""
    single = folder / SAFETENSORS_WEIGHTS_NAME
    if single.is_file():
        return [single]
    index = folder / SAFETENSORS_INDEX_NAME
    if index.is_file():
        shards = sorted(set(read_json(index, str(folder)).get("weight_map", {}).values()))
        return [folder / shard for shard in shards]
    legacy = folder / BIN_WEIGHTS_NAME
    if legacy.is_file():
        return [legacy]
    raise MissingComponentError(
        f"{folder} has no weights: expected {SAFETENSORS_WEIGHTS_NAME}, {SAFETENSORS_INDEX_NAME} or {BIN_WEIGHTS_NAME}"
    )


def iter_checkpoint(folder: Path) -> Iterator[tuple[str, torch.Tensor]]:
    """Yield (name, tensor) from a component folder, one tensor at a time for safetensors."""
    from safetensors import safe_open

    for path in weight_files(folder):
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as handle:
                for name in handle.keys():
                    yield name, handle.get_tensor(name)
        else:
            state = _load_bin(path)
            state = state.get("state_dict", state) if isinstance(state, dict) else state
            if not isinstance(state, dict):
                raise CheckpointMismatchError(f"{path} does not hold a state dict")
            yield from state.items()


def _load_bin(path: Path) -> Any:
    """torch.load with weights_only=True: tensors and plain containers only, never arbitrary objects."""
    try:
        try:  # memory-map zip-format files; legacy (pre-1.6) pickles cannot be mapped
            return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointMismatchError(
            f"{path} holds objects other than tensors; it was refused (weights_only=True). "
            "Convert it to .safetensors from a trusted environment"
        ) from error


def load_weights(
    module: nn.Module,
    folder: Path,
    *,
    device: torch.device | str,
    dtype: torch.dtype,
    expected: str,
) -> nn.Module:
    """Assign a checkpoint to a module built on the meta device, checking every key and shape.

    Args:
        module: built under `torch.device("meta")`.
        folder: component folder holding the weight files.
        device, dtype: where the weights go; floating tensors are cast to `dtype`.
        expected: description of the config the module was built from, for error messages.

    Raises:
        CheckpointMismatchError: a key is missing, unexpected, or has another shape.
    """
    wanted = {name: tensor.shape for name, tensor in module.state_dict().items()}
    loaded: dict[str, torch.Tensor] = {}
    unexpected, mismatched = [], []
    for name, tensor in iter_checkpoint(folder):
        if name not in wanted:
            unexpected.append(name)
            continue
        if tuple(tensor.shape) != tuple(wanted[name]):
            mismatched.append(f"{name}: checkpoint {list(tensor.shape)} vs model {list(wanted[name])}")
            continue
        target_dtype = dtype if tensor.is_floating_point() else tensor.dtype
        # copy=True: never keep a view into a memory-mapped file (unaligned, and alive as long as the model)
        loaded[name] = tensor.to(device=device, dtype=target_dtype, copy=True)
    missing = sorted(set(wanted) - set(loaded) - {m.split(":")[0] for m in mismatched})
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(
            f"{folder} does not fit {expected}: "
            + "; ".join(
                part
                for part in (
                    f"{len(missing)} missing keys {preview_names(missing)}" if missing else "",
                    f"{len(unexpected)} unexpected keys {preview_names(sorted(unexpected))}" if unexpected else "",
                    f"{len(mismatched)} shape mismatches {preview_names(mismatched)}" if mismatched else "",
                )
                if part
            )
        )
    module.load_state_dict(loaded, strict=True, assign=True)
    return module.eval().requires_grad_(False)


def preview_names(items: list[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return f"[{shown}{', …' if len(items) > limit else ''}]"


def save_weights(module: nn.Module, folder: Path) -> None:
    """Write a module's state dict as `diffusion_pytorch_model.safetensors`, atomically."""
    from safetensors.torch import save_file

    state = {name: tensor.detach().contiguous().cpu() for name, tensor in module.state_dict().items()}
    write_atomic(folder / SAFETENSORS_WEIGHTS_NAME, lambda tmp: save_file(state, str(tmp), metadata={"format": "pt"}))
