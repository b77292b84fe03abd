"""torch-fidelity's InceptionV3 (`inception-v3-compat`): its weights found, hash-checked and loaded safely, then run.

The network is torch-fidelity's `FeatureExtractorInceptionV3`, a port of the TensorFlow graph ADM's evaluator
uses (images resized to 299 with TF1's bilinear rule inside the module). Its weights come from a path, or from
torch-fidelity's own download (torch hub's cache, `checkpoints/weights-inception-2015-12-05-6726825d.pth`).
torch-fidelity reads weight files with `torch.load(weights_only=False)`; lina reads them with
`weights_only=True` and hands torch-fidelity an in-memory copy of the tensors it checked, nothing else.
"""

import io
import pickle
import urllib.error
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from models.constants import hub_offline
from models.errors import InceptionWeightsError, ReferenceUnavailableError
from models.eval.fid.constants import (
    INCEPTION_NAME,
    INCEPTION_WEIGHTS_NAMES,
    INCEPTION_WEIGHTS_SHA256,
    LOGIT_FEATURES,
    POOL_FEATURES,
    ProgressCallback,
)
from models.eval.fid.images import sha256_file

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class InceptionWeights:
    """A weights file and its SHA-256; `standard` when it is the file torch-fidelity publishes."""

    path: Path
    sha256: str
    standard: bool


@dataclass(frozen=True)
class Features:
    """Inception outputs of a set of images, in the set's order: pool_3 (N, 2048) and unbiased logits (N, 1008)."""

    pool: np.ndarray
    logits: np.ndarray


def inception_weights_url() -> str:
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3

    return URL_INCEPTION_V3


def default_weights_path() -> Path:
    """Where torch-fidelity's download puts the weights (torch hub's checkpoint cache, `TORCH_HOME`)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / inception_weights_url().rsplit("/", 1)[-1]


def resolve_inception_weights(path: Path | None, *, offline: bool = False) -> InceptionWeights:
    """The weights file to use, downloaded by torch-fidelity's mechanism when none is given and none is cached.

    Args:
        path: a weights file (`--inception-weights`), or None for torch-fidelity's standard file.
        offline: never download (also when `HF_HUB_OFFLINE` is set).

    Raises:
        InceptionWeightsError: the file is missing, or it is named like the standard file and its SHA-256 differs.
        ReferenceUnavailableError: the standard file is not cached and cannot be downloaded.
    """
    if path is None:
        path = default_weights_path()
        if not path.is_file():
            _download_standard_weights(path, offline)
    elif not Path(path).is_file():
        raise InceptionWeightsError(f"--inception-weights {path}: no such file")
    path = Path(path)
    digest = sha256_file(path)
    if path.name in INCEPTION_WEIGHTS_NAMES and digest != INCEPTION_WEIGHTS_SHA256:
        raise InceptionWeightsError(
            f"{path} is named like torch-fidelity's Inception weights but its SHA-256 is {digest}, not "
            f"{INCEPTION_WEIGHTS_SHA256}; delete it and download {inception_weights_url()} again"
        )
    return InceptionWeights(path, digest, digest == INCEPTION_WEIGHTS_SHA256)


def _download_standard_weights(path: Path, offline: bool) -> None:
    import torch.hub

    url = inception_weights_url()
    steps = (f"Download {url} on a machine with internet access and copy it to {path}, "
             "or pass the file with --inception-weights FILE")
    if offline or hub_offline():
        raise ReferenceUnavailableError(
            f"the Inception weights are not in torch hub's cache and offline mode is on. {steps}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # torch hub's downloader (the one torch-fidelity uses): a temp file, renamed once the hash matches.
        torch.hub.download_url_to_file(url, str(path), hash_prefix=INCEPTION_WEIGHTS_SHA256, progress=False)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        raise ReferenceUnavailableError(f"could not download the Inception weights ({error}). {steps}") from error
    except RuntimeError as error:  # torch hub's "invalid hash value"
        raise InceptionWeightsError(f"{url} did not match SHA-256 {INCEPTION_WEIGHTS_SHA256}: {error}") from error


def load_inception(weights: InceptionWeights, device: "str | torch.device") -> "torch.nn.Module":
    """torch-fidelity's FeatureExtractorInceptionV3 returning (pool_3, unbiased logits), on `device`, in eval mode."""
    import torch
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    try:
        state = torch.load(weights.path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise InceptionWeightsError(
            f"{weights.path} was refused: torch.load(weights_only=True) cannot read it as plain tensors ({error})"
        ) from error
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise InceptionWeightsError(f"{weights.path} does not hold a state dict of tensors")
    buffer = io.BytesIO()
    torch.save(state, buffer)  # only the tensors checked above reach torch-fidelity's unrestricted torch.load
    buffer.seek(0)
    try:
        model = FeatureExtractorInceptionV3(
            INCEPTION_NAME, [POOL_FEATURES, LOGIT_FEATURES], feature_extractor_weights_path=buffer
        )
    except RuntimeError as error:
        first_line = str(error).strip().splitlines()[0]
        message = f"{weights.path} does not fit torch-fidelity's InceptionV3: {first_line}"
        raise InceptionWeightsError(message) from error
    return model.to(device)


def extract_features(
    model: "torch.nn.Module",
    batches: Iterable[np.ndarray],
    count: int,
    device: "str | torch.device",
    *,
    task: str = "Inception features",
    progress: ProgressCallback | None = None,
) -> Features:
    """Run the network over uint8 batches (B, S, S, 3) and collect its outputs as float32 arrays.

    Args:
        model: from `load_inception`.
        batches: the images, in order.
        count: how many images the batches hold (for progress).
        device: where the model is.
        task, progress: progress is called as (task, images done, count).
    """
    import torch

    pools, logits = [], []
    done = 0
    with torch.inference_mode(), full_float32():
        for batch in batches:
            images = torch.tensor(batch).to(device).permute(0, 3, 1, 2).contiguous()  # (B, 3, S, S) uint8
            pool, logit = model(images)
            pools.append(pool.float().cpu().numpy())
            logits.append(logit.float().cpu().numpy())
            done += len(batch)
            if progress is not None:
                progress(task, done, count)
    return Features(np.concatenate(pools), np.concatenate(logits))


@contextmanager
def full_float32() -> Iterator[None]:
    """Turn TF32 off for cuDNN convolutions and matmuls (the TF graph ADM runs is float32), then restore.

    PyTorch lets cuDNN convolutions use TF32 by default on Ampere and newer GPUs, which moves Inception features
    by about 1e-3 relative. Only the newer `fp32_precision` switches are touched: reading the legacy
    `allow_tf32` flags after setting new ones is an error in recent PyTorch.
    """
    import torch

    conv, matmul = getattr(torch.backends.cudnn, "conv", None), torch.backends.cuda.matmul
    if not hasattr(conv, "fp32_precision"):  # older PyTorch has only the legacy flags
        saved = (torch.backends.cudnn.allow_tf32, matmul.allow_tf32)
        torch.backends.cudnn.allow_tf32 = matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, matmul.allow_tf32 = saved
        return
    saved = (conv.fp32_precision, matmul.fp32_precision)
    conv.fp32_precision = matmul.fp32_precision = "ieee"
    try:
        yield
    finally:
        conv.fp32_precision, matmul.fp32_precision = saved
