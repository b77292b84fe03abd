"""The VAE against diffusers' AutoencoderKL (same weights), the MAR encoder attention, and the folder format."""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from models.constants import CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME
from models.errors import CheckpointMismatchError, InvalidConfigError
from models.network.config import VAEConfig
from models.network.vae import AutoencoderKL

diffusers = pytest.importorskip("diffusers")

# Three levels (stride s = 4) so both a width change and an identity shortcut, two downsamplers and two
# upsamplers are exercised; a non-square image catches any H/W mix-up.
TINY = dict(block_out_channels=(32, 64, 64), layers_per_block=2, latent_channels=4, norm_num_groups=8)
IMAGE_HW = (24, 40)
SDXL_FULL = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4, norm_num_groups=32)
MAR_FULL = dict(
    block_out_channels=(128, 128, 256, 256, 512), layers_per_block=2, latent_channels=16, norm_num_groups=32
)
# float64 runs the same kernels in both implementations, so they agree to rounding noise.
ATOL64 = 1e-10


def vae_config(variant: str = "sdxl", **changes) -> VAEConfig:
    levels = len(changes.get("block_out_channels", TINY["block_out_channels"]))
    return VAEConfig(
        **{**TINY, **changes},
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        scaling_factor=0.2325,
        sample_size=IMAGE_HW[0],
        variant=variant,
    )


def diffusers_vae(config: VAEConfig) -> "diffusers.AutoencoderKL":
    """diffusers' AutoencoderKL with the SDXL-layout geometry of `config`."""
    levels = len(config.block_out_channels)
    return diffusers.AutoencoderKL(
        in_channels=config.in_channels,
        out_channels=config.out_channels,
        down_block_types=("DownEncoderBlock2D",) * levels,
        up_block_types=("UpDecoderBlock2D",) * levels,
        block_out_channels=config.block_out_channels,
        layers_per_block=config.layers_per_block,
        latent_channels=config.latent_channels,
        norm_num_groups=config.norm_num_groups,
    )


@torch.no_grad()
def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Redraw every parameter (norm weights near 1) so no default init hides a wiring mistake."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in module.named_parameters():
        noise = torch.randn(param.shape, generator=generator, dtype=torch.float64).to(param.dtype)
        is_norm_weight = "norm" in name.rsplit(".", 2)[-2] and name.endswith("weight")
        param.copy_(1 + 0.1 * noise if is_norm_weight else noise / math.sqrt(max(param[0].numel(), 1)))
    return module


def make_vae(variant: str = "sdxl", seed: int = 0, **changes) -> AutoencoderKL:
    return randomize_(AutoencoderKL(vae_config(variant, **changes)), seed).double().eval()


def images(batch: int = 2, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, *IMAGE_HW, generator=generator, dtype=torch.float64) * 2 - 1


def latents_for(vae: AutoencoderKL, batch: int = 2, seed: int = 2) -> torch.Tensor:
    stride = vae.config.stride
    generator = torch.Generator().manual_seed(seed)
    shape = (batch, vae.config.latent_channels, IMAGE_HW[0] // stride, IMAGE_HW[1] // stride)
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def reference_of(vae: AutoencoderKL) -> "diffusers.AutoencoderKL":
    """diffusers' model holding `vae`'s weights; MAR's extra encoder attentions have no place there and are dropped."""
    reference = diffusers_vae(vae.config).double().eval()
    state = {k: v for k, v in vae.state_dict().items() if k in reference.state_dict()}
    reference.load_state_dict(state, strict=True)
    return reference


def extra_attention_keys(config: VAEConfig) -> list[str]:
    last = len(config.block_out_channels) - 1
    return [
        f"encoder.down_blocks.{last}.attentions.{j}.{leaf}"
        for j in range(config.layers_per_block)
        for leaf in ("group_norm.weight", "group_norm.bias", "to_q.weight", "to_q.bias", "to_k.weight",
                     "to_k.bias", "to_v.weight", "to_v.bias", "to_out.0.weight", "to_out.0.bias")
    ]


# ----------------------------------------------------------------------------------------------------
# SDXL layout = diffusers' AutoencoderKL
# ----------------------------------------------------------------------------------------------------


def test_sdxl_state_dict_matches_diffusers():
    config = vae_config()
    ours = {k: tuple(v.shape) for k, v in AutoencoderKL(config).state_dict().items()}
    theirs = {k: tuple(v.shape) for k, v in diffusers_vae(config).state_dict().items()}
    assert sorted(ours) == sorted(theirs)
    assert ours == theirs


def test_sdxl_full_size_keys_and_parameter_count_match_diffusers():
    config = VAEConfig(**SDXL_FULL)
    with torch.device("meta"):
        ours, theirs = AutoencoderKL(config), diffusers_vae(config)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in theirs.state_dict().items()}
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in theirs.parameters())


