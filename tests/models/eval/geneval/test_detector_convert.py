"""The mmdetection → transformers Mask2Former converter on random state dicts with mmdetection's key names and shapes:
every key mapped, nothing left over, shapes checked, strict loading; the re-ordered Swin tensors against an
mmdetection-style forward written here; both key layouts; GenEval's full-size architecture on the meta device."""

import importlib.util
import math

import pytest
import torch
from torch.nn import functional as F

from models.errors import DetectorConversionError
from models.eval.geneval.detector_convert import (
    FILLED_KEYS,
    GENEVAL_CLASS_NAMES,
    MMDET_COCO_CLASSES,
    convert_checkpoint,
    expected_shapes,
    normalise_keys,
    swin_relative_index,
)
from models.eval.geneval.mask2former import build_instance_net
from tests.models.eval.geneval.factories import TINY, MmdetShape, mmdet_mask2former_state_dict, mmdet_relative_index


@pytest.fixture(scope="module")
def tiny():
    state_dict = mmdet_mask2former_state_dict(TINY, seed=3)
    config, converted = convert_checkpoint(state_dict)
    return state_dict, config, converted


def test_every_key_maps_and_loads_strictly(tiny):
    state_dict, config, converted = tiny
    assert {name: tuple(t.shape) for name, t in converted.items()} == expected_shapes(config)
    net = build_instance_net(config, converted, "cpu")  # strict: raises on any missing or unexpected key
    assert len(net.state_dict()) == len(converted) - 1  # all but the loss's class weights
    # every copied tensor arrives unchanged under its new name
    assert torch.equal(converted["class_predictor.weight"], state_dict["panoptic_head.cls_embed.weight"])
    assert torch.equal(
        converted["model.pixel_level_module.decoder.encoder.layers.0.self_attn.sampling_offsets.weight"],
        state_dict["panoptic_head.pixel_decoder.encoder.layers.0.attentions.0.sampling_offsets.weight"],
    )
    assert torch.equal(converted["criterion.empty_weight"][-1], torch.tensor(0.1))
    assert config.num_labels == 80 and config.decoder_layers == TINY.decoder_layers + 1
    assert config.backbone_config.depths == list(TINY.depths)


@pytest.mark.skipif(importlib.util.find_spec("scipy") is None, reason="transformers' Mask2Former loss needs scipy")
def test_loads_into_transformers_universal_segmentation(tiny):
    from transformers import Mask2FormerForUniversalSegmentation

    _, config, converted = tiny
    reference = Mask2FormerForUniversalSegmentation(config)
    reference.load_state_dict(converted, strict=True)
    net = build_instance_net(config, converted, "cpu")  # the same network and head, without the loss
    pixels = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = reference.eval()(pixel_values=pixels)
        class_logits, mask_logits = net(pixels)
    torch.testing.assert_close(class_logits, expected.class_queries_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mask_logits, expected.masks_queries_logits, rtol=1e-5, atol=1e-5)


def test_genevals_full_size_checkpoint_maps_on_the_meta_device():
    state_dict = mmdet_mask2former_state_dict(MmdetShape(), device="meta")
    config, converted = convert_checkpoint(state_dict)
    swin = config.backbone_config
    assert (swin.embed_dim, swin.depths, swin.num_heads, swin.window_size) == (96, [2, 2, 18, 2], [3, 6, 12, 24], 7)
    assert (config.hidden_dim, config.num_queries, config.decoder_layers, config.encoder_layers) == (256, 100, 10, 6)
    assert (config.num_attention_heads, config.dim_feedforward, config.encoder_feedforward_dim) == (8, 2048, 1024)
    assert config.id2label[0] == "person" and len(config.id2label) == 80
    # 24 Swin blocks: 24 index buffers dropped, 24 qkv and 9 decoder in_proj pairs split into three
    assert len(state_dict) == 649 and len(converted) == 649 - 24 + 2 * 2 * (24 + 9) + len(FILLED_KEYS)


def test_mmdetection_3_names_convert_to_the_same_tensors(tiny):
    state_dict, _, converted = tiny
    renamed = mmdet_mask2former_state_dict(TINY, seed=3, layout="3.x")
    assert normalise_keys(renamed)[1] == "3.x" and normalise_keys(state_dict)[1] == "2.x"
    _, again = convert_checkpoint(renamed)
    assert again.keys() == converted.keys()
    assert all(torch.equal(again[name], converted[name]) for name in converted)


