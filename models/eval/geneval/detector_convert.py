"""GenEval's detector, mmdetection's Mask2Former checkpoint, converted into transformers' Mask2Former layout.

GenEval scores with mmdetection's `mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco` (Swin-S backbone, multi-scale
deformable-attention pixel decoder, 9-layer masked-attention decoder, 100 queries, 80 COCO things + no-object).
`convert_checkpoint` maps every tensor of its state dict onto the names and shapes of transformers'
`Mask2FormerForUniversalSegmentation`; the architecture is read from the tensors' shapes, so any Swin
Mask2Former instance checkpoint of mmdetection converts. Both key layouts are read: mmdetection 2.x
(`attentions.0`, `ffns.0`, what the `…-743b7d99.pth` file holds) and 3.x (`self_attn`, `cross_attn`, `ffn`).

Where a tensor is not copied as it is:
    Swin `qkv`                 one (3C, C) matrix → transformers' separate q/k/v projections (rows split in order)
    Swin `relative_position_index`   a buffer, checked equal to transformers' own index, then dropped
    Swin patch merging         mmdetection gathers each 2×2 patch with `nn.Unfold` (channel c·4 + position);
                               transformers concatenates the four positions (position·C + c), in the order
                               (0,0), (1,0), (0,1), (1,1): the reduction's columns and the norm are permuted
    decoder self-attention     `nn.MultiheadAttention.in_proj_*` → q/k/v projections (cross-attention stays one)
Tensors transformers has and mmdetection does not (`FILLED_KEYS`): the Swin model's final `layernorm`, which
transformers' backbone never applies (identity values), and the training loss's class weights (1 per class,
0.1 for no-object, as mmdetection's `loss_cls.class_weight`).
"""

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from models.errors import DetectorConversionError

if TYPE_CHECKING:
    from transformers import Mask2FormerConfig

# mmdetection's CocoDataset.CLASSES: the detector's 80 output classes, in its order.
MMDET_COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip
# GenEval's `evaluation/object_names.txt`: the same classes in the same order (it indexes mmdetection's per-class
# results with it), three renamed so prompts read naturally.
GENEVAL_RENAMED = {"mouse": "computer mouse", "remote": "tv remote", "keyboard": "computer keyboard"}
GENEVAL_CLASS_NAMES = tuple(GENEVAL_RENAMED.get(name, name) for name in MMDET_COCO_CLASSES)

NO_OBJECT_WEIGHT = 0.1  # mmdetection's loss_cls.class_weight for the no-object class (1.0 for the others)
# transformers' pixel decoder hard-codes 3 encoder levels with 4 sampling points each.
ENCODER_LEVELS, ENCODER_POINTS = 3, 4
SWIN_STAGES = 4
FILLED_KEYS = (
    "model.pixel_level_module.encoder.swin.layernorm.weight",
    "model.pixel_level_module.encoder.swin.layernorm.bias",
    "criterion.empty_weight",
)
# The order transformers' patch merging concatenates the 2×2 positions in, as mmdetection's unfold positions
# (row·2 + column): (0,0)→0, (1,0)→2, (0,1)→1, (1,1)→3. The permutation is its own inverse.
MERGE_ORDER = (0, 2, 1, 3)

_BACKBONE = "model.pixel_level_module.encoder."
_SWIN = _BACKBONE + "swin."
_PIXEL = "model.pixel_level_module.decoder."
_MODULE = "model.transformer_module."
_DECODER = _MODULE + "decoder."