def test_sdxl_folder_written_by_diffusers_loads_and_matches(tmp_path):
    torch.manual_seed(0)
    reference = randomize_(diffusers_vae(vae_config()), seed=3)
    reference.save_pretrained(tmp_path)  # a real diffusers folder, like the official vae/
    reference = reference.double().eval()
    ours = AutoencoderKL.from_pretrained(tmp_path, dtype=torch.float64)
    assert ours.config.variant == "sdxl"

    x = images()
    posterior = reference.encode(x).latent_dist
    mean, logvar = ours.encode(x)
    torch.testing.assert_close(mean, posterior.mean, atol=ATOL64, rtol=0)
    torch.testing.assert_close(logvar, posterior.logvar, atol=ATOL64, rtol=0)
    z = latents_for(ours)
    torch.testing.assert_close(ours.decode(z), reference.decode(z).sample, atol=ATOL64, rtol=0)


def test_sdxl_folder_written_by_us_loads_in_diffusers(tmp_path):
    ours = make_vae(seed=4)
    ours.save_pretrained(tmp_path)
    reference = diffusers.AutoencoderKL.from_pretrained(tmp_path, torch_dtype=torch.float64).eval()
    x = images()
    torch.testing.assert_close(ours.encode(x)[0], reference.encode(x).latent_dist.mean, atol=ATOL64, rtol=0)
    z = latents_for(ours)
    torch.testing.assert_close(ours.decode(z), reference.decode(z).sample, atol=ATOL64, rtol=0)


def test_logvar_is_clamped():
    vae = make_vae(seed=5)
    with torch.no_grad():
        vae.quant_conv.bias[vae.config.latent_channels:] = 1e3  # logvar channels far above the clamp
    _, logvar = vae.encode(images())
    assert torch.all(logvar == 20.0)


# ----------------------------------------------------------------------------------------------------
# MAR variant
# ----------------------------------------------------------------------------------------------------


def test_mar_extra_keys_are_the_last_down_block_attentions():
    config = vae_config("mar")
    ours = set(AutoencoderKL(config).state_dict())
    theirs = set(diffusers_vae(config).state_dict())
    assert theirs <= ours
    assert sorted(ours - theirs) == sorted(extra_attention_keys(config))
    assert not any(".attentions." in k for k in ours if k.startswith("decoder.up_blocks"))


def test_mar_full_size_parameter_count():
    config = VAEConfig(**MAR_FULL, variant="mar")
    with torch.device("meta"):
        ours, theirs = AutoencoderKL(config), diffusers_vae(config)
    width = config.block_out_channels[-1]
    attention = 4 * (width * width + width) + 2 * width  # q, k, v, out Linear + GroupNorm affine
    expected = sum(p.numel() for p in theirs.parameters()) + config.layers_per_block * attention
    assert sum(p.numel() for p in ours.parameters()) == expected
    assert config.stride == 16


def test_mar_decoder_equals_diffusers():
    ours = make_vae("mar", seed=6)
    z = latents_for(ours)
    torch.testing.assert_close(ours.decode(z), reference_of(ours).decode(z).sample, atol=ATOL64, rtol=0)


def test_mar_encoder_with_silent_extra_attention_equals_diffusers():
    ours = make_vae("mar", seed=7)
    with torch.no_grad():
        for attention in ours.encoder.down_blocks[-1].attentions:
            attention.to_out[0].weight.zero_()
            attention.to_out[0].bias.zero_()
    x = images()
    mean, logvar = ours.encode(x)
    posterior = reference_of(ours).encode(x).latent_dist
    torch.testing.assert_close(mean, posterior.mean, atol=ATOL64, rtol=0)
    torch.testing.assert_close(logvar, posterior.logvar, atol=ATOL64, rtol=0)


def hand_attention(x: torch.Tensor, weights: dict[str, torch.Tensor], groups: int) -> torch.Tensor:
    """Residual single-head attention written out: x + W_o · softmax(q kᵀ / √F) v over the h·w positions."""
    batch, dim, height, width = x.shape
    normed = F.group_norm(x, groups, weights["group_norm.weight"], weights["group_norm.bias"], eps=1e-6)
    tokens = normed.reshape(batch, dim, height * width).permute(0, 2, 1)  # [B, N, F]
    q, k, v = (tokens @ weights[f"to_{n}.weight"].T + weights[f"to_{n}.bias"] for n in "qkv")
    probs = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(dim), dim=-1)  # [B, N, N]
    out = (probs @ v) @ weights["to_out.0.weight"].T + weights["to_out.0.bias"]
    return x + out.permute(0, 2, 1).reshape(batch, dim, height, width)


def test_mar_encoder_equals_diffusers_pieces_plus_hand_written_attention():
    ours = make_vae("mar", seed=8)
    reference = reference_of(ours).encoder
    state, groups = ours.state_dict(), ours.config.norm_num_groups
    last = len(ours.config.block_out_channels) - 1
    x = images()

    with torch.no_grad():
        h = reference.conv_in(x)
        for block in reference.down_blocks[:-1]:
            h = block(h)
        for j, resnet in enumerate(reference.down_blocks[-1].resnets):
            h = resnet(h, None)
            prefix = f"encoder.down_blocks.{last}.attentions.{j}."
            h = hand_attention(h, {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}, groups)
        h = reference.conv_out(reference.conv_act(reference.conv_norm_out(reference.mid_block(h))))
        expected_mean, expected_logvar = reference_of(ours).quant_conv(h).chunk(2, dim=1)
        mean, logvar = ours.encode(x)

    torch.testing.assert_close(mean, expected_mean, atol=ATOL64, rtol=0)
    torch.testing.assert_close(logvar, expected_logvar.clamp(-30, 20), atol=ATOL64, rtol=0)
    # The extra attention must matter, or the comparison above proves nothing.
    assert not torch.allclose(mean, reference_of(ours).encode(x).latent_dist.mean, atol=1e-3)


