"""GenEval's detector weights on disk: mmdetection's checkpoint read safely, converted once into the lina cache.

The `.pth` is read with `torch.load(weights_only=True)`. mmdetection's checkpoints carry a `meta` dict next to
the weights, and a run's `meta` may hold numpy scalars (a seed drawn with numpy); `weights_only` refuses those,
so the globals a file names are listed first (without unpickling it) and, when every one is a numpy scalar or
dtype, loaded again with just those allowed (`NUMPY_SAFE_GLOBALS`); anything else is refused with its name.

The conversion (`detector_convert.convert_checkpoint`) runs once per source file: its output goes to
`<lina cache>/geneval/detector/<sha256 of the .pth, 16 hex>/` as `config.json`, `model.safetensors` and
`source.json` (the source's name and SHA-256, written last, so a folder without it is an interrupted conversion).
"""

import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from models.errors import GenEvalWeightsError
from models.eval.fid.constants import lina_cache_dir
from models.eval.fid.images import sha256_file
from models.eval.geneval.detector_convert import MMDET_COCO_CLASSES, convert_checkpoint, normalise_keys
from models.files import write_atomic

if TYPE_CHECKING:
    from transformers import Mask2FormerConfig

logger = logging.getLogger(__name__)

# GenEval's detector (mmdetection 2.x model zoo). mmdetection names a published file by the first 8 hex digits of
# its SHA-256, so the name carries a check of the bytes.
DETECTOR_FILE = "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco_20220504_001756-743b7d99.pth"
DETECTOR_URL = (
    "https://download.openmmlab.com/mmdetection/v2.0/mask2former/mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco/"
    + DETECTOR_FILE
)
# The same model re-saved for mmdetection 3.x, what GenEval's `evaluation/download_models.sh` fetches today.
DETECTOR_V3_FILE = "mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco_20220504_001756-c9d0c4f2.pth"
DETECTOR_V3_URL = (
    "https://download.openmmlab.com/mmdetection/v3.0/mask2former/mask2former_swin-s-p4-w7-224_8xb2-lsj-50e_coco/"
    + DETECTOR_V3_FILE
)
CACHE_FOLDER = ("geneval", "detector")
CONFIG_FILE, WEIGHTS_FILE, SOURCE_FILE = "config.json", "model.safetensors", "source.json"
HASH_FOLDER_LENGTH = 16


@dataclass(frozen=True)
class WeightsFile:
    """A weights file and the SHA-256 of its bytes, as every GenEval result names it."""

    path: Path
    sha256: str

    @classmethod
    def of(cls, path: Path) -> "WeightsFile":
        return cls(path.resolve(), sha256_file(path))

    def to_json(self) -> dict[str, str]:
        return {"path": str(self.path), "sha256": self.sha256}


@dataclass(frozen=True)
class ConvertedDetector:
    """A converted checkpoint in the cache: its folder, the mmdetection file it came from, and that file's layout."""

    folder: Path
    source: WeightsFile
    layout: str

    @property
    def weights(self) -> Path:
        return self.folder / WEIGHTS_FILE


# ----------------------------------------------------------------------------------------------------
# Reading a .pth safely
# ----------------------------------------------------------------------------------------------------


def numpy_safe_globals() -> list[Any]:
    """numpy's scalar reconstructor and dtypes, under their numpy 1 and 2 module names: data, never code."""
    import numpy as np

    scalar = np._core.multiarray.scalar
    dtypes = sorted({type(np.dtype(code)) for code in "?bhilqpBHILQPefdgFDGSU"}, key=lambda kind: kind.__name__)
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


def allowed_names(entries: list[Any]) -> set[str]:
    return {entry[1] if isinstance(entry, tuple) else f"{entry.__module__}.{entry.__qualname__}" for entry in entries}


def read_torch_checkpoint(path: Path) -> dict[str, Any]:
    """A `.pth` file's content, read with `weights_only=True` and at most numpy scalars and dtypes allowed.

    Raises:
        GenEvalWeightsError: the file is missing, is not a torch checkpoint, or names other globals (listed).
    """
    from torch.serialization import get_unsafe_globals_in_checkpoint, safe_globals

    if not path.is_file():
        raise GenEvalWeightsError(f"{path}: no such file")
    allowed = numpy_safe_globals()
    try:
        unsafe = set(get_unsafe_globals_in_checkpoint(str(path)))
    except (RuntimeError, pickle.UnpicklingError, ValueError, OSError) as error:
        raise GenEvalWeightsError(f"{path} is not a torch checkpoint ({error})") from None
    refused = sorted(unsafe - allowed_names(allowed))
    if refused:
        raise GenEvalWeightsError(
            f"{path} names objects other than tensors and numpy scalars ({', '.join(refused)}), so it was not "
            "loaded; re-save only its weights from a trusted environment: "
            "torch.save({'state_dict': torch.load(f)['state_dict']}, 'clean.pth')"
        )
    try:
        with safe_globals(allowed):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise GenEvalWeightsError(f"{path} was refused by torch.load(weights_only=True): {error}") from None
    if not isinstance(data, dict):
        raise GenEvalWeightsError(f"{path} holds a {type(data).__name__}, not a checkpoint dict")
    return data