def test_a_leftover_key_is_named():
    state_dict = mmdet_mask2former_state_dict(TINY)
    state_dict["panoptic_head.extra.weight"] = torch.zeros(2)
    with pytest.raises(DetectorConversionError, match=r"1 key\(s\).*panoptic_head\.extra\.weight"):
        convert_checkpoint(state_dict)


def test_a_missing_tensor_is_named():
    state_dict = mmdet_mask2former_state_dict(TINY)
    del state_dict["panoptic_head.transformer_decoder.layers.1.norms.2.bias"]
    with pytest.raises(DetectorConversionError, match=r"1 missing: .*layers\.1\.final_layer_norm\.bias"):
        convert_checkpoint(state_dict)


def test_a_wrong_shape_is_named():
    state_dict = mmdet_mask2former_state_dict(TINY)
    state_dict["panoptic_head.mask_embed.2.bias"] = torch.zeros(7)
    with pytest.raises(DetectorConversionError, match=r"of another shape: .*mask_embedder\.1\.0\.bias: \(7,\)"):
        convert_checkpoint(state_dict)


def test_a_wrong_relative_position_index_is_refused():
    state_dict = mmdet_mask2former_state_dict(TINY)
    state_dict["backbone.stages.0.blocks.0.attn.w_msa.relative_position_index"] += 1
    with pytest.raises(DetectorConversionError, match="relative-position index"):
        convert_checkpoint(state_dict)


@pytest.mark.parametrize("window", [3, 7])
def test_relative_index_matches_mmdetections_formula(window):
    assert torch.equal(swin_relative_index(window), mmdet_relative_index(window))


def test_geneval_class_names_are_mmdetections_with_three_renamed():
    assert len(GENEVAL_CLASS_NAMES) == 80
    differ = {(a, b) for a, b in zip(MMDET_COCO_CLASSES, GENEVAL_CLASS_NAMES) if a != b}
    assert differ == {("mouse", "computer mouse"), ("remote", "tv remote"), ("keyboard", "computer keyboard")}


# ----------------------------------------------------------------------------------------------------
# Numerics: mmdetection's Swin (written here from its modules) against transformers' with the converted weights
# ----------------------------------------------------------------------------------------------------