@dataclass(frozen=True)
class Mask2FormerShape:
    """The architecture of an mmdetection Swin Mask2Former, as read from its tensors."""

    embed_dim: int
    patch_size: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_size: int
    mlp_ratio: float
    feature_size: int
    mask_feature_size: int
    encoder_layers: int
    encoder_feedforward_dim: int
    attention_heads: int
    hidden_dim: int
    num_queries: int
    decoder_layers: int  # mmdetection's count; transformers counts one more (the prediction before layer 0)
    dim_feedforward: int
    num_labels: int
    input_projection: bool

    def transformers_config(self) -> "Mask2FormerConfig":
        """The transformers config that builds this architecture (eval mode: no drop-path)."""
        from transformers import Mask2FormerConfig, SwinConfig

        names = MMDET_COCO_CLASSES if self.num_labels == len(MMDET_COCO_CLASSES) else None
        backbone = SwinConfig(
            embed_dim=self.embed_dim, depths=list(self.depths), num_heads=list(self.num_heads),
            window_size=self.window_size, mlp_ratio=self.mlp_ratio, patch_size=self.patch_size, drop_path_rate=0.0,
            out_features=[f"stage{i + 1}" for i in range(len(self.depths))],
        )
        return Mask2FormerConfig(
            backbone_config=backbone, feature_size=self.feature_size, mask_feature_size=self.mask_feature_size,
            hidden_dim=self.hidden_dim, encoder_layers=self.encoder_layers,
            encoder_feedforward_dim=self.encoder_feedforward_dim, num_attention_heads=self.attention_heads,
            num_queries=self.num_queries, decoder_layers=self.decoder_layers + 1, dim_feedforward=self.dim_feedforward,
            enforce_input_projection=self.input_projection, no_object_weight=NO_OBJECT_WEIGHT,
            id2label={i: names[i] if names else f"class_{i}" for i in range(self.num_labels)},
        )


# ----------------------------------------------------------------------------------------------------
# Reading the state dict
# ----------------------------------------------------------------------------------------------------


def normalise_keys(state_dict: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], str]:
    """The state dict with mmdetection 3.x names rewritten to 2.x ones, and which layout it was ("2.x"/"3.x").

    3.x renamed the transformer layers' parts: encoder `self_attn` was `attentions.0`, decoder `cross_attn` and
    `self_attn` were `attentions.0` and `attentions.1`, and `ffn` was `ffns.0`; nothing else changed.
    """
    renamed, layout = {}, "2.x"
    for name, tensor in state_dict.items():
        new = name
        if ".pixel_decoder.encoder.layers." in new:
            new = new.replace(".self_attn.", ".attentions.0.").replace(".ffn.", ".ffns.0.")
        elif ".transformer_decoder.layers." in new:  # the Swin blocks' `ffn` kept its name in both versions
            new = new.replace(".cross_attn.", ".attentions.0.").replace(".self_attn.", ".attentions.1.")
            new = new.replace(".ffn.", ".ffns.0.")
        if new != name:
            layout = "3.x"
        if new in renamed:
            raise DetectorConversionError(f"the checkpoint holds both {name!r} and its 2.x name {new!r}")
        renamed[new] = tensor
    return renamed, layout


def _count(state_dict: dict[str, torch.Tensor], pattern: str) -> int:
    """1 + the largest integer captured by `pattern` over the keys (0 when no key matches)."""
    found = [int(m.group(1)) for key in state_dict if (m := re.fullmatch(pattern, key))]
    return max(found) + 1 if found else 0


def _tensor(state_dict: dict[str, torch.Tensor], key: str) -> torch.Tensor:
    if key not in state_dict:
        raise DetectorConversionError(
            f"the checkpoint has no {key!r}; expected an mmdetection Mask2Former (Swin backbone) state dict"
        )
    return state_dict[key]


