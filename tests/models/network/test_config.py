"""Configs: released parameter counts and state-dict layout (the authors' state dict), derived geometry, and errors."""

import math

import pytest
import torch

from models.errors import InvalidConfigError, UnknownArchError
from models.network.config import (
    ArchSpec,
    SchedulerConfig,
    TransformerConfig,
    VAEConfig,
    released_transformer_config,
)
from models.network.transformer import LinaTransformer

RELEASED = [("c2i", 256), ("t2i", 512), ("t2i", 1024)]
RELEASED_IDS = [f"{task}-{resolution}" for task, resolution in RELEASED]

# Parameter counts of the released configurations (verified by instantiating the authors' model).
EXPECTED_PARAMETERS = {("c2i", 256): 1_448_243_216, ("t2i", 512): 1_451_130_896, ("t2i", 1024): 1_453_096_976}
EXPECTED_KEY_COUNT = {"c2i": 721, "t2i": 723}


# ----------------------------------------------------------------------------------------------------
# The state dict of the authors' `NOVATransformer3DModel` (commit f13f7c3), written out here without the model code
# ----------------------------------------------------------------------------------------------------


def _block_keys(prefix: str, dim: int) -> dict[str, tuple[int, ...]]:
    """the authors' layout: the 12 keys of an encoder-mode block."""
    return {
        f"{prefix}.norm1.weight": (dim,),
        f"{prefix}.norm1.bias": (dim,),
        f"{prefix}.attn.qkv.weight": (3 * dim, dim),
        f"{prefix}.attn.qkv.bias": (3 * dim,),
        f"{prefix}.attn.proj.weight": (dim, dim),
        f"{prefix}.attn.proj.bias": (dim,),
        f"{prefix}.norm2.weight": (dim,),
        f"{prefix}.norm2.bias": (dim,),
        f"{prefix}.mlp.fc1.weight": (4 * dim, dim),
        f"{prefix}.mlp.fc1.bias": (4 * dim,),
        f"{prefix}.mlp.fc2.weight": (dim, 4 * dim),
        f"{prefix}.mlp.fc2.bias": (dim,),
    }


def _linear(name: str, out_dim: int, in_dim: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (out_dim, in_dim), f"{name}.bias": (out_dim,)}


def _layer_norm(name: str, dim: int) -> dict[str, tuple[int, ...]]:
    return {f"{name}.weight": (dim,), f"{name}.bias": (dim,)}