def mmdet_window_attention(sd, prefix, x, hw, heads, window, shift):
    """mmdetection's ShiftWindowMSA + WindowMSA on [B, H·W, C]."""
    batch, _, channels = x.shape
    height, width = hw
    x = x.view(batch, height, width, channels)
    x = F.pad(x, (0, 0, 0, (window - width % window) % window, 0, (window - height % window) % window))
    hp, wp = x.shape[1:3]
    mask = None
    if shift:
        x = torch.roll(x, (-shift, -shift), (1, 2))
        regions = torch.zeros(1, hp, wp, 1)
        slices = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
        for count, (h, w) in enumerate((h, w) for h in slices for w in slices):
            regions[:, h, w, :] = count
        mask = partition(regions, window).view(-1, window * window)
        mask = (mask[:, None] - mask[:, :, None]).ne(0).float() * -100.0
    windows = partition(x, window).view(-1, window * window, channels)
    n = window * window
    qkv = (windows @ sd[f"{prefix}.qkv.weight"].T + sd[f"{prefix}.qkv.bias"]).reshape(-1, n, 3, heads, channels // heads)
    q, k, v = qkv.permute(2, 0, 3, 1, 4)
    attn = (q * (channels // heads) ** -0.5) @ k.transpose(-2, -1)
    bias = sd[f"{prefix}.relative_position_bias_table"][sd[f"{prefix}.relative_position_index"].view(-1)]
    attn = attn + bias.view(n, n, -1).permute(2, 0, 1)[None]
    if mask is not None:
        attn = (attn.view(batch, -1, heads, n, n) + mask[None, :, None]).view(-1, heads, n, n)
    out = (attn.softmax(-1) @ v).transpose(1, 2).reshape(-1, n, channels)
    out = out @ sd[f"{prefix}.proj.weight"].T + sd[f"{prefix}.proj.bias"]
    out = out.view(-1, window, window, channels)
    out = out.view(batch, hp // window, wp // window, window, window, channels).permute(0, 1, 3, 2, 4, 5)
    out = out.reshape(batch, hp, wp, channels)
    if shift:
        out = torch.roll(out, (shift, shift), (1, 2))
    return out[:, :height, :width].reshape(batch, height * width, channels)


def partition(x, window):
    batch, height, width, channels = x.shape
    x = x.view(batch, height // window, window, width // window, window, channels)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window, window, channels)


def layer_norm(sd, prefix, x):
    return F.layer_norm(x, x.shape[-1:], sd[f"{prefix}.weight"], sd[f"{prefix}.bias"])


def mmdet_swin(sd, pixels, shape: MmdetShape):
    """mmdetection's SwinTransformer.forward: the four normalised stage outputs [B, C, H, W]."""
    x = F.conv2d(pixels, sd["backbone.patch_embed.projection.weight"], sd["backbone.patch_embed.projection.bias"], stride=4)
    batch, channels, height, width = x.shape
    x = layer_norm(sd, "backbone.patch_embed.norm", x.flatten(2).transpose(1, 2))
    outs = []
    for stage, (depth, heads) in enumerate(zip(shape.depths, shape.num_heads)):
        for block in range(depth):
            p = f"backbone.stages.{stage}.blocks.{block}"
            shift = shape.window_size // 2 if block % 2 else 0
            x = x + mmdet_window_attention(sd, f"{p}.attn.w_msa", layer_norm(sd, f"{p}.norm1", x), (height, width),
                                           heads, shape.window_size, shift)
            hidden = F.gelu(layer_norm(sd, f"{p}.norm2", x) @ sd[f"{p}.ffn.layers.0.0.weight"].T
                            + sd[f"{p}.ffn.layers.0.0.bias"])
            x = x + hidden @ sd[f"{p}.ffn.layers.1.weight"].T + sd[f"{p}.ffn.layers.1.bias"]
        out = layer_norm(sd, f"backbone.norm{stage}", x)
        outs.append(out.view(batch, height, width, channels).permute(0, 3, 1, 2))
        if stage < len(shape.depths) - 1:  # PatchMerging: nn.Unfold(2, stride 2) after bottom/right padding
            grid = F.pad(x.view(batch, height, width, channels).permute(0, 3, 1, 2), (0, width % 2, 0, height % 2))
            merged = F.unfold(grid, kernel_size=2, stride=2).transpose(1, 2)
            merged = layer_norm(sd, f"backbone.stages.{stage}.downsample.norm", merged)
            x = merged @ sd[f"backbone.stages.{stage}.downsample.reduction.weight"].T
            height, width, channels = math.ceil(height / 2), math.ceil(width / 2), 2 * channels
    return outs


def test_swin_backbone_matches_mmdetections_forward(tiny):
    state_dict, config, converted = tiny
    net = build_instance_net(config, converted, "cpu")
    pixels = torch.randn(1, 3, 72, 88, generator=torch.Generator().manual_seed(0))  # 18x22 tokens: every pad path
    with torch.no_grad():
        ours = net.model.pixel_level_module.encoder(pixels).feature_maps
        reference = mmdet_swin(state_dict, pixels, TINY)
    for stage, (a, b) in enumerate(zip(ours, reference)):
        assert a.shape == b.shape, stage
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, msg=f"stage {stage}")


def test_decoder_self_attention_matches_torch_multihead_attention(tiny):
    state_dict, config, converted = tiny
    net = build_instance_net(config, converted, "cpu")
    prefix = "panoptic_head.transformer_decoder.layers.1.attentions.1.attn"
    reference = torch.nn.MultiheadAttention(TINY.feat, TINY.heads)
    reference.load_state_dict({
        "in_proj_weight": state_dict[f"{prefix}.in_proj_weight"], "in_proj_bias": state_dict[f"{prefix}.in_proj_bias"],
        "out_proj.weight": state_dict[f"{prefix}.out_proj.weight"], "out_proj.bias": state_dict[f"{prefix}.out_proj.bias"],
    })
    generator = torch.Generator().manual_seed(1)
    queries, positions = torch.randn(2, TINY.queries, 1, TINY.feat, generator=generator)
    with torch.no_grad():
        expected = reference(queries + positions, queries + positions, queries)[0]
        ours = net.model.transformer_module.decoder.layers[1].self_attn(queries, position_embeddings=positions)[0]
    torch.testing.assert_close(ours, expected, rtol=1e-5, atol=1e-5)