def test_mar_class_name_selects_the_variant(tmp_path):
    make_vae("mar", seed=9).save_pretrained(tmp_path)
    assert json.loads((tmp_path / CONFIG_NAME).read_text())["_class_name"] == "AutoencoderKLMAR"
    assert AutoencoderKL.from_pretrained(tmp_path).config.variant == "mar"


def test_mar_weights_under_an_sdxl_config_are_refused(tmp_path):
    make_vae("mar", seed=10).save_pretrained(tmp_path)
    config = json.loads((tmp_path / CONFIG_NAME).read_text())
    (tmp_path / CONFIG_NAME).write_text(json.dumps({**config, "_class_name": "AutoencoderKL"}))
    with pytest.raises(CheckpointMismatchError, match="unexpected keys.*attentions"):
        AutoencoderKL.from_pretrained(tmp_path)


# ----------------------------------------------------------------------------------------------------
# Folder format, strict loading, scaling, micro-batched decode
# ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["sdxl", "mar"])
def test_save_and_load_round_trip(tmp_path, variant):
    vae = make_vae(variant, seed=11, shift_factor=0.1)
    vae.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME])
    loaded = AutoencoderKL.from_pretrained(tmp_path, dtype=torch.float64)
    assert loaded.config == vae.config
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    x, z = images(), latents_for(vae)
    # Same weights, but tensors read from safetensors are not 64-byte aligned, which can change the SIMD
    # summation order of the CPU kernels: equal up to float64 rounding, not bit for bit.
    with torch.no_grad():
        for ours, theirs in zip(vae.encode(x), loaded.encode(x)):
            torch.testing.assert_close(ours, theirs, atol=ATOL64, rtol=0)
        torch.testing.assert_close(vae.decode(z), loaded.decode(z), atol=ATOL64, rtol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_load_casts_to_dtype(tmp_path, dtype):
    make_vae(seed=12).save_pretrained(tmp_path)
    vae = AutoencoderKL.from_pretrained(tmp_path, dtype=dtype)
    assert {p.dtype for p in vae.parameters()} == {dtype}
    assert vae.decode_latents(latents_for(vae, batch=1).to(dtype)).dtype == dtype


@pytest.mark.parametrize("tamper", ["missing", "extra", "reshaped"])
def test_strict_keys(tmp_path, tamper):
    make_vae(seed=13).save_pretrained(tmp_path)
    path = tmp_path / SAFETENSORS_WEIGHTS_NAME
    state = load_file(path)
    key = "decoder.up_blocks.1.resnets.2.conv2.weight"
    if tamper == "missing":
        del state[key]
    elif tamper == "extra":
        key = "encoder.down_blocks.0.attentions.0.to_q.weight"
        state[key] = torch.zeros(32, 32)
    else:
        state[key] = state[key][:, :1].contiguous()
    save_file(state, path)
    with pytest.raises(CheckpointMismatchError, match=key.replace(".", r"\.")):
        AutoencoderKL.from_pretrained(tmp_path)


@pytest.mark.parametrize("shift", [None, 0.0609])
def test_scale_and_unscale_are_inverse(shift):
    vae = make_vae(seed=14, shift_factor=shift)
    z = latents_for(vae)
    torch.testing.assert_close(vae.scale(z), (z - (shift or 0.0)) * vae.config.scaling_factor, atol=1e-15, rtol=0)
    torch.testing.assert_close(vae.unscale(vae.scale(z)), z, atol=1e-14, rtol=0)
    torch.testing.assert_close(vae.scale(vae.unscale(z)), z, atol=1e-14, rtol=0)


@pytest.mark.parametrize("batch_size", [1, 2, 3, 8])
def test_decode_latents_in_micro_batches_equals_one_batch(batch_size):
    vae = make_vae("mar", seed=15, shift_factor=0.1)
    z = latents_for(vae, batch=3)
    before = z.clone()
    with torch.no_grad():
        expected = vae.decode(vae.unscale(z))
    torch.testing.assert_close(vae.decode_latents(z, batch_size=batch_size), expected, atol=ATOL64, rtol=0)
    assert torch.equal(z, before)  # the caller's latents are not unscaled in place


def test_decode_latents_rejects_a_zero_batch():
    vae = make_vae(seed=16)
    with pytest.raises(ValueError, match="batch size 0"):
        vae.decode_latents(latents_for(vae), batch_size=0)


def test_geometry_is_checked():
    with pytest.raises(InvalidConfigError, match="norm_num_groups"):
        AutoencoderKL(vae_config(norm_num_groups=7))
