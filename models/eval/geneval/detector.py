"""The object detectors GenEval can score with, behind one interface: `detect(image) -> {class: [Detection]}`.

Backends (each names itself and its weights, with their SHA-256, in `info`):
    geneval-mask2former  GenEval's own detector: mmdetection's Swin-S Mask2Former checkpoint converted once into
                         transformers' layout, run with mmdetection's test-time pipeline (`mask2former.py`)
    mmdetection          the same checkpoint through mmdetection itself, when `import mmdet` works (the reference)
    hf-mask2former       `facebook/mask2former-swin-small-coco-instance`, trained with Detectron2: same
                         architecture and classes, other weights; results say "not GenEval's detector"

Detections are raw: every instance the detector reports (GenEval's config keeps 100), best first per class;
`rules.filter_detections` applies GenEval's thresholds. Class names are GenEval's (`GENEVAL_CLASS_NAMES`).
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import torch

from models.errors import GenEvalWeightsError
from models.eval.geneval.detector_convert import GENEVAL_CLASS_NAMES
from models.eval.geneval.detector_weights import (
    SOURCE_FILE,
    WEIGHTS_FILE,
    WeightsFile,
    convert_once,
    default_detector_checkpoint,
    read_converted,
    read_torch_checkpoint,
)
from models.eval.geneval.mask2former import build_instance_net, instances, prepare_image
from models.eval.geneval.rules import Detection

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

GENEVAL_BACKEND, MMDET_BACKEND, HF_BACKEND = "geneval-mask2former", "mmdetection", "hf-mask2former"
BACKENDS = (GENEVAL_BACKEND, MMDET_BACKEND, HF_BACKEND)
HF_DETECTOR_REPO = "facebook/mask2former-swin-small-coco-instance"
NOT_GENEVAL_NOTE = "not GenEval's detector: Detectron2-trained weights, scores are not comparable with GenEval's"
# GenEval's detector config, looked up inside the mmdetection package as GenEval's evaluate_images.py does.
MMDET_CONFIG = Path("configs", "mask2former", "mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.py")


@dataclass(frozen=True)
class DetectorInfo:
    """What a backend is and which weights it runs: the file the user gave (or the hub's) and, for a converted
    checkpoint, the file actually loaded."""

    backend: str
    weights: WeightsFile
    converted: WeightsFile | None = None
    note: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "weights": self.weights.to_json(),
            "converted": self.converted.to_json() if self.converted else None,
            "note": self.note,
        }


class Detector(Protocol):
    """An object detector for GenEval: raw detections per GenEval class name, best first."""

    info: DetectorInfo

    def detect(self, image: "Image.Image") -> dict[str, list[Detection]]: ...

    def detect_batch(self, images: list["Image.Image"]) -> list[dict[str, list[Detection]]]: ...


def _detections(labels, scores, boxes, masks, names: tuple[str, ...]) -> dict[str, list[Detection]]:
    """Group instances by class name, keeping their order (best first within each class)."""
    found: dict[str, list[Detection]] = {}
    for label, score, box, mask in zip(labels, scores, boxes, masks):
        found.setdefault(names[int(label)], []).append(
            Detection(box=tuple(float(v) for v in box), score=float(score), mask=mask)
        )
    for group in found.values():
        group.sort(key=lambda detection: -detection.score)
    return found


# ----------------------------------------------------------------------------------------------------
# transformers' Mask2Former (geneval-mask2former, hf-mask2former)
# ----------------------------------------------------------------------------------------------------


class Mask2FormerDetector:
    """transformers' Mask2Former run with mmdetection's test-time pipeline, one image or a batch of equal sizes."""

    def __init__(self, net: torch.nn.Module, info: DetectorInfo, device: torch.device, names=GENEVAL_CLASS_NAMES):
        self.net = net
        self.info = info
        self.device = device
        self.names = names

    def detect(self, image: "Image.Image") -> dict[str, list[Detection]]:
        return self.detect_batch([image])[0]

    @torch.no_grad()
    def detect_batch(self, images: list["Image.Image"]) -> list[dict[str, list[Detection]]]:
        """Detections of several images; images of one size share a forward pass (GenEval's are all one size).

        Images of different sizes run one at a time: mmdetection pads a batch to its largest image, which would
        change a smaller image's features and position encodings.
        """
        prepared = [prepare_image(image, self.device) for image in images]
        groups: dict[tuple[int, int], list[int]] = {}
        for index, item in enumerate(prepared):
            groups.setdefault(item.original, []).append(index)
        results: list[dict[str, list[Detection]] | None] = [None] * len(images)
        for indices in groups.values():
            class_logits, mask_logits = self.net(torch.cat([prepared[i].pixels for i in indices]))
            for row, index in enumerate(indices):
                found = instances(class_logits[row], mask_logits[row], prepared[index])
                results[index] = _detections(
                    found.labels.tolist(), found.scores.tolist(), found.boxes.tolist(),
                    list(found.masks.cpu().numpy()), self.names,
                )
        return results


def geneval_mask2former(weights: Path | None, device: torch.device) -> Mask2FormerDetector:
    """GenEval's checkpoint in transformers: a `.pth` (converted once into the lina cache, default: the cached
    `…-743b7d99.pth`) or a folder a conversion wrote."""
    source = weights if weights is not None else default_detector_checkpoint()
    if source.is_dir():
        config, state_dict = read_converted(source)
        loaded = WeightsFile.of(source / WEIGHTS_FILE)
        origin = _recorded_source(source) or loaded
    else:
        converted = convert_once(source)
        config, state_dict = read_converted(converted.folder)
        origin, loaded = converted.source, WeightsFile.of(converted.weights)
    net = build_instance_net(config, state_dict, device)
    return Mask2FormerDetector(net, DetectorInfo(GENEVAL_BACKEND, origin, loaded), device)


def _recorded_source(folder: Path) -> WeightsFile | None:
    import json

    record = folder / SOURCE_FILE
    if not record.is_file():
        return None
    data = json.loads(record.read_text(encoding="utf-8"))
    return WeightsFile(Path(data["name"]), data["sha256"])


def hf_mask2former(weights: Path | None, device: torch.device, offline: bool = False) -> Mask2FormerDetector:
    """`facebook/mask2former-swin-small-coco-instance` from a folder or the Hugging Face cache (downloaded
    unless offline), with the same test-time pipeline."""
    folder = weights
    if folder is None:
        from models.pipeline.hub import download_model

        folder = download_model(HF_DETECTOR_REPO, include=["config.json", WEIGHTS_FILE], offline=offline).path
    config, state_dict = read_converted(folder)
    if config.num_labels != len(GENEVAL_CLASS_NAMES):
        raise GenEvalWeightsError(
            f"{folder} predicts {config.num_labels} classes; GenEval needs a COCO instance model (80 classes)"
        )
    net = build_instance_net(config, state_dict, device)
    weights_file = WeightsFile.of(folder / WEIGHTS_FILE)
    return Mask2FormerDetector(net, DetectorInfo(HF_BACKEND, weights_file, note=NOT_GENEVAL_NOTE), device)


# ----------------------------------------------------------------------------------------------------
# mmdetection itself (the reference)
# ----------------------------------------------------------------------------------------------------


class MmdetDetector:
    """GenEval's detector through mmdetection's own `init_detector` / `inference_detector`."""

    def __init__(self, checkpoint: Path, device: torch.device):
        import mmdet
        from mmdet.apis import init_detector

        read_torch_checkpoint(checkpoint)  # refuse a file with objects other than tensors before mmcv unpickles it
        config = Path(mmdet.__file__).parent.parent / MMDET_CONFIG
        self.model = init_detector(str(config), str(checkpoint), device=str(device))
        self.info = DetectorInfo(MMDET_BACKEND, WeightsFile.of(checkpoint))

    @torch.no_grad()
    def detect(self, image: "Image.Image") -> dict[str, list[Detection]]:
        from mmdet.apis import inference_detector
        from PIL import ImageOps

        bgr = np.ascontiguousarray(np.asarray(ImageOps.exif_transpose(image).convert("RGB"))[:, :, ::-1])
        boxes, masks = inference_detector(self.model, bgr)
        found: dict[str, list[Detection]] = {}
        for name, rows, class_masks in zip(GENEVAL_CLASS_NAMES, boxes, masks):
            for row, mask in zip(rows, class_masks):
                found.setdefault(name, []).append(
                    Detection(box=tuple(float(v) for v in row[:4]), score=float(row[4]), mask=np.asarray(mask))
                )
        for group in found.values():
            group.sort(key=lambda detection: -detection.score)
        return found

    def detect_batch(self, images: list["Image.Image"]) -> list[dict[str, list[Detection]]]:
        """One image at a time, as GenEval calls `inference_detector`."""
        return [self.detect(image) for image in images]


def mmdet_detector(weights: Path | None, device: torch.device) -> MmdetDetector:
    try:
        import mmdet  # noqa: F401
    except ImportError:
        raise GenEvalWeightsError(
            "the mmdetection backend needs mmdetection 2.x (GenEval's: mmdet 2.27 with mmcv-full 1.7); "
            f"`import mmdet` failed here. Use --detector {GENEVAL_BACKEND}, the same checkpoint without mmdetection"
        ) from None
    return MmdetDetector(weights if weights is not None else default_detector_checkpoint(), device)


def build_detector(
    backend: str = GENEVAL_BACKEND,
    weights: Path | str | None = None,
    device: torch.device | str = "cpu",
    *,
    offline: bool = False,
) -> Detector:
    """The detector of a backend (`BACKENDS`), on `device`.

    Args:
        backend: geneval-mask2former (default), mmdetection or hf-mask2former.
        weights: geneval-mask2former and mmdetection: GenEval's `.pth` (default: in the lina cache);
            geneval-mask2former also takes a converted folder; hf-mask2former: a transformers Mask2Former folder
            (default: the hub model, from the Hugging Face cache).
        device: where the network runs.
        offline: hf-mask2former only: never download.

    Raises:
        GenEvalWeightsError: unknown backend, missing weights, mmdetection not importable.
    """
    device = torch.device(device)
    weights = Path(weights) if weights is not None else None
    if backend == GENEVAL_BACKEND:
        return geneval_mask2former(weights, device)
    if backend == HF_BACKEND:
        return hf_mask2former(weights, device, offline)
    if backend == MMDET_BACKEND:
        return mmdet_detector(weights, device)
    raise GenEvalWeightsError(f"unknown detector backend {backend!r}; choose one of {', '.join(BACKENDS)}")
