"""Tiny stand-ins for GenEval's weights, built by the tests: an mmdetection Mask2Former state dict with mmdetection's
key names and shapes (any size, GenEval's by default), and a tiny open_clip model folder.

The key patterns follow mmdetection 2.x (`SwinTransformer`, `MSDeformAttnPixelDecoder`, `Mask2FormerHead` with
mmcv's `BaseTransformerLayer`: `attentions.N`, `ffns.0.layers.0.0`, `norms.N`) and are written out here from those
modules' structure, independently of the converter; `layout="3.x"` renames them as mmdetection 3.x does.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import torch


@dataclass(frozen=True)
class MmdetShape:
    """The size of an mmdetection Swin Mask2Former; the defaults are GenEval's Swin-S COCO model."""

    embed_dim: int = 96
    depths: tuple[int, ...] = (2, 2, 18, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: int = 4
    feat: int = 256
    out: int = 256
    encoder_layers: int = 6
    encoder_ffn: int = 1024
    heads: int = 8
    queries: int = 100
    decoder_layers: int = 9
    decoder_ffn: int = 2048
    num_classes: int = 80


# A Mask2Former small enough for CPU tests: 2 blocks in the first stage (so one is shifted), GroupNorm's 32 groups.
TINY = MmdetShape(embed_dim=8, depths=(2, 1, 1, 1), num_heads=(1, 1, 2, 2), window_size=3, mlp_ratio=2, feat=32,
                  out=32, encoder_layers=1, encoder_ffn=16, heads=2, queries=6, decoder_layers=2, decoder_ffn=16,
                  num_classes=80)


FAVOURED_LOGIT = 20.0


def mmdet_relative_index(window: int) -> torch.Tensor:
    """Swin's relative-position index as mmdetection's WindowMSA builds it (`double_step_seq`, then flipped)."""
    seq1 = torch.arange(0, (2 * window - 1) * window, 2 * window - 1)
    seq2 = torch.arange(0, window, 1)
    coords = (seq1[:, None] + seq2[None, :]).reshape(1, -1)
    return (coords + coords.T).flip(1).contiguous()


def mmdet_mask2former_state_dict(
    shape: MmdetShape = MmdetShape(), *, device: str = "cpu", seed: int = 0, layout: str = "2.x"
) -> dict[str, torch.Tensor]:
    """Every key of an mmdetection Mask2Former instance checkpoint, with random values (`device="meta"`: shapes only)."""
    generator = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def put(name: str, *dims: int, kind: str = "matrix") -> None:
        if device == "meta":
            sd[name] = torch.empty(dims, device="meta")
        elif kind == "norm":
            sd[name] = 1 + 0.1 * torch.randn(dims, generator=generator)
        elif kind == "bias":
            sd[name] = 0.1 * torch.randn(dims, generator=generator)
        else:
            fan_in = max(1, torch.Size(dims[1:]).numel())
            sd[name] = torch.randn(dims, generator=generator) * fan_in**-0.5

    def linear(name: str, out: int, inp: int) -> None:
        put(f"{name}.weight", out, inp)
        put(f"{name}.bias", out, kind="bias")

    def norm(name: str, width: int) -> None:
        put(f"{name}.weight", width, kind="norm")
        put(f"{name}.bias", width, kind="bias")

    s, e = shape, shape.embed_dim
    put("backbone.patch_embed.projection.weight", e, 3, 4, 4)
    put("backbone.patch_embed.projection.bias", e, kind="bias")
    norm("backbone.patch_embed.norm", e)
    widths = [e * 2**i for i in range(len(s.depths))]
    for stage, (depth, heads, width) in enumerate(zip(s.depths, s.num_heads, widths)):
        for block in range(depth):
            b = f"backbone.stages.{stage}.blocks.{block}"
            norm(f"{b}.norm1", width)
            put(f"{b}.attn.w_msa.relative_position_bias_table", (2 * s.window_size - 1) ** 2, heads)
            sd[f"{b}.attn.w_msa.relative_position_index"] = (
                torch.empty((s.window_size**2,) * 2, dtype=torch.long, device="meta")
                if device == "meta" else mmdet_relative_index(s.window_size)
            )
            linear(f"{b}.attn.w_msa.qkv", 3 * width, width)
            linear(f"{b}.attn.w_msa.proj", width, width)
            norm(f"{b}.norm2", width)
            linear(f"{b}.ffn.layers.0.0", s.mlp_ratio * width, width)
            linear(f"{b}.ffn.layers.1", width, s.mlp_ratio * width)
        if stage < len(s.depths) - 1:
            norm(f"backbone.stages.{stage}.downsample.norm", 4 * width)
            put(f"backbone.stages.{stage}.downsample.reduction.weight", 2 * width, 4 * width)
        norm(f"backbone.norm{stage}", width)

    p = "panoptic_head.pixel_decoder"
    for i in range(3):  # from the lowest resolution: stage 3, 2, 1
        put(f"{p}.input_convs.{i}.conv.weight", s.feat, widths[3 - i], 1, 1)
        put(f"{p}.input_convs.{i}.conv.bias", s.feat, kind="bias")
        norm(f"{p}.input_convs.{i}.gn", s.feat)
    for layer in range(s.encoder_layers):
        lay = f"{p}.encoder.layers.{layer}"
        linear(f"{lay}.attentions.0.sampling_offsets", s.heads * 3 * 4 * 2, s.feat)
        linear(f"{lay}.attentions.0.attention_weights", s.heads * 3 * 4, s.feat)
        linear(f"{lay}.attentions.0.value_proj", s.feat, s.feat)
        linear(f"{lay}.attentions.0.output_proj", s.feat, s.feat)
        linear(f"{lay}.ffns.0.layers.0.0", s.encoder_ffn, s.feat)
        linear(f"{lay}.ffns.0.layers.1", s.feat, s.encoder_ffn)
        norm(f"{lay}.norms.0", s.feat)
        norm(f"{lay}.norms.1", s.feat)
    put(f"{p}.level_encoding.weight", 3, s.feat, kind="norm")
    put(f"{p}.lateral_convs.0.conv.weight", s.feat, widths[0], 1, 1)
    norm(f"{p}.lateral_convs.0.gn", s.feat)
    put(f"{p}.output_convs.0.conv.weight", s.feat, s.feat, 3, 3)
    norm(f"{p}.output_convs.0.gn", s.feat)
    put(f"{p}.mask_feature.weight", s.out, s.feat, 1, 1)
    put(f"{p}.mask_feature.bias", s.out, kind="bias")

    h = "panoptic_head"
    for layer in range(s.decoder_layers):
        lay = f"{h}.transformer_decoder.layers.{layer}"
        for attention in (0, 1):  # cross-attention, then self-attention
            put(f"{lay}.attentions.{attention}.attn.in_proj_weight", 3 * s.feat, s.feat)
            put(f"{lay}.attentions.{attention}.attn.in_proj_bias", 3 * s.feat, kind="bias")
            linear(f"{lay}.attentions.{attention}.attn.out_proj", s.feat, s.feat)
        linear(f"{lay}.ffns.0.layers.0.0", s.decoder_ffn, s.feat)
        linear(f"{lay}.ffns.0.layers.1", s.feat, s.decoder_ffn)
        for index in range(3):
            norm(f"{lay}.norms.{index}", s.feat)
    norm(f"{h}.transformer_decoder.post_norm", s.feat)
    put(f"{h}.query_embed.weight", s.queries, s.feat, kind="norm")
    put(f"{h}.query_feat.weight", s.queries, s.feat, kind="norm")
    put(f"{h}.level_embed.weight", 3, s.feat, kind="norm")
    linear(f"{h}.cls_embed", s.num_classes + 1, s.feat)
    linear(f"{h}.mask_embed.0", s.feat, s.feat)
    linear(f"{h}.mask_embed.2", s.feat, s.feat)
    linear(f"{h}.mask_embed.4", s.out, s.feat)
    return sd if layout == "2.x" else to_mmdet3_names(sd)


def to_mmdet3_names(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """mmdetection 3.x's names for a 2.x state dict (its `tools/model_converters` renaming)."""
    renamed = {}
    for name, tensor in state_dict.items():
        if ".pixel_decoder.encoder.layers." in name:
            name = name.replace("attentions.0", "self_attn")
        name = name.replace("ffns.0", "ffn")
        if ".transformer_decoder.layers." in name:
            name = name.replace("attentions.0", "cross_attn").replace("attentions.1", "self_attn")
        renamed[name] = tensor
    return renamed


def save_mmdet_checkpoint(path: Path, shape: MmdetShape = TINY, seed: int = 0, favour: str | None = None) -> Path:
    """A `.pth` as mmdetection writes it: `meta` (with a numpy seed and the classes) and `state_dict`.

    `favour` names a COCO class (mmdetection's name) every query then predicts with near certainty, so random
    weights still give detections above GenEval's thresholds.
    """
    import numpy as np

    from models.eval.geneval.detector_convert import MMDET_COCO_CLASSES

    state_dict = mmdet_mask2former_state_dict(shape, seed=seed)
    if favour is not None:
        state_dict["panoptic_head.cls_embed.bias"][MMDET_COCO_CLASSES.index(favour)] = FAVOURED_LOGIT
    meta = {"mmdet_version": "2.24.0", "seed": np.int64(1234), "CLASSES": MMDET_COCO_CLASSES, "iter": 368750}
    torch.save({"meta": meta, "state_dict": state_dict}, path)
    return path


# ----------------------------------------------------------------------------------------------------
# A tiny open_clip model
# ----------------------------------------------------------------------------------------------------

TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "quick_gelu": True,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def write_tiny_clip_folder(folder: Path, seed: int = 0) -> Path:
    """An open_clip model folder (`open_clip_config.json` + `open_clip_model.safetensors`) with random weights."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.model.CLIP(
        embed_dim=TINY_CLIP_CONFIG["embed_dim"],
        vision_cfg=open_clip.model.CLIPVisionCfg(**TINY_CLIP_CONFIG["vision_cfg"]),
        text_cfg=open_clip.model.CLIPTextCfg(**TINY_CLIP_CONFIG["text_cfg"]),
        quick_gelu=True,
    )
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP_CONFIG, "preprocess_cfg": {}}))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    return folder
