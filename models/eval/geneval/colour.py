"""GenEval's colour classifier: zero-shot CLIP ViT-L-14 (OpenAI weights, through open_clip) on each object's masked crop.

As GenEval's `evaluate_images.py` does it (with clip-benchmark's zero-shot helpers):
    crop    the image with everything outside the object's mask painted grey (#999), cropped to its box
    text    per class, one embedding per colour: the mean of the normalised embeddings of 3 templates
            ("a photo of a {colour} {object}", "… {colour}-colored {object}", "… {colour} object"), normalised
    verdict the colour whose text embedding has the largest dot product with the crop's normalised embedding
On CUDA both encoders run under fp16 autocast, as clip-benchmark's defaults (`amp=True`) ran them for GenEval;
on the CPU in fp32. Crops are batched 16 at a time (GenEval's DataLoader batch).
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.nn import functional as F

from models.errors import GenEvalWeightsError, MissingColourError
from models.eval.geneval.detector_weights import WeightsFile
from models.eval.geneval.rules import COLOURS, Detection

if TYPE_CHECKING:
    from PIL import Image

logger = logging.getLogger(__name__)

CLIP_MODEL, CLIP_PRETRAINED = "ViT-L-14", "openai"
TEMPLATES = ("a photo of a {c} {obj}", "a photo of a {c}-colored {obj}", "a photo of a {c} object")
BACKGROUND = "#999"  # GenEval's `bgcolor` option: the grey painted outside the object's mask
CROP_BATCH = 16
LOGIT_SCALE = 100.0  # clip-benchmark's fixed scale; it does not change the argmax
OPEN_CLIP_CONFIG = "open_clip_config.json"  # marks an open_clip model folder (any architecture)


@dataclass(frozen=True)
class ClipInfo:
    """Which CLIP classifies colours: the architecture, the pretrained tag (or None for a folder), the weights."""

    model: str
    pretrained: str | None
    weights: WeightsFile

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "pretrained": self.pretrained, "weights": self.weights.to_json()}


def masked_crop(image: "Image.Image", detection: Detection) -> "Image.Image":
    """The object's pixels on grey, cropped to its box (PIL rounds the box's corners, as in GenEval)."""
    from PIL import Image

    rgb = image.convert("RGB")
    if detection.mask is not None:
        mask = np.asarray(detection.mask, dtype=bool)
        if mask.shape != (rgb.height, rgb.width):
            raise MissingColourError(f"a mask of shape {mask.shape} does not fit a {rgb.width}x{rgb.height} image")
        rgb = Image.composite(rgb, Image.new("RGB", rgb.size, color=BACKGROUND), Image.fromarray(mask))
    return rgb.crop(detection.box)


class ColourClassifier:
    """Zero-shot colour of detected objects; `bind(image)` gives the `colour_of` callback `rules.evaluate` takes."""

    def __init__(self, model: torch.nn.Module, preprocess: Callable, tokenizer: Callable, device: torch.device, info: ClipInfo):
        self.model = model
        self.preprocess = preprocess
        self.tokenizer = tokenizer
        self.device = device
        self.info = info
        self._text: dict[str, torch.Tensor] = {}

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16, enabled=self.device.type == "cuda")

    @torch.no_grad()
    def text_weights(self, class_name: str) -> torch.Tensor:
        """[D, 10]: one normalised text embedding per colour for objects of `class_name` (cached per class)."""
        if class_name not in self._text:
            columns = []
            with self._autocast():
                for colour in COLOURS:
                    texts = [template.format(c=colour, obj=class_name) for template in TEMPLATES]
                    embeddings = self.model.encode_text(self.tokenizer(texts).to(self.device))
                    mean = F.normalize(embeddings, dim=-1).mean(dim=0)
                    columns.append(mean / mean.norm())
            self._text[class_name] = torch.stack(columns, dim=1)
        return self._text[class_name]

    @torch.no_grad()
    def classify(self, image: "Image.Image", detections: list[Detection], class_name: str) -> list[str]:
        """The colour of each detection of `class_name` in `image`, one of `rules.COLOURS`."""
        weights = self.text_weights(class_name)
        colours: list[str] = []
        for start in range(0, len(detections), CROP_BATCH):
            crops = [self.preprocess(masked_crop(image, d)) for d in detections[start : start + CROP_BATCH]]
            with self._autocast():
                features = F.normalize(self.model.encode_image(torch.stack(crops).to(self.device)), dim=-1)
                logits = LOGIT_SCALE * features @ weights
            colours.extend(COLOURS[index] for index in logits.float().argmax(dim=1).tolist())
        return colours

    def bind(self, image: "Image.Image") -> Callable[[Detection, str], str]:
        """The `colour_of(detection, class_name)` of one image (GenEval's colour clauses ask one object at a time)."""
        return lambda detection, class_name: self.classify(image, [detection], class_name)[0]


def load_colour_classifier(weights: Path | None = None, device: torch.device | str = "cpu") -> ColourClassifier:
    """GenEval's CLIP: open_clip ViT-L-14 with OpenAI's weights, or other weights.

    Args:
        weights: None → open_clip's `pretrained="openai"` file (downloaded into the Hugging Face cache once);
            a file → ViT-L-14 weights (QuickGELU, as OpenAI's model uses); a folder with `open_clip_config.json`
            → that open_clip model, any architecture.
        device: where the model runs.

    Raises:
        GenEvalWeightsError: the weights are missing or cannot be fetched.
    """
    import open_clip

    device = torch.device(device)
    if weights is not None and not weights.exists():
        raise GenEvalWeightsError(f"{weights}: no such file or folder (--clip-weights)")
    if weights is not None and weights.is_dir():
        if not (weights / OPEN_CLIP_CONFIG).is_file():
            raise GenEvalWeightsError(f"{weights} has no {OPEN_CLIP_CONFIG}; expected an open_clip model folder")
        name = f"local-dir:{weights}"
        model, _, preprocess = open_clip.create_model_and_transforms(name, device=device)
        checkpoint = open_clip.factory._find_checkpoint_in_dir(weights)
        if checkpoint is None:
            raise GenEvalWeightsError(f"{weights} has no weights file next to its {OPEN_CLIP_CONFIG}")
        info = ClipInfo(str(weights), None, WeightsFile.of(Path(checkpoint)))
        return ColourClassifier(model.eval(), preprocess, open_clip.get_tokenizer(name), device, info)
    path, tag = weights, None
    if path is None:
        tag = CLIP_PRETRAINED
        try:
            path = Path(open_clip.pretrained.download_pretrained(open_clip.get_pretrained_cfg(CLIP_MODEL, tag)))
        except (OSError, RuntimeError) as error:  # no network, offline, or not in the cache
            raise GenEvalWeightsError(
                f"could not get open_clip's {CLIP_MODEL} '{tag}' weights ({error}); pass a local copy with --clip-weights"
            ) from None
    # OpenAI's ViT-L-14 uses QuickGELU; open_clip sets it from the 'openai' tag, but not for a plain file.
    model, _, preprocess = open_clip.create_model_and_transforms(
        CLIP_MODEL, pretrained=str(path), force_quick_gelu=True, device=device
    )
    info = ClipInfo(CLIP_MODEL, tag, WeightsFile.of(path))
    return ColourClassifier(model.eval(), preprocess, open_clip.get_tokenizer(CLIP_MODEL), device, info)