def mmdet_state_dict(checkpoint: dict[str, Any], path: Path) -> dict[str, torch.Tensor]:
    """The `state_dict` of an mmdetection checkpoint, after checking its recorded classes when it has any."""
    state_dict = checkpoint.get("state_dict", checkpoint)
    if not isinstance(state_dict, dict) or not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise GenEvalWeightsError(f"{path} has no state dict of tensors (keys: {', '.join(map(str, checkpoint))})")
    meta = checkpoint.get("meta")
    classes = meta.get("CLASSES") if isinstance(meta, dict) else None
    if classes is not None and tuple(classes) != MMDET_COCO_CLASSES:
        raise GenEvalWeightsError(
            f"{path} was trained on other classes than COCO's 80 in mmdetection's order ({len(classes)} classes); "
            "GenEval's detector is the COCO instance-segmentation Mask2Former"
        )
    return state_dict


# ----------------------------------------------------------------------------------------------------
# The converted copy in the cache
# ----------------------------------------------------------------------------------------------------


def detector_cache_dir() -> Path:
    return lina_cache_dir().joinpath(*CACHE_FOLDER)


def default_detector_checkpoint() -> Path:
    """Where lina looks for GenEval's `.pth` when none is given: the lina cache, under its published name.

    Raises:
        GenEvalWeightsError: it is not there; the message says where to get it and where to put it.
    """
    for name in (DETECTOR_FILE, DETECTOR_V3_FILE):
        path = detector_cache_dir() / name
        if path.is_file():
            return path
    raise GenEvalWeightsError(
        f"GenEval's detector weights are not in the lina cache: download {DETECTOR_URL} "
        f"(or the mmdetection 3.x copy {DETECTOR_V3_URL}) into {detector_cache_dir()}, or pass the file with "
        "--detector-weights"
    )


def convert_once(source: Path) -> ConvertedDetector:
    """The converted copy of an mmdetection checkpoint, made now unless the cache already holds it.

    Raises:
        GenEvalWeightsError: the file cannot be read safely.
        DetectorConversionError: its keys or shapes do not convert.
    """
    origin = WeightsFile.of(source)
    folder = detector_cache_dir() / origin.sha256[:HASH_FOLDER_LENGTH]
    record = folder / SOURCE_FILE
    if record.is_file():
        saved = json.loads(record.read_text(encoding="utf-8"))
        if saved.get("sha256") == origin.sha256 and (folder / WEIGHTS_FILE).is_file():
            return ConvertedDetector(folder, origin, saved.get("layout", "2.x"))
    logger.info("converting %s into %s", source, folder)
    state_dict = mmdet_state_dict(read_torch_checkpoint(source), source)
    layout = normalise_keys(state_dict)[1]
    config, converted = convert_checkpoint(state_dict)
    write_converted(folder, config, converted, origin, layout)
    return ConvertedDetector(folder, origin, layout)


def write_converted(
    folder: Path, config: "Mask2FormerConfig", state_dict: dict[str, torch.Tensor], origin: WeightsFile, layout: str
) -> None:
    """Write a converted detector folder; the source record goes last, marking the folder complete."""
    from safetensors.torch import save_file

    config_text = config.to_json_string()
    write_atomic(folder / CONFIG_FILE, lambda tmp: tmp.write_text(config_text, encoding="utf-8"))
    metadata = {"format": "pt", "source": origin.path.name, "source_sha256": origin.sha256}
    tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in state_dict.items()}
    write_atomic(folder / WEIGHTS_FILE, lambda tmp: save_file(tensors, str(tmp), metadata=metadata))
    record = json.dumps({"name": origin.path.name, "sha256": origin.sha256, "layout": layout}, indent=2) + "\n"
    write_atomic(folder / SOURCE_FILE, lambda tmp: tmp.write_text(record, encoding="utf-8"))


def read_converted(folder: Path) -> tuple["Mask2FormerConfig", dict[str, torch.Tensor]]:
    """The transformers config and state dict of a converted (or any transformers Mask2Former) folder.

    The folder holds `config.json` and `model.safetensors` (or, for hub snapshots, `pytorch_model.bin`, read
    with `weights_only=True`).
    """
    from safetensors.torch import load_file
    from transformers import Mask2FormerConfig

    if not (folder / CONFIG_FILE).is_file():
        raise GenEvalWeightsError(f"{folder} has no {CONFIG_FILE}; expected a transformers Mask2Former folder")
    config = Mask2FormerConfig.from_pretrained(str(folder))
    if (folder / WEIGHTS_FILE).is_file():
        return config, load_file(str(folder / WEIGHTS_FILE))
    legacy = folder / "pytorch_model.bin"
    if legacy.is_file():
        return config, torch.load(legacy, map_location="cpu", weights_only=True)
    raise GenEvalWeightsError(f"{folder} has no {WEIGHTS_FILE} (or pytorch_model.bin)")