def read_shape(state_dict: dict[str, torch.Tensor]) -> Mask2FormerShape:
    """The architecture of an mmdetection Mask2Former state dict (2.x names), from its tensors' shapes.

    The decoder's attention heads are not stored in any tensor; they are taken equal to the pixel decoder's
    deformable-attention heads (8 and 8 in every mmdetection Mask2Former config), as transformers has one
    `num_attention_heads` for both.

    Raises:
        DetectorConversionError: a tensor the architecture needs is missing, or the layout is one transformers
            cannot build (not 4 Swin stages, not 3 encoder levels).
    """
    sd = state_dict
    patch = _tensor(sd, "backbone.patch_embed.projection.weight")
    embed_dim, patch_size = patch.shape[0], patch.shape[-1]
    stages = _count(sd, r"backbone\.stages\.(\d+)\..*")
    if stages != SWIN_STAGES:
        raise DetectorConversionError(f"the Swin backbone has {stages} stages; transformers' Mask2Former needs 4")
    depths = tuple(_count(sd, rf"backbone\.stages\.{s}\.blocks\.(\d+)\..*") for s in range(stages))
    tables = [_tensor(sd, f"backbone.stages.{s}.blocks.0.attn.w_msa.relative_position_bias_table") for s in range(stages)]
    window_size = (math.isqrt(tables[0].shape[0]) + 1) // 2
    hidden_ffn = _tensor(sd, "backbone.stages.0.blocks.0.ffn.layers.0.0.weight").shape[0]
    prefix = "panoptic_head.pixel_decoder."
    levels = _count(sd, rf"{re.escape(prefix)}input_convs\.(\d+)\..*")
    if levels != ENCODER_LEVELS:
        raise DetectorConversionError(f"the pixel decoder reads {levels} levels; transformers' Mask2Former reads 3")
    attention_out = _tensor(sd, f"{prefix}encoder.layers.0.attentions.0.attention_weights.weight").shape[0]
    query_feat = _tensor(sd, "panoptic_head.query_feat.weight")
    return Mask2FormerShape(
        embed_dim=embed_dim,
        patch_size=patch_size,
        depths=depths,
        num_heads=tuple(table.shape[1] for table in tables),
        window_size=window_size,
        mlp_ratio=hidden_ffn / embed_dim,
        feature_size=_tensor(sd, f"{prefix}input_convs.0.conv.weight").shape[0],
        mask_feature_size=_tensor(sd, f"{prefix}mask_feature.weight").shape[0],
        encoder_layers=_count(sd, rf"{re.escape(prefix)}encoder\.layers\.(\d+)\..*"),
        encoder_feedforward_dim=_tensor(sd, f"{prefix}encoder.layers.0.ffns.0.layers.0.0.weight").shape[0],
        attention_heads=attention_out // (ENCODER_LEVELS * ENCODER_POINTS),
        hidden_dim=query_feat.shape[1],
        num_queries=query_feat.shape[0],
        decoder_layers=_count(sd, r"panoptic_head\.transformer_decoder\.layers\.(\d+)\..*"),
        dim_feedforward=_tensor(sd, "panoptic_head.transformer_decoder.layers.0.ffns.0.layers.0.0.weight").shape[0],
        num_labels=_tensor(sd, "panoptic_head.cls_embed.weight").shape[0] - 1,
        input_projection=any(key.startswith("panoptic_head.decoder_input_projs.") for key in sd),
    )


# ----------------------------------------------------------------------------------------------------
# Tensor transforms
# ----------------------------------------------------------------------------------------------------


def _split3(tensor: torch.Tensor) -> list[torch.Tensor]:
    """q, k, v of a fused (3C, …) projection, in that order (mmdetection's and PyTorch's)."""
    return list(tensor.chunk(3, dim=0))


