"""Mask2Former instance segmentation as mmdetection runs it at test time, on transformers' network.

Three parts, each as mmdetection 2.27 (GenEval's version) does it for GenEval's config (the test pipeline of
`mask2former_r50_lsj_8x2_50e_coco.py`, `MaskFormerHead.simple_test`, `MaskFormerFusionHead.instance_postprocess`):
    `prepare_image`   RGB uint8 → resize keeping the aspect ratio into 1333×800 (cv2 bilinear on uint8), pad
                      bottom/right with grey 128 to a multiple of 32, then normalise with ImageNet's mean/std
                      (0–255 scale); GenEval's square 512 and 1024 px images become 800×800 and need no padding
    `InstanceNet`     transformers' Mask2Former network and class head; the last decoder layer's class logits
                      [Q, K+1] and mask logits [Q, h/4, w/4]
    `instances`       masks upsampled to the padded input, cropped, resized to the image; the 100 best
                      (query, class) pairs by softmax score (no-object dropped); mask > 0 as the binary mask; score
                      = class score × the mean sigmoid inside the mask; box = the mask's extent (x2 = last + 1)

Resize: mmdetection resizes with OpenCV (`cv2.resize`, INTER_LINEAR), whose 8-bit path is fixed-point arithmetic;
`resize_uint8` reproduces it bit for bit in numpy (checked against OpenCV 5.0 for 512→800, 1024→800 and odd
sizes), where a float bilinear resize rounded to uint8 differs by one level on about 12 % of the values.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

if TYPE_CHECKING:
    from PIL import Image
    from transformers import Mask2FormerConfig

# mmdetection's test pipeline for GenEval's config.
TEST_SCALE = (1333, 800)  # (long edge, short edge) limits of `Resize(img_scale=(1333, 800), keep_ratio=True)`
PIXEL_MEAN = (123.675, 116.28, 103.53)  # img_norm_cfg, RGB, on the 0–255 scale
PIXEL_STD = (58.395, 57.12, 57.375)
SIZE_DIVISOR = 32  # Pad(size_divisor=32, pad_val=128), before Normalize
PAD_VALUE = 128
MAX_PER_IMAGE = 100  # test_cfg.max_per_image
MASK_SCORE_EPS = 1e-6  # instance_postprocess's guard against empty masks
RESIZE_COEF = 2048  # OpenCV's INTER_RESIZE_COEF_SCALE: 11-bit fixed-point interpolation weights


@dataclass(frozen=True)
class PreparedImage:
    """One network input [1, 3, Hp, Wp] and the three shapes mmdetection's post-processing needs."""

    pixels: torch.Tensor
    resized: tuple[int, int]  # img_shape (h, w) after resizing, before padding
    original: tuple[int, int]  # ori_shape (h, w)

    @property
    def padded(self) -> tuple[int, int]:
        return tuple(self.pixels.shape[-2:])


@dataclass(frozen=True)
class Instances:
    """Instance predictions of one image, best first: labels [N], scores [N], boxes [N, 4] (x1, y1, x2, y2),
    masks [N, H, W] (bool, the original image size)."""

    labels: torch.Tensor
    scores: torch.Tensor
    boxes: torch.Tensor
    masks: torch.Tensor


# ----------------------------------------------------------------------------------------------------
# Test-time input
# ----------------------------------------------------------------------------------------------------


def rescaled_size(width: int, height: int, scale: tuple[int, int] = TEST_SCALE) -> tuple[int, int]:
    """(w, h) after mmcv's `rescale_size`: the largest factor keeping the long edge ≤ scale's larger value and the
    short edge ≤ its smaller one, rounded half up."""
    factor = min(max(scale) / max(height, width), min(scale) / min(height, width))
    return int(width * factor + 0.5), int(height * factor + 0.5)


