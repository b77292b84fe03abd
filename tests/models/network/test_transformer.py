"""Tiny LinaTransformers: save/load round trip, strict loading, the softmax variant, image-encoder semantics."""

import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from models.constants import BIN_WEIGHTS_NAME, CONFIG_NAME, SAFETENSORS_WEIGHTS_NAME
from models.errors import CheckpointMismatchError, LinaError, MissingComponentError
from models.network.embeddings import unpatchify
from models.network.transformer import LinaTransformer
from tests.models.conftest import tiny_t2i_config


def randomise(model: LinaTransformer, seed: int) -> LinaTransformer:
    """Redraw every tensor of the state dict (gates > 0, non-unit), so zero/one inits hide nothing."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("_scale"):
                tensor.copy_(torch.rand(tensor.shape, generator=generator) + 0.5)
            else:
                tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.2)
    return model.eval()


def make_model(config, seed: int = 0) -> LinaTransformer:
    """A randomised model in the inference state `from_pretrained` returns (eval, no grad)."""
    return randomise(LinaTransformer.from_config(config), seed).requires_grad_(False)


def conditions(model: LinaTransformer, dtype=torch.float32) -> torch.Tensor:
    """Two condition rows: a real one and the null one."""
    config = model.config
    if config.is_text_conditioned:
        prompt = torch.randn(3, config.text_token_dim, generator=torch.Generator().manual_seed(5), dtype=dtype)
        return model.condition_tokens_from_text([prompt, prompt[:0]])
    return model.condition_tokens_from_labels(torch.tensor([1, model.null_class]))


def canvas_state(config, known: int, seed: int = 0):
    """A random canvas, the ids of `known` generated tokens per row, and the matching mask ([B, L, 1], 1 = unknown)."""
    generator = torch.Generator().manual_seed(seed)
    canvas = torch.randn(2, config.num_image_tokens, config.token_dim, generator=generator)
    known_ids = torch.stack([torch.randperm(config.num_image_tokens, generator=generator)[:known] for _ in range(2)])
    mask = torch.ones(2, config.num_image_tokens, 1).scatter_(1, known_ids.unsqueeze(-1), 0)
    return canvas, known_ids, mask


def as_latents(model, canvas: torch.Tensor) -> torch.Tensor:
    """Token-form canvas [B, L, p²C] → the latent image [B, C, H/s, W/s] that `embed_canvas` takes."""
    return unpatchify(canvas, model.config.token_grid, model.config.patch_size)


@torch.no_grad()
def image_encoder_output(model, canvas, mask, known_ids, dtype=torch.float32) -> torch.Tensor:
    """z [B, L, D] of one AR step."""
    context = model.encode_context(conditions(model, dtype))
    tokens = model.embed_canvas(as_latents(model, canvas).to(dtype), mask.to(dtype), model.image_positions(torch.device("cpu"), dtype))
    return model.image_encoder(tokens, context, known_ids)


@torch.no_grad()
def full_forward(model, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """z of one AR step and the head's velocity on three of its tokens."""
    config = model.config
    canvas, known_ids, mask = canvas_state(config, known=config.num_image_tokens // 3)
    z = image_encoder_output(model, canvas, mask, known_ids, dtype)
    noisy = torch.randn(2, 3, config.token_dim, generator=torch.Generator().manual_seed(9)).to(dtype)
    velocity = model.image_decoder(noisy, torch.tensor([958.375, 958.375]), z[:, :3])
    return z, velocity


@pytest.fixture
def saved(tiny_config, tmp_path):
    """(model, folder) of a randomised tiny model written with save_pretrained."""
    model = make_model(tiny_config)
    model.save_pretrained(tmp_path / "transformer")
    return model, tmp_path / "transformer"


# ----------------------------------------------------------------------------------------------------
# save_pretrained / from_pretrained
# ----------------------------------------------------------------------------------------------------


def test_round_trip_state_dict_and_outputs(saved, assert_close):
    model, folder = saved
    assert (folder / CONFIG_NAME).is_file() and (folder / SAFETENSORS_WEIGHTS_NAME).is_file()
    loaded = LinaTransformer.from_pretrained(folder)
    assert loaded.config == model.config
    expected, actual = model.state_dict(), loaded.state_dict()
    assert list(actual) == list(expected)
    for name in expected:
        assert torch.equal(actual[name], expected[name]), name
    # Loaded weights live at other memory offsets, and the CPU BLAS picks kernels by alignment, so outputs
    # agree to fp32 rounding rather than bit for bit; two loads of the same folder agree exactly.
    outputs = full_forward(loaded)
    for ours, theirs, what in zip(outputs, full_forward(model), ("z", "velocity")):
        assert_close(ours, theirs, torch.float32, what)
    for again, first in zip(full_forward(LinaTransformer.from_pretrained(folder)), outputs):
        assert torch.equal(again, first)


def test_from_pretrained_bf16_builds_on_meta(saved):
    model, folder = saved
    rng_before = torch.get_rng_state()
    loaded = LinaTransformer.from_pretrained(folder, device="cpu", dtype=torch.bfloat16)
    # Building on the meta device runs no random initialisation, so the global RNG is untouched.
    assert torch.equal(torch.get_rng_state(), rng_before)
    expected = model.state_dict()
    for name, tensor in loaded.state_dict().items():
        assert tensor.device == torch.device("cpu") and tensor.dtype == torch.bfloat16, name
        assert torch.equal(tensor, expected[name].to(torch.bfloat16)), name
    z, velocity = full_forward(loaded, torch.bfloat16)
    assert z.dtype == velocity.dtype == torch.bfloat16
    assert torch.isfinite(z).all() and torch.isfinite(velocity).all()


def test_from_pretrained_reads_torch_save_bin(saved):
    model, folder = saved
    (folder / SAFETENSORS_WEIGHTS_NAME).unlink()
    torch.save(model.state_dict(), folder / BIN_WEIGHTS_NAME)
    loaded = LinaTransformer.from_pretrained(folder)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name


class _WritesAFile:
    """A pickled object whose unpickling would create a file: weights_only loading must never run it."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (open, (str(self.path), "w"))


def test_from_pretrained_refuses_pickled_objects(saved, tmp_path):
    model, folder = saved
    (folder / SAFETENSORS_WEIGHTS_NAME).unlink()
    marker = tmp_path / "unpickled"
    torch.save({**model.state_dict(), "payload": _WritesAFile(marker)}, folder / BIN_WEIGHTS_NAME)
    with pytest.raises(LinaError, match="weights_only"):
        LinaTransformer.from_pretrained(folder)
    assert not marker.exists()


def test_from_pretrained_without_weights(saved):
    _, folder = saved
    (folder / SAFETENSORS_WEIGHTS_NAME).unlink()
    with pytest.raises(MissingComponentError, match=SAFETENSORS_WEIGHTS_NAME):
        LinaTransformer.from_pretrained(folder)


# ----------------------------------------------------------------------------------------------------
# Strict loading
# ----------------------------------------------------------------------------------------------------


def _rewrite(folder: Path, edit) -> None:
    state = load_file(folder / SAFETENSORS_WEIGHTS_NAME)
    edit(state)
    save_file(state, folder / SAFETENSORS_WEIGHTS_NAME)


def test_missing_key_is_named(saved):
    _, folder = saved
    _rewrite(folder, lambda state: state.pop("mask_embed.mask_token"))
    with pytest.raises(CheckpointMismatchError, match=r"missing keys.*mask_embed\.mask_token") as error:
        LinaTransformer.from_pretrained(folder)
    assert "TransformerConfig" in str(error.value) and "image_size" in str(error.value)


def test_unexpected_key_is_named(saved):
    _, folder = saved
    _rewrite(folder, lambda state: state.update({"image_encoder.blocks.9.attn.qkv.weight": torch.zeros(3, 3)}))
    with pytest.raises(CheckpointMismatchError, match=r"unexpected keys.*image_encoder\.blocks\.9\.attn\.qkv\.weight"):
        LinaTransformer.from_pretrained(folder)


def test_kv_gates_of_another_resolution(tmp_path):
    """Weights of the 128-px model under the 64-px config: only the KV gates differ, and the error says so."""
    config = tiny_t2i_config()
    bigger = make_model(tiny_t2i_config(image_size=(128, 128), image_base_size=(8, 8), video_base_size=(1, 4, 4)))
    folder = tmp_path / "transformer"
    make_model(config).save_pretrained(folder)
    bigger_folder = tmp_path / "bigger"
    bigger.save_pretrained(bigger_folder)
    (bigger_folder / SAFETENSORS_WEIGHTS_NAME).replace(folder / SAFETENSORS_WEIGHTS_NAME)
    with pytest.raises(CheckpointMismatchError) as error:
        LinaTransformer.from_pretrained(folder)
    message = str(error.value)
    seq_len, heads = config.decoder_seq_len, config.image_encoder_arch.num_heads
    assert "4 shape mismatches" in message  # key and value gates of both decoder blocks
    for block in (2, 3):
        for gate in ("key_scale", "value_scale"):
            assert f"image_encoder.blocks.{block}.attn.{gate}" in message
    assert f"[1, {heads}, 80, 1]" in message and f"[1, {heads}, {seq_len}, 1]" in message  # both shapes
    assert "'image_size': [64, 64]" in message
    assert "missing" not in message and "unexpected" not in message


def test_softmax_override_refuses_a_linear_checkpoint(saved):
    _, folder = saved
    with pytest.raises(CheckpointMismatchError, match="unexpected keys.*key_scale"):
        LinaTransformer.from_pretrained(folder, attention="softmax")


# ----------------------------------------------------------------------------------------------------
# Softmax variant
# ----------------------------------------------------------------------------------------------------


def test_softmax_variant_has_no_gates_or_conv_and_runs(tiny_config, tmp_path, assert_close):
    linear_keys = set(LinaTransformer.from_config(tiny_config).state_dict())
    model = make_model(tiny_config.replace(attention="softmax"))
    decoder_extras = {
        f"image_encoder.blocks.{i}.attn.{name}"
        for i in range(tiny_config.encoder_depth, tiny_config.image_encoder_arch.depth)
        for name in ("key_scale", "value_scale", "dw_conv.weight", "dw_conv.bias")
    }
    assert set(model.state_dict()) == linear_keys - decoder_extras
    assert len(decoder_extras & linear_keys) == len(decoder_extras)
    z, velocity = full_forward(model)
    assert torch.isfinite(z).all() and torch.isfinite(velocity).all()
    model.save_pretrained(tmp_path / "softmax")
    assert_close(full_forward(LinaTransformer.from_pretrained(tmp_path / "softmax"))[1], velocity, torch.float32)


# ----------------------------------------------------------------------------------------------------
# Image encoder semantics (docs/architecture.md, "Image tokens and the image encoder")
# ----------------------------------------------------------------------------------------------------


def test_image_encoder_with_no_known_tokens(tiny_config):
    model = make_model(tiny_config)
    canvas, known_ids, mask = canvas_state(tiny_config, known=0)
    assert known_ids.shape == (2, 0)
    z = image_encoder_output(model, canvas, mask, known_ids)
    assert z.shape == (2, tiny_config.num_image_tokens, tiny_config.width) and torch.isfinite(z).all()
    # with nothing known, the canvas values are irrelevant: every token is mask_token + position
    assert torch.equal(image_encoder_output(model, torch.zeros_like(canvas), mask, known_ids), z)


def test_unknown_tokens_are_replaced_known_tokens_count(tiny_config):
    model = make_model(tiny_config)
    canvas, known_ids, mask = canvas_state(tiny_config, known=5)
    z = image_encoder_output(model, canvas, mask, known_ids)
    unknown = int((mask[0, :, 0] == 1).nonzero()[0])
    known = int(known_ids[0, 0])

    changed_unknown = canvas.clone()
    changed_unknown[0, unknown] += 3.0
    assert torch.equal(image_encoder_output(model, changed_unknown, mask, known_ids), z)

    changed_known = canvas.clone()
    changed_known[0, known] += 3.0
    z_known = image_encoder_output(model, changed_known, mask, known_ids)
    assert ((z_known[0] - z[0]).abs().amax(dim=-1) > 0).all()  # every position of that image sees it
    assert torch.equal(z_known[1], z[1])  # the other image does not


def test_mask_token_feeds_unknown_positions(tiny_config):
    model = make_model(tiny_config)
    canvas, known_ids, mask = canvas_state(tiny_config, known=5)
    z = image_encoder_output(model, canvas, mask, known_ids)
    with torch.no_grad():
        model.mask_embed.mask_token.add_(0.5)
    assert not torch.allclose(image_encoder_output(model, canvas, mask, known_ids), z)


def test_known_ids_order_does_not_matter(tiny_config):
    """Attention without RoPE is a set operation: the order of known ids changes z only by rounding."""
    model = make_model(tiny_config)
    canvas, known_ids, mask = canvas_state(tiny_config, known=7)
    z = image_encoder_output(model, canvas, mask, known_ids)
    shuffled = known_ids[:, torch.randperm(7, generator=torch.Generator().manual_seed(1))]
    torch.testing.assert_close(image_encoder_output(model, canvas, mask, shuffled), z, rtol=1e-5, atol=1e-5)


def test_null_text_rows_pad_real_prompts():
    """docs/architecture.md, "Conditioning and context": a prompt of n rows is followed by null rows n..P−1; the empty prompt is rows 0..P−1."""
    model = make_model(tiny_t2i_config())
    prompt = torch.randn(3, 32, generator=torch.Generator().manual_seed(2))
    features = model.text_embed.build_features([prompt, prompt[:0]])
    null = model.text_embed.weight
    assert torch.equal(features[0, :3], prompt) and torch.equal(features[0, 3:], null[3:8])
    assert torch.equal(features[1], null[:8])


def test_image_encoder_wiring_follows_spec(tiny_config, assert_close):
    """docs/architecture.md, "Image tokens and the image encoder" composed by hand from the model's blocks, with per-row loops for the gather and scatter:
    encoder half on [c ; known], decoder half on [c' ; tokens with known rows replaced by known']."""
    model = make_model(tiny_config)
    canvas, known_ids, mask = canvas_state(tiny_config, known=6)
    with torch.no_grad():
        context = model.encode_context(conditions(model))
        tokens = model.embed_canvas(as_latents(model, canvas), mask, model.image_positions(torch.device("cpu"), torch.float32))
        encoder = model.image_encoder
        half = tiny_config.encoder_depth
        rows = []
        for b in range(tokens.shape[0]):
            known = torch.stack([tokens[b, int(i)] for i in known_ids[b]])
            h = torch.cat([context[b], known])[None]
            for block in encoder.blocks[:half]:
                h = block(h)
            updated = tokens[b].clone()
            for row, i in enumerate(known_ids[b]):
                updated[int(i)] = h[0, context.shape[1] + row]
            h = torch.cat([h[0, : context.shape[1]], updated])[None]
            for block in encoder.blocks[half:]:
                h = block(h)
            rows.append(encoder.norm(h[0, context.shape[1] :]))
        expected = torch.stack(rows)
    assert_close(image_encoder_output(model, canvas, mask, known_ids), expected, torch.float32)


def spec_sincos(grid: tuple[int, int], dim: int) -> torch.Tensor:
    """docs/architecture.md, "Image tokens and the image encoder", float64 [h·w, D]: token r·w + c → [sin(c·f) ‖ cos(c·f) ‖ sin(r·f) ‖ cos(r·f)]."""
    quarter = dim // 4
    table = torch.zeros(grid[0] * grid[1], dim, dtype=torch.float64)
    for r in range(grid[0]):
        for c in range(grid[1]):
            for k in range(quarter):
                f = 10000.0 ** (-k / quarter)
                values = [math.sin(c * f), math.cos(c * f), math.sin(r * f), math.cos(r * f)]
                table[r * grid[1] + c, [k, quarter + k, 2 * quarter + k, 3 * quarter + k]] = torch.tensor(
                    values, dtype=torch.float64
                )
    return table


def test_sincos_tables_follow_spec(tiny_config, assert_close):
    """docs/architecture.md, "Image tokens and the image encoder": token (r, c) → [sin(c·f) ‖ cos(c·f) ‖ sin(r·f) ‖ cos(r·f)], f_k = 10000^(−k/(D/4)), row-major."""
    model = make_model(tiny_config)
    expected = spec_sincos(tiny_config.token_grid, tiny_config.width)
    assert_close(model.image_positions(torch.device("cpu"), torch.float32), expected, torch.float32)
    # built on the host once per device and dtype, then shared (a copy per call would stall training steps)
    assert model.image_positions(torch.device("cpu"), torch.float32) is model.image_positions("cpu", torch.float32)
    assert model.image_positions("cpu", torch.bfloat16).dtype == torch.bfloat16


def test_context_tokens_follow_spec(tiny_config, assert_close):
    """docs/architecture.md, "Conditioning and context": context = video_encoder([cond ; bos + TE(frame 0) + SPE_v]) keeping the last Lv rows, normed;
    TE = LayerNorm(time_proj([sin 0]·128 ‖ [cos 0]·128)); SPE_v is the same table on the context grid."""
    model = make_model(tiny_config)
    positions = spec_sincos(tiny_config.context_grid, tiny_config.width).float()
    with torch.no_grad():
        pos_embed = model.video_pos_embed
        frame = torch.cat([torch.zeros(1, 128), torch.ones(1, 128)], dim=1)
        time = pos_embed.norm(pos_embed.time_proj(frame))  # [1, D]
        condition = conditions(model)
        h = torch.cat([condition, (model.mask_embed.bos_token + time + positions).expand(2, -1, -1)], dim=1)
        for block in model.video_encoder.blocks:
            h = block(h)
        expected = model.video_encoder.norm(h[:, condition.shape[1] :])
        actual = model.encode_context(condition)
    assert_close(actual, expected, torch.float32)