def spec_state_dict_shapes(task: str, resolution: int) -> dict[str, tuple[int, ...]]:
    """Every key and shape of a released checkpoint, from the released configs and the authors' module tree alone."""
    dim = width = 1536  # D and the head width W
    heads = 16
    channels, stride = (16, 16) if task == "c2i" else (4, 8)
    patch = 15 // stride + 1
    tokens = (resolution // stride // patch) ** 2
    context = (resolution // stride // (2 * patch)) ** 2
    token_dim = patch * patch * channels

    keys: dict[str, tuple[int, ...]] = {
        "video_encoder.patch_embed.proj.weight": (dim, channels, 2 * patch, 2 * patch),
        "video_encoder.patch_embed.proj.bias": (dim,),
    }
    for i in range(16):
        keys.update(_block_keys(f"video_encoder.blocks.{i}", dim))
    keys.update(_layer_norm("video_encoder.norm", dim))

    keys["image_encoder.patch_embed.proj.weight"] = (dim, channels, patch, patch)
    keys["image_encoder.patch_embed.proj.bias"] = (dim,)
    for i in range(32):
        keys.update(_block_keys(f"image_encoder.blocks.{i}", dim))
        if i >= 16:  # decoder-mode extras
            keys[f"image_encoder.blocks.{i}.attn.key_scale"] = (1, heads, context + tokens, 1)
            keys[f"image_encoder.blocks.{i}.attn.value_scale"] = (1, heads, context + tokens, 1)
            keys[f"image_encoder.blocks.{i}.attn.dw_conv.weight"] = (dim, 1, 5, 5)
            keys[f"image_encoder.blocks.{i}.attn.dw_conv.bias"] = (dim,)
    keys.update(_layer_norm("image_encoder.norm", dim))

    head = "image_decoder"
    keys[f"{head}.patch_embed.proj.weight"] = (width, channels, patch, patch)
    keys[f"{head}.patch_embed.proj.bias"] = (width,)
    keys.update(_linear(f"{head}.time_cond_embed.timestep_proj.fc1", width, 256))
    keys.update(_linear(f"{head}.time_cond_embed.timestep_proj.fc2", width, width))
    keys.update(_linear(f"{head}.time_cond_embed.condition_proj.fc1", width, dim))
    keys.update(_linear(f"{head}.time_cond_embed.condition_proj.fc2", width, width))
    for i in range(6):
        keys.update(_linear(f"{head}.blocks.{i}.norm1.proj", 3 * width, width))
        keys.update(_linear(f"{head}.blocks.{i}.proj.fc1", width, width))
        keys.update(_linear(f"{head}.blocks.{i}.proj.fc2", width, width))
        keys.update(_layer_norm(f"{head}.blocks.{i}.norm2", width))
    keys.update(_linear(f"{head}.norm.proj", 2 * width, width))
    keys.update(_linear(f"{head}.head", token_dim, width))

    keys["mask_embed.bos_token"] = (1, dim)
    keys["mask_embed.mask_token"] = (1, dim)
    if task == "c2i":
        keys["label_embed.weight"] = (1001, dim)
        keys.update(_layer_norm("label_embed.norm", dim))
    else:
        keys["text_embed.weight"] = (512, 2560)
        keys.update(_linear("text_embed.proj", dim, 2560))
        keys.update(_layer_norm("text_embed.norm", dim))
    keys.update(_layer_norm("video_pos_embed.norm", dim))
    keys.update(_linear("video_pos_embed.time_proj.0", dim, 256))
    keys.update(_linear("video_pos_embed.time_proj.2", dim, dim))
    return keys


def _meta_model(task: str, resolution: int) -> LinaTransformer:
    with torch.device("meta"):
        return LinaTransformer(released_transformer_config(task, resolution))


# ----------------------------------------------------------------------------------------------------
# Released configurations
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("task,resolution", RELEASED, ids=RELEASED_IDS)
def test_released_parameter_count(task, resolution):
    model = _meta_model(task, resolution)
    assert model.num_parameters() == EXPECTED_PARAMETERS[task, resolution]


@pytest.mark.parametrize("task,resolution", RELEASED, ids=RELEASED_IDS)
def test_released_state_dict_matches_spec(task, resolution):
    actual = {name: tuple(tensor.shape) for name, tensor in _meta_model(task, resolution).state_dict().items()}
    expected = spec_state_dict_shapes(task, resolution)
    assert len(actual) == EXPECTED_KEY_COUNT[task]
    assert len(expected) == EXPECTED_KEY_COUNT[task], "the key list written here is itself off"
    assert sorted(set(expected) - set(actual)) == [], "keys of the authors' layout missing from the model"
    assert sorted(set(actual) - set(expected)) == [], "keys the authors' layout does not have"
    wrong = {name: (actual[name], shape) for name, shape in expected.items() if actual[name] != shape}
    assert wrong == {}
    assert sum(1 for name in actual if name.startswith("image_decoder.")) == 62


@pytest.mark.parametrize("task,resolution", RELEASED, ids=RELEASED_IDS)
def test_spec_key_list_sums_to_parameter_count(task, resolution):
    """Cross-check of the numbers written here: the key list, less the text buffer, gives the published parameter count."""
    shapes = spec_state_dict_shapes(task, resolution)
    total = sum(math.prod(shape) for name, shape in shapes.items() if name != "text_embed.weight")
    assert total == EXPECTED_PARAMETERS[task, resolution]


def test_released_top_level_children_in_reference_order():
    """the authors' layout: children in the reference order, so state_dict() lists keys the same way."""
    order = {"c2i": [], "t2i": []}
    for task, resolution in (("c2i", 256), ("t2i", 512)):
        for name in _meta_model(task, resolution).state_dict():
            prefix = name.split(".")[0]
            if prefix not in order[task]:
                order[task].append(prefix)
    common = ["video_encoder", "image_encoder", "image_decoder", "mask_embed"]
    assert order["c2i"] == [*common, "label_embed", "video_pos_embed"]
    assert order["t2i"] == [*common, "text_embed", "video_pos_embed"]


def test_text_null_table_is_a_persistent_buffer():
    model = _meta_model("t2i", 512)
    assert "text_embed.weight" in model.state_dict()
    assert "text_embed.weight" not in dict(model.named_parameters())


# docs/architecture.md, "Geometry": (latent C×H×W, p, video patch, L, token grid, Lv, context grid, Lv+L, P, p²C).
GEOMETRY = {
    ("c2i", 256): ((16, 16, 16), 1, 2, 256, (16, 16), 64, (8, 8), 320, 1, 16),
    ("t2i", 512): ((4, 64, 64), 2, 4, 1024, (32, 32), 256, (16, 16), 1280, 256, 16),
    ("t2i", 1024): ((4, 128, 128), 2, 4, 4096, (64, 64), 1024, (32, 32), 5120, 256, 16),
}


@pytest.mark.parametrize("task,resolution", RELEASED, ids=RELEASED_IDS)
def test_released_geometry(task, resolution):
    latent, patch, video_patch, tokens, grid, context, context_grid, seq_len, cond_len, token_dim = GEOMETRY[
        task, resolution
    ]
    config = released_transformer_config(task, resolution)
    assert (config.image_dim, *config.latent_size) == latent
    assert config.patch_size == patch
    assert config.video_patch_size == video_patch
    assert config.num_image_tokens == tokens and config.token_grid == grid
    assert config.num_context_tokens == context and config.context_grid == context_grid
    assert config.decoder_seq_len == seq_len
    assert config.condition_len == cond_len
    assert config.token_dim == token_dim
    assert config.encoder_depth == 16
    assert config.task == task
    gate = _meta_model(task, resolution).state_dict()["image_encoder.blocks.16.attn.key_scale"]
    assert tuple(gate.shape) == (1, 16, seq_len, 1)


def test_released_config_unknown_resolution():
    with pytest.raises(InvalidConfigError, match="c2i"):
        released_transformer_config("c2i", 512)


# ----------------------------------------------------------------------------------------------------
# Parsing and errors
# ----------------------------------------------------------------------------------------------------


def _c2i_dict(**changes):
    data = released_transformer_config("c2i", 256).to_dict()
    for key in ("attention", "num_classes"):  # not in the official files
        data.pop(key)
    data.update(changes)
    return data


def test_from_dict_round_trip_and_bookkeeping_keys_ignored():
    data = _c2i_dict(_class_name="NOVATransformer3DModel", _diffusers_version="0.31.0")
    config = TransformerConfig.from_dict(data)
    assert config == released_transformer_config("c2i", 256)
    assert TransformerConfig.from_dict(config.to_dict()) == config


def test_from_dict_names_unknown_keys():
    with pytest.raises(InvalidConfigError, match="unknown keys.*'frobnicate'"):
        TransformerConfig.from_dict(_c2i_dict(frobnicate=1))


def test_from_dict_names_missing_keys():
    data = _c2i_dict()
    del data["image_stride"], data["arch"]
    with pytest.raises(InvalidConfigError, match=r"missing keys \['arch', 'image_stride'\]"):
        TransformerConfig.from_dict(data)


@pytest.mark.parametrize(
    "arch",
    [
        ("vit_x", "vit_d32w1536", "mlp_d6w1536"),
        ("vit_d16w1536", "vit_d32w1536", "mlp_d6"),
        ("mlp_d16w1536", "vit_d32w1536", "mlp_d6w1536"),  # wrong kind in the video-encoder slot
        ("vit_d16w1536", "vit_d32w1536", "vit_d6w1536"),  # wrong kind in the head slot
        ("vit_d0w1536", "vit_d32w1536", "mlp_d6w1536"),
    ],
    ids=["vit_x", "mlp_d6", "mlp-as-vit", "vit-as-mlp", "depth0"],
)
def test_unknown_arch(arch):
    with pytest.raises(UnknownArchError, match="arch"):
        TransformerConfig.from_dict(_c2i_dict(arch=list(arch)))


@pytest.mark.parametrize("width,heads", [(768, 12), (1024, 16), (1536, 16), (128, 2), (320, 5)])
def test_heads_rule(width, heads):
    assert ArchSpec.parse(f"vit_d2w{width}", "vit").num_heads == heads


@pytest.mark.parametrize(
    "changes,match",
    [
        ({"image_base_size": [8, 8]}, "image_base_size"),
        ({"video_base_size": [1, 16, 16]}, "video_base_size"),
        ({"image_size": [320, 320]}, "image_base_size"),  # 320 px → 20×20 tokens, base size still 16×16
        ({"image_size": [200, 200]}, "multiple of"),  # not a multiple of stride × video patch
        ({"rotary_pos_embed": True}, "rotary_pos_embed"),
        ({"video_mixer_rank": 4}, "video_mixer_rank"),
        ({"text_token_dim": 2560}, "text_token"),  # t2i half-set
    ],
    ids=["image_base", "video_base", "image_size", "image_size-unit", "rotary", "mixer", "text-half"],
)
def test_inconsistent_config(changes, match):
    with pytest.raises(InvalidConfigError, match=match):
        TransformerConfig.from_dict(_c2i_dict(**changes))


def test_vit_widths_must_agree():
    with pytest.raises(InvalidConfigError, match="same width"):
        TransformerConfig.from_dict(_c2i_dict(arch=["vit_d16w1024", "vit_d32w1536", "mlp_d6w1536"]))


# ----------------------------------------------------------------------------------------------------
# Scheduler and VAE configs
# ----------------------------------------------------------------------------------------------------


def test_scheduler_config_accepts_diffusers_defaults():
    from diffusers import FlowMatchEulerDiscreteScheduler

    written = dict(FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0).config)
    written.update(_class_name="FlowMatchEulerDiscreteScheduler", _diffusers_version="0.36.0")
    assert SchedulerConfig.from_dict(written) == SchedulerConfig(num_train_timesteps=1000, shift=3.0)


@pytest.mark.parametrize(
    "key,value",
    [("use_karras_sigmas", True), ("use_dynamic_shifting", True), ("invert_sigmas", True), ("shift_terminal", 0.1)],
)
def test_scheduler_config_refuses_non_neutral_options(key, value):
    with pytest.raises(InvalidConfigError, match=key):
        SchedulerConfig.from_dict({"num_train_timesteps": 1000, "shift": 1.0, key: value})


def test_scheduler_config_unknown_key():
    with pytest.raises(InvalidConfigError, match="prediction_kind"):
        SchedulerConfig.from_dict({"shift": 1.0, "prediction_kind": "flow"})


def test_vae_config_variant_from_class_name():
    mar = VAEConfig.from_dict(
        {"_class_name": "AutoencoderKLMAR", "block_out_channels": [128, 128, 256, 256, 512], "latent_channels": 16}
    )
    assert mar.variant == "mar" and mar.stride == 16
    sdxl = VAEConfig.from_dict({"_class_name": "AutoencoderKL", "_diffusers_version": "0.20.0", "latent_channels": 4})
    assert sdxl.variant == "sdxl" and sdxl.stride == 8
    assert VAEConfig.from_dict(mar.to_dict()) == mar


def test_vae_config_unknown_key():
    with pytest.raises(InvalidConfigError, match="colour_space"):
        VAEConfig.from_dict({"_class_name": "AutoencoderKL", "colour_space": "rgb"})