def _merge_columns(weight: torch.Tensor) -> torch.Tensor:
    """Patch-merging reduction [O, 4C]: unfold column order (c·4 + p) → concatenation order (k·C + c)."""
    out, four_c = weight.shape
    by_position = weight.reshape(out, four_c // 4, 4).transpose(1, 2)  # [O, 4, C], position p = row·2 + column
    return by_position[:, list(MERGE_ORDER), :].reshape(out, four_c)


def _merge_vector(vector: torch.Tensor) -> torch.Tensor:
    """Patch-merging norm [4C], reordered as `_merge_columns` reorders the reduction's columns."""
    return _merge_columns(vector[None])[0]


def swin_relative_index(window_size: int) -> torch.Tensor:
    """The (W², W²) relative-position index of Swin's window attention (row offset · (2W − 1) + column offset)."""
    coords = torch.stack(torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")).flatten(1)
    offsets = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (window_size - 1)
    return offsets[..., 0] * (2 * window_size - 1) + offsets[..., 1]


# ----------------------------------------------------------------------------------------------------
# The key map
# ----------------------------------------------------------------------------------------------------

# One rule: an mmdetection (2.x) name pattern, and what it becomes: a list of (transformers name, tensor).
Handler = Callable[[re.Match, torch.Tensor], list[tuple[str, torch.Tensor]]]


def _to(template: str, transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Handler:
    """Copy (or transform) the tensor to `template` filled with the match's groups (`\\1`, `\\2`, …)."""
    return lambda m, t: [(m.expand(template), transform(t) if transform else t)]


def _qkv(template: str, names: tuple[str, str, str]) -> Handler:
    """Split a fused q/k/v tensor into three, `template` holding a `{}` for each projection's name."""
    return lambda m, t: [(m.expand(template.format(name)), part) for name, part in zip(names, _split3(t))]


def _checked_index(m: re.Match, index: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    window = math.isqrt(index.shape[0])
    if index.device.type != "meta" and not torch.equal(index.long().cpu(), swin_relative_index(window)):
        raise DetectorConversionError(f"{m.group(0)} is not Swin's relative-position index for a {window}-wide window")
    return []


_BLOCK = r"backbone\.stages\.(\d+)\.blocks\.(\d+)\."
_HF_BLOCK = _SWIN + r"encoder.layers.\1.blocks.\2."
_ENC = r"panoptic_head\.pixel_decoder\.encoder\.layers\.(\d+)\."
_HF_ENC = _PIXEL + r"encoder.layers.\1."
_DEC = r"panoptic_head\.transformer_decoder\.layers\.(\d+)\."
_HF_DEC = _DECODER + r"layers.\1."
_WB = r"(weight|bias)"

RULES: list[tuple[str, Handler]] = [
    # Swin backbone
    (r"backbone\.patch_embed\.projection\." + _WB, _to(_SWIN + r"embeddings.patch_embeddings.projection.\1")),
    (r"backbone\.patch_embed\.norm\." + _WB, _to(_SWIN + r"embeddings.norm.\1")),
    (_BLOCK + r"norm1\." + _WB, _to(_HF_BLOCK + r"layernorm_before.\3")),
    (_BLOCK + r"norm2\." + _WB, _to(_HF_BLOCK + r"layernorm_after.\3")),
    (_BLOCK + r"attn\.w_msa\.qkv\." + _WB, _qkv(_HF_BLOCK + r"attention.{}.\3", ("q_proj", "k_proj", "v_proj"))),
    (_BLOCK + r"attn\.w_msa\.proj\." + _WB, _to(_HF_BLOCK + r"attention.o_proj.\3")),
    (_BLOCK + r"attn\.w_msa\.relative_position_bias_table",
     _to(_HF_BLOCK + "attention.relative_position_bias.relative_position_bias_table")),
    (_BLOCK + r"attn\.w_msa\.relative_position_index", _checked_index),
    (_BLOCK + r"ffn\.layers\.0\.0\." + _WB, _to(_HF_BLOCK + r"mlp.fc1.\3")),
    (_BLOCK + r"ffn\.layers\.1\." + _WB, _to(_HF_BLOCK + r"mlp.fc2.\3")),
    (r"backbone\.stages\.(\d+)\.downsample\.reduction\.weight",
     _to(_SWIN + r"encoder.layers.\1.downsample.reduction.weight", _merge_columns)),
    (r"backbone\.stages\.(\d+)\.downsample\.norm\." + _WB,
     _to(_SWIN + r"encoder.layers.\1.downsample.norm.\2", _merge_vector)),
    (r"backbone\.norm(\d+)\." + _WB,
     lambda m, t: [(f"{_BACKBONE}hidden_states_norms.stage{int(m.group(1)) + 1}.{m.group(2)}", t)]),
    # pixel decoder: input projections, deformable-attention encoder, FPN level, mask features
    (r"panoptic_head\.pixel_decoder\.input_convs\.(\d+)\.conv\." + _WB, _to(_PIXEL + r"input_projections.\1.0.\2")),
    (r"panoptic_head\.pixel_decoder\.input_convs\.(\d+)\.gn\." + _WB, _to(_PIXEL + r"input_projections.\1.1.\2")),
    (r"panoptic_head\.pixel_decoder\.level_encoding\.weight", _to(_PIXEL + "level_embed")),
    (_ENC + r"attentions\.0\.(sampling_offsets|attention_weights|value_proj|output_proj)\." + _WB,
     _to(_HF_ENC + r"self_attn.\2.\3")),
    (_ENC + r"norms\.0\." + _WB, _to(_HF_ENC + r"self_attn_layer_norm.\2")),
    (_ENC + r"norms\.1\." + _WB, _to(_HF_ENC + r"final_layer_norm.\2")),
    (_ENC + r"ffns\.0\.layers\.0\.0\." + _WB, _to(_HF_ENC + r"fc1.\2")),
    (_ENC + r"ffns\.0\.layers\.1\." + _WB, _to(_HF_ENC + r"fc2.\2")),
    (r"panoptic_head\.pixel_decoder\.lateral_convs\.0\.conv\.weight", _to(_PIXEL + "adapter_1.0.weight")),
    (r"panoptic_head\.pixel_decoder\.lateral_convs\.0\.gn\." + _WB, _to(_PIXEL + r"adapter_1.1.\1")),
    (r"panoptic_head\.pixel_decoder\.output_convs\.0\.conv\.weight", _to(_PIXEL + "layer_1.0.weight")),
    (r"panoptic_head\.pixel_decoder\.output_convs\.0\.gn\." + _WB, _to(_PIXEL + r"layer_1.1.\1")),
    (r"panoptic_head\.pixel_decoder\.mask_feature\." + _WB, _to(_PIXEL + r"mask_projection.\1")),
    # masked-attention transformer decoder
    (r"panoptic_head\.query_embed\.weight", _to(_MODULE + "queries_embedder.weight")),
    (r"panoptic_head\.query_feat\.weight", _to(_MODULE + "queries_features.weight")),
    (r"panoptic_head\.level_embed\.weight", _to(_MODULE + "level_embed.weight")),
    (r"panoptic_head\.decoder_input_projs\.(\d+)\." + _WB, _to(_MODULE + r"input_projections.\1.\2")),
    (_DEC + r"attentions\.0\.attn\.in_proj_(weight|bias)", _to(_HF_DEC + r"cross_attn.in_proj_\2")),
    (_DEC + r"attentions\.0\.attn\.out_proj\." + _WB, _to(_HF_DEC + r"cross_attn.out_proj.\2")),
    (_DEC + r"attentions\.1\.attn\.in_proj_(weight|bias)", _qkv(_HF_DEC + r"self_attn.{}.\2", ("q_proj", "k_proj", "v_proj"))),
    (_DEC + r"attentions\.1\.attn\.out_proj\." + _WB, _to(_HF_DEC + r"self_attn.out_proj.\2")),
    (_DEC + r"norms\.0\." + _WB, _to(_HF_DEC + r"cross_attn_layer_norm.\2")),
    (_DEC + r"norms\.1\." + _WB, _to(_HF_DEC + r"self_attn_layer_norm.\2")),
    (_DEC + r"norms\.2\." + _WB, _to(_HF_DEC + r"final_layer_norm.\2")),
    (_DEC + r"ffns\.0\.layers\.0\.0\." + _WB, _to(_HF_DEC + r"fc1.\2")),
    (_DEC + r"ffns\.0\.layers\.1\." + _WB, _to(_HF_DEC + r"fc2.\2")),
    (r"panoptic_head\.transformer_decoder\.post_norm\." + _WB, _to(_DECODER + r"layernorm.\1")),
    (r"panoptic_head\.mask_embed\.([024])\." + _WB,
     lambda m, t: [(f"{_DECODER}mask_predictor.mask_embedder.{int(m.group(1)) // 2}.0.{m.group(2)}", t)]),
    (r"panoptic_head\.cls_embed\." + _WB, _to(r"class_predictor.\1")),
]
_COMPILED = [(re.compile(pattern), handler) for pattern, handler in RULES]


def map_keys(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every tensor of an mmdetection Mask2Former state dict (2.x names) under its transformers name.

    Raises:
        DetectorConversionError: keys no rule maps (all listed), or two keys mapped to one name.
    """
    converted: dict[str, torch.Tensor] = {}
    leftover = []
    for name, tensor in state_dict.items():
        match, handler = next(((m, h) for p, h in _COMPILED if (m := p.fullmatch(name))), (None, None))
        if match is None:
            leftover.append(name)
            continue
        for target, value in handler(match, tensor):
            if target in converted:
                raise DetectorConversionError(f"{name} maps onto {target}, which another key already filled")
            converted[target] = value
    if leftover:
        raise DetectorConversionError(
            f"{len(leftover)} key(s) of the checkpoint have no place in transformers' Mask2Former: {', '.join(leftover)}"
        )
    return converted


def filled_tensors(shape: Mask2FormerShape) -> dict[str, torch.Tensor]:
    """The tensors transformers' model has and the checkpoint does not (see `FILLED_KEYS`)."""
    last = shape.embed_dim * 2 ** (len(shape.depths) - 1)
    class_weight = torch.ones(shape.num_labels + 1)
    class_weight[-1] = NO_OBJECT_WEIGHT
    return dict(zip(FILLED_KEYS, (torch.ones(last), torch.zeros(last), class_weight)))


def expected_shapes(config: "Mask2FormerConfig") -> dict[str, tuple[int, ...]]:
    """Every name and shape of `Mask2FormerForUniversalSegmentation(config)`'s state dict, built on the meta device.

    Built as its two inference parts plus the loss's one buffer, so transformers' training-only dependency
    (scipy, for the loss's matcher) is not needed.
    """
    from transformers import Mask2FormerModel

    with torch.device("meta"):
        model = Mask2FormerModel(config)
    shapes = {f"model.{name}": tuple(tensor.shape) for name, tensor in model.state_dict().items()}
    shapes["class_predictor.weight"] = (config.num_labels + 1, config.hidden_dim)
    shapes["class_predictor.bias"] = (config.num_labels + 1,)
    shapes["criterion.empty_weight"] = (config.num_labels + 1,)
    return shapes


def convert_checkpoint(mmdet_state_dict: dict[str, torch.Tensor]) -> tuple["Mask2FormerConfig", dict[str, torch.Tensor]]:
    """Convert an mmdetection Mask2Former state dict into transformers' config and state dict.

    Args:
        mmdet_state_dict: the checkpoint's `state_dict` (2.x or 3.x names; a `module.` prefix is not expected).

    Returns:
        (config, state_dict): loads strictly into `Mask2FormerForUniversalSegmentation(config)`; tensors are
        contiguous, in the checkpoint's dtype.

    Raises:
        DetectorConversionError: a key left over, a tensor missing, or a shape that does not fit; every
            offending key is named.
    """
    state_dict, _ = normalise_keys(mmdet_state_dict)
    shape = read_shape(state_dict)
    config = shape.transformers_config()
    converted = {**map_keys(state_dict), **filled_tensors(shape)}
    wanted = expected_shapes(config)
    missing = sorted(set(wanted) - set(converted))
    unexpected = sorted(set(converted) - set(wanted))
    mismatched = [
        f"{name}: {tuple(converted[name].shape)} vs {wanted[name]}"
        for name in sorted(set(wanted) & set(converted))
        if tuple(converted[name].shape) != wanted[name]
    ]
    if missing or unexpected or mismatched:
        parts = [
            f"{len(missing)} missing: {', '.join(missing)}" if missing else "",
            f"{len(unexpected)} without a place: {', '.join(unexpected)}" if unexpected else "",
            f"{len(mismatched)} of another shape: {'; '.join(mismatched)}" if mismatched else "",
        ]
        raise DetectorConversionError("the converted checkpoint does not fit transformers' Mask2Former: "
                                      + " | ".join(part for part in parts if part))
    return config, {name: tensor.contiguous() for name, tensor in converted.items()}