def _taps(source: int, target: int, clamp: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """OpenCV's linear taps along one axis: the two source indices of each target pixel and their fixed-point
    weights. The source position is computed in float32 as OpenCV does; columns clamp it at the edges (weight 0
    on the far tap), rows only clamp the indices, keeping the weights of the unclamped position."""
    position = ((np.arange(target, dtype=np.float64) + 0.5) * (source / target) - 0.5).astype(np.float32)
    first = np.floor(position).astype(np.int64)
    fraction = (position - first.astype(np.float32)).astype(np.float32)
    if clamp:
        edge = (first < 0) | (first >= source - 1)
        fraction[edge] = 0
        first = np.where(first < 0, 0, np.where(first >= source - 1, source - 1, first))
    far = np.rint(fraction.astype(np.float64) * RESIZE_COEF).astype(np.int64)  # cvRound: half to even
    near = np.rint((np.float32(1) - fraction).astype(np.float64) * RESIZE_COEF).astype(np.int64)
    return np.clip(first, 0, source - 1), np.clip(first + 1, 0, source - 1), near, far


def resize_uint8(rgb: np.ndarray, width: int, height: int) -> np.ndarray:
    """`cv2.resize(rgb, (width, height), interpolation=cv2.INTER_LINEAR)` on an [H, W, 3] uint8 image, bit for bit.

    mmcv's `imresize` calls it for mmdetection. OpenCV resizes 8-bit images in fixed point: each row is first
    interpolated horizontally with 11-bit weights into integers, then rows are blended with 11-bit weights by its
    vectorised kernel: ((S0 >> 4)·b0 >> 16) + ((S1 >> 4)·b1 >> 16), rounded by (· + 2) >> 2. An exact halving
    is an average of 2×2 pixels instead (OpenCV switches INTER_LINEAR to INTER_AREA there).
    """
    source_h, source_w = rgb.shape[:2]
    pixels = rgb.astype(np.int64)
    if (source_w, source_h) == (2 * width, 2 * height):
        quads = pixels[0::2, 0::2] + pixels[0::2, 1::2] + pixels[1::2, 0::2] + pixels[1::2, 1::2]
        return ((quads + 2) >> 2).astype(np.uint8)
    x0, x1, a0, a1 = _taps(source_w, width, clamp=True)
    y0, y1, b0, b1 = _taps(source_h, height, clamp=False)
    rows = pixels[:, x0] * a0[None, :, None] + pixels[:, x1] * a1[None, :, None]  # [H, width, 3], weights sum 2048
    top = ((rows[y0] >> 4) * b0[:, None, None]) >> 16
    bottom = ((rows[y1] >> 4) * b1[:, None, None]) >> 16
    return np.clip((top + bottom + 2) >> 2, 0, 255).astype(np.uint8)


def prepare_image(image: "Image.Image", device: torch.device | str = "cpu") -> PreparedImage:
    """mmdetection's test pipeline for one PIL image (EXIF orientation applied, as OpenCV's reader does)."""
    from PIL import ImageOps

    rgb = np.array(ImageOps.exif_transpose(image).convert("RGB"))  # a writable copy, torch reads it in place
    height, width = rgb.shape[:2]
    new_width, new_height = rescaled_size(width, height)
    resized = rgb if (new_width, new_height) == (width, height) else resize_uint8(rgb, new_width, new_height)
    pad = (0, -new_width % SIZE_DIVISOR, 0, -new_height % SIZE_DIVISOR)
    padded = F.pad(torch.from_numpy(np.ascontiguousarray(resized)).permute(2, 0, 1), pad, value=PAD_VALUE)
    # mmcv's imnormalize: subtract the mean, multiply by 1/std, both cast to float32 first
    mean = torch.tensor(PIXEL_MEAN, dtype=torch.float32)[:, None, None]
    std_inverse = torch.tensor([1 / s for s in PIXEL_STD], dtype=torch.float64).float()[:, None, None]
    pixels = (padded.float() - mean) * std_inverse  # [3, Hp, Wp]
    return PreparedImage(pixels[None].to(device), (new_height, new_width), (height, width))


# ----------------------------------------------------------------------------------------------------
# The network
# ----------------------------------------------------------------------------------------------------


class InstanceNet(nn.Module):
    """`Mask2FormerForUniversalSegmentation` for inference: the same `model` and `class_predictor` (same state-dict
    names), without the training loss, whose matcher needs scipy.

    Its state dict is the converted checkpoint's without `criterion.empty_weight` (the loss's class weights).
    """

    def __init__(self, config: "Mask2FormerConfig"):
        super().__init__()
        from transformers import Mask2FormerModel

        self.model = Mask2FormerModel(config)
        self.class_predictor = nn.Linear(config.hidden_dim, config.num_labels + 1)

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits [B, Q, K+1] and mask logits [B, Q, Hp/4, Wp/4] of the last decoder layer."""
        outputs = self.model(pixel_values=pixels, return_dict=True)
        # the class head reads the last layer's output after the decoder's layer norm, as the mask head does
        hidden = self.model.transformer_module.decoder.layernorm(outputs.transformer_decoder_last_hidden_state)
        return self.class_predictor(hidden), outputs.masks_queries_logits[-1]


def build_instance_net(
    config: "Mask2FormerConfig", state_dict: dict[str, torch.Tensor], device: torch.device | str
) -> InstanceNet:
    """An `InstanceNet` with `state_dict` loaded strictly (extra `criterion.*` entries are the loss's, ignored).

    Built on the CPU rather than the meta device: the Swin layers compute non-persistent index buffers at
    construction, which loading a state dict would not fill.
    """
    net = InstanceNet(config)
    weights = {name: tensor for name, tensor in state_dict.items() if not name.startswith("criterion.")}
    net.load_state_dict(weights, strict=True)
    return net.to(device=device, dtype=torch.float32).eval().requires_grad_(False)


# ----------------------------------------------------------------------------------------------------
# Post-processing
# ----------------------------------------------------------------------------------------------------


def mask_to_boxes(masks: torch.Tensor) -> torch.Tensor:
    """[N, H, W] bool → [N, 4] (x1, y1, x2, y2) float: first and last+1 occupied column and row; 0s for an empty mask
    (mmdetection's `mask2bbox`)."""
    boxes = masks.new_zeros((masks.shape[0], 4), dtype=torch.float32)
    if masks.shape[0] == 0:
        return boxes
    columns, rows = masks.any(dim=1), masks.any(dim=2)  # [N, W], [N, H]
    present = columns.any(dim=1)
    width, height = masks.shape[2], masks.shape[1]
    column_index = torch.arange(width, device=masks.device)
    row_index = torch.arange(height, device=masks.device)
    x1 = torch.where(columns, column_index, width).amin(dim=1)
    x2 = torch.where(columns, column_index, -1).amax(dim=1) + 1
    y1 = torch.where(rows, row_index, height).amin(dim=1)
    y2 = torch.where(rows, row_index, -1).amax(dim=1) + 1
    stacked = torch.stack([x1, y1, x2, y2], dim=1).float()
    return torch.where(present[:, None], stacked, boxes)


def instances(
    class_logits: torch.Tensor,
    mask_logits: torch.Tensor,
    image: PreparedImage,
    max_per_image: int = MAX_PER_IMAGE,
) -> Instances:
    """mmdetection's instance results of one image from its [Q, K+1] class and [Q, h, w] mask logits.

    The (query, class) pairs are ranked by score; mmdetection's unsorted top-k leaves their order open, and
    GenEval sorts each class's detections by score anyway.
    """
    num_classes = class_logits.shape[-1] - 1
    masks = F.interpolate(mask_logits[None], size=image.padded, mode="bilinear", align_corners=False)
    masks = masks[:, :, : image.resized[0], : image.resized[1]]
    masks = F.interpolate(masks, size=image.original, mode="bilinear", align_corners=False)[0]
    scores = F.softmax(class_logits, dim=-1)[:, :-1].flatten()
    top_scores, top = scores.topk(min(max_per_image, scores.numel()), sorted=True)
    labels = top % num_classes
    chosen = masks[top // num_classes]
    binary = chosen > 0
    mask_scores = (chosen.sigmoid() * binary).flatten(1).sum(1) / (binary.flatten(1).sum(1) + MASK_SCORE_EPS)
    return Instances(labels, top_scores * mask_scores, mask_to_boxes(binary), binary)
