"""PhiTextEncoder: features against transformers' own Phi, truncation, batching, folder layouts and errors."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from tokenizers import Tokenizer
from transformers import PhiForCausalLM

from models.errors import CheckpointMismatchError, InvalidConfigError, MissingComponentError
from models.network.text_encoder import LayerStream, PhiTextEncoder
from tests.tiny_text import write_tiny_text_components

PROMPTS = ["a photo of a cat", "an astronaut riding a horse on the moon, digital art", "ok", "héllo wörld 🌍"]
MAX_TOKENS = 64
# Features are ~unit scale; another sequence length changes the fp32 summation order, not more than this.
SHAPE_CHANGE_ATOL = 1e-5


@pytest.fixture(scope="module")
def tiny_folders(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("tiny-text")
    write_tiny_text_components(root / "text_encoder", root / "tokenizer")
    return root / "text_encoder", root / "tokenizer"


@pytest.fixture
def folder_copy(tiny_folders, tmp_path) -> tuple[Path, Path]:
    """A private copy of the tiny folders that a test may edit."""
    text_encoder, tokenizer = tmp_path / "text_encoder", tmp_path / "tokenizer"
    shutil.copytree(tiny_folders[0], text_encoder)
    shutil.copytree(tiny_folders[1], tokenizer)
    return text_encoder, tokenizer


@pytest.fixture(scope="module")
def encoder(tiny_folders) -> PhiTextEncoder:
    return PhiTextEncoder.from_pretrained(*tiny_folders)


def encode_all(encoder: PhiTextEncoder, prompts=PROMPTS, max_tokens=MAX_TOKENS) -> list[torch.Tensor]:
    return encoder.encode(prompts, max_tokens)


def assert_same_features(actual: list[torch.Tensor], expected: list[torch.Tensor]) -> None:
    assert [a.shape for a in actual] == [e.shape for e in expected]
    for a, e in zip(actual, expected):
        torch.testing.assert_close(a, e, rtol=0, atol=0)


# ---------------------------------------------------------------------------------------------- features ----


def test_features_equal_transformers_phi_last_hidden_state(tiny_folders, encoder, assert_close):
    """Independent path: the `tokenizers` file + transformers' PhiForCausalLM body read from the same folders."""
    reference = PhiForCausalLM.from_pretrained(tiny_folders[0]).model.eval()
    backend = Tokenizer.from_file(str(tiny_folders[1] / "tokenizer.json"))
    features = encode_all(encoder)
    for prompt, rows in zip(PROMPTS, features):
        ids = backend.encode(prompt, add_special_tokens=False).ids
        with torch.no_grad():
            expected = reference(torch.tensor([ids])).last_hidden_state[0]  # [n, hidden]
        assert rows.shape == (len(ids), encoder.hidden_size)  # one row per token: no BOS/EOS added
        assert_close(rows, expected, torch.float32, what=repr(prompt))


def test_features_depend_on_the_prompt_and_sit_after_the_final_layernorm(encoder):
    cat, dog = encoder.encode(["a photo of a cat", "a photo of a dog"], MAX_TOKENS)
    assert not torch.allclose(cat[-1], dog[-1])
    # The final LayerNorm makes every row zero-mean before its affine part: undo the affine, see mean 0.
    norm = encoder.model.final_layernorm
    normalized = (cat - norm.bias) / norm.weight
    torch.testing.assert_close(normalized.mean(-1), torch.zeros(cat.shape[0]), atol=1e-4, rtol=0)


def test_truncation_keeps_the_first_max_tokens_rows(encoder):
    (full,) = encoder.encode([PROMPTS[1]], MAX_TOKENS)
    assert full.shape[0] > 5
    (truncated,) = encoder.encode([PROMPTS[1]], 5)
    assert truncated.shape == (5, encoder.hidden_size)
    # Causal attention: the first rows of a longer prompt do not depend on the tokens cut off.
    torch.testing.assert_close(truncated, full[:5], rtol=0, atol=SHAPE_CHANGE_ATOL)
    assert encoder.encode([PROMPTS[1]], 0)[0].shape == (0, encoder.hidden_size)


def test_empty_prompt_gives_no_rows(encoder):
    features = encoder.encode(["", "a photo of a cat", ""], MAX_TOKENS)
    assert [f.shape[0] for f in features][::2] == [0, 0]
    assert features[0].shape == (0, encoder.hidden_size) and features[0].dtype == encoder.dtype
    assert encoder.encode([""], MAX_TOKENS)[0].shape == (0, encoder.hidden_size)
    assert encoder.encode([], MAX_TOKENS) == []


def test_batched_encode_equals_one_by_one(encoder):
    """Right padding without a mask leaves the kept rows unchanged, because Phi's attention is causal."""
    prompts = PROMPTS + ["", PROMPTS[0]]
    batched = encoder.encode(prompts, MAX_TOKENS)
    one_by_one = [encoder.encode([prompt], MAX_TOKENS)[0] for prompt in prompts]
    assert len({f.shape[0] for f in batched}) > 2  # the batch really needed padding
    for prompt, together, alone in zip(prompts, batched, one_by_one):
        assert together.shape == alone.shape, prompt
        torch.testing.assert_close(together, alone, rtol=0, atol=SHAPE_CHANGE_ATOL)


def test_dtype_and_device_follow_the_model(tiny_folders, encoder, assert_close):
    half = PhiTextEncoder.from_pretrained(*tiny_folders, device="cpu", dtype=torch.bfloat16)
    assert half.dtype == torch.bfloat16 and half.device == torch.device("cpu")
    (features,) = half.encode([PROMPTS[0]], MAX_TOKENS)
    assert features.dtype == torch.bfloat16 and features.device == torch.device("cpu")
    assert_close(features, encoder.encode([PROMPTS[0]], MAX_TOKENS)[0], torch.bfloat16)


def test_an_offloaded_encoder_gives_the_same_features_from_a_copy_of_its_weights(tiny_folders, encoder):
    offloaded = PhiTextEncoder.from_pretrained(*tiny_folders, device="cpu", offload=True)
    assert offloaded.offload and offloaded.weights_device == torch.device("cpu")
    assert_same_features(encode_all(offloaded), encode_all(encoder))


def test_a_layer_stream_holds_one_part_at_a_time_and_puts_every_tensor_back(encoder):
    stream = LayerStream(encoder.model, torch.device("cpu"))
    before = {name: tensor.data_ptr() for name, tensor in encoder.model.state_dict().items()}
    arrived = []
    layers = encoder.model.layers
    watch = [layer.register_forward_hook(lambda *_: arrived.append(len(stream.resting))) for layer in layers]
    try:
        with stream:
            encoder.model(input_ids=torch.tensor([[5, 6, 7]]), use_cache=False)
    finally:
        for hook in watch:
            hook.remove()
    # our hooks run after the stream's arrival and before its departure: exactly the running layer is resident
    assert arrived == [1] * len(encoder.model.layers)
    assert len(stream.parts) == len(encoder.model.layers) + 4  # embeddings, rotary table, dropout, final norm
    assert stream.resting == {} and {n: t.data_ptr() for n, t in encoder.model.state_dict().items()} == before
    assert all(len(part._forward_pre_hooks) == 0 for part in stream.parts)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="GPU memory is the point")
def test_an_offloaded_encoder_holds_no_gpu_memory_after_encoding(tmp_path):
    # Many layers, so that one layer and the activations are a small part of the weights, as in Phi-2's 32 (a 2-layer
    # encoder's single layer plus its activations already come to 0.66 of its weights)
    write_tiny_text_components(tmp_path / "text_encoder", tmp_path / "tokenizer", hidden_size=128, layers=12)
    offloaded = PhiTextEncoder.from_pretrained(tmp_path / "text_encoder", tmp_path / "tokenizer", device="cuda",
                                               offload=True)
    weights = sum(p.numel() * p.element_size() for p in offloaded.model.parameters())
    offloaded.encode([PROMPTS[0]], MAX_TOKENS)  # the first matrix product allocates cuBLAS's workspace
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    (features,) = offloaded.encode([PROMPTS[1]], MAX_TOKENS)
    torch.cuda.synchronize()
    # streamed a part at a time: the largest part (a layer or the embeddings) and activations, never all of it
    assert torch.cuda.max_memory_allocated() - before < 0.25 * weights
    assert features.device.type == "cuda" and offloaded.weights_device == torch.device("cpu")
    # only the features stay (a few kB); the copy of the weights is back in the allocator
    assert torch.cuda.memory_allocated() - before < weights / 4
    kept = PhiTextEncoder.from_pretrained(tmp_path / "text_encoder", tmp_path / "tokenizer", device="cuda")
    assert kept.weights_device.type == "cuda" and not kept.offload


def test_hidden_size_follows_the_config(tmp_path):
    write_tiny_text_components(tmp_path / "te", tmp_path / "tok", hidden_size=32, seed=3)
    assert PhiTextEncoder.from_pretrained(tmp_path / "te", tmp_path / "tok").hidden_size == 32


# ------------------------------------------------------------------------------------------ folder layouts ----


def test_saved_layout_is_a_phi_for_causal_lm_checkpoint(tiny_folders):
    config = json.loads((tiny_folders[0] / "config.json").read_text())
    assert config["architectures"] == ["PhiForCausalLM"] and config["model_type"] == "phi"
    assert "auto_map" not in config
    with safe_open(str(tiny_folders[0] / "model.safetensors"), framework="pt") as handle:
        keys = set(handle.keys())
    assert {"model.embed_tokens.weight", "model.final_layernorm.weight", "lm_head.weight", "lm_head.bias"} <= keys
    assert {"model.layers.1.self_attn.dense.weight", "model.layers.1.mlp.fc2.bias"} <= keys
    assert all(key.startswith(("model.", "lm_head.")) for key in keys)
    assert (tiny_folders[1] / "tokenizer.json").is_file()


def test_save_then_load_round_trip(encoder, tmp_path):
    encoder.save_pretrained(tmp_path / "text_encoder", tmp_path / "tokenizer")
    reloaded = PhiTextEncoder.from_pretrained(tmp_path / "text_encoder", tmp_path / "tokenizer")
    assert_same_features(encode_all(reloaded), encode_all(encoder))
    state, reloaded_state = encoder.model.state_dict(), reloaded.model.state_dict()
    assert state.keys() == reloaded_state.keys()
    assert all(torch.equal(state[name], reloaded_state[name]) for name in state)


def test_tiny_components_are_seeded(tmp_path, encoder):
    write_tiny_text_components(tmp_path / "same" / "te", tmp_path / "same" / "tok", seed=0)
    write_tiny_text_components(tmp_path / "other" / "te", tmp_path / "other" / "tok", seed=1)
    same = PhiTextEncoder.from_pretrained(tmp_path / "same" / "te", tmp_path / "same" / "tok")
    other = PhiTextEncoder.from_pretrained(tmp_path / "other" / "te", tmp_path / "other" / "tok")
    assert_same_features(encode_all(same), encode_all(encoder))
    assert not torch.allclose(encode_all(other)[0], encode_all(encoder)[0])


@pytest.mark.parametrize("trap", ["missing-module", "module-that-must-not-run"])
def test_remote_code_entries_are_never_followed(folder_copy, encoder, trap):
    """The official config names the authors' `PhiEncoderModel` code; we load it as a plain PhiConfig."""
    text_encoder, tokenizer = folder_copy
    marker = text_encoder / "remote_code_ran"
    if trap == "module-that-must-not-run":
        (text_encoder / "phi_encoder.py").write_text(f"open({str(marker)!r}, 'w').close()\nraise SystemExit(1)\n")
    config_path = text_encoder / "config.json"
    config = json.loads(config_path.read_text())
    config["architectures"] = ["PhiEncoderModel"]
    config["auto_map"] = {"AutoConfig": "phi_encoder.PhiConfig", "AutoModel": "phi_encoder.PhiEncoderModel"}
    config_path.write_text(json.dumps(config))
    loaded = PhiTextEncoder.from_pretrained(text_encoder, tokenizer)
    assert not marker.exists()
    assert_same_features(encode_all(loaded), encode_all(encoder))
    # Saving never writes the remote-code entries back.
    loaded.save_pretrained(text_encoder, tokenizer)
    saved = json.loads(config_path.read_text())
    assert saved["architectures"] == ["PhiForCausalLM"] and "auto_map" not in saved


def test_transformers_4_style_config_loads(folder_copy, encoder):
    """Configs written by transformers 4.x keep the rotary settings at top level and name the dtype `torch_dtype`."""
    text_encoder, tokenizer = folder_copy
    config_path = text_encoder / "config.json"
    config = json.loads(config_path.read_text())
    rope = config.pop("rope_parameters")
    config.pop("dtype", None)
    config |= {"partial_rotary_factor": rope["partial_rotary_factor"], "rope_theta": rope["rope_theta"]}
    config["torch_dtype"] = "float16"
    config_path.write_text(json.dumps(config))
    loaded = PhiTextEncoder.from_pretrained(text_encoder, tokenizer)
    assert loaded.dtype == torch.float32  # the dtype argument wins over the config's
    assert_same_features(encode_all(loaded), encode_all(encoder))


def test_sharded_safetensors_load(tiny_folders, encoder, tmp_path):
    """Written by transformers itself, as the official 2-shard folder was."""
    sharded = tmp_path / "text_encoder"
    PhiForCausalLM.from_pretrained(tiny_folders[0]).save_pretrained(sharded, max_shard_size="200KB")
    index = json.loads((sharded / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) >= 2
    assert not (sharded / "model.safetensors").exists()
    loaded = PhiTextEncoder.from_pretrained(sharded, tiny_folders[1])
    assert_same_features(encode_all(loaded), encode_all(encoder))


def test_bin_weights_load(tiny_folders, encoder, tmp_path):
    text_encoder = tmp_path / "text_encoder"
    text_encoder.mkdir()
    shutil.copy(tiny_folders[0] / "config.json", text_encoder)
    state = {f"model.{name}": tensor for name, tensor in encoder.model.state_dict().items()}
    torch.save(state, text_encoder / "pytorch_model.bin")
    loaded = PhiTextEncoder.from_pretrained(text_encoder, tiny_folders[1])
    assert_same_features(encode_all(loaded), encode_all(encoder))


def test_tokenizer_from_vocab_and_merges_only(folder_copy, encoder):
    """Older tokenizer folders carry the byte-level BPE as vocab.json + merges.txt instead of tokenizer.json."""
    text_encoder, tokenizer = folder_copy
    model = json.loads((tokenizer / "tokenizer.json").read_text())["model"]
    (tokenizer / "vocab.json").write_text(json.dumps(model["vocab"]))
    merges = [" ".join(pair) for pair in model["merges"]]
    (tokenizer / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (tokenizer / "tokenizer.json").unlink()
    loaded = PhiTextEncoder.from_pretrained(text_encoder, tokenizer)
    assert_same_features(encode_all(loaded), encode_all(encoder))


# ---------------------------------------------------------------------------------------------------- errors ----


@pytest.mark.parametrize(
    "remove",
    ["text_encoder", "tokenizer", "text_encoder/config.json", "text_encoder/model.safetensors", "tokenizer/tokenizer.json"],
)
def test_missing_parts_raise_missing_component(folder_copy, remove):
    text_encoder, tokenizer = folder_copy
    target = text_encoder.parent / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(MissingComponentError, match=Path(remove).name):
        PhiTextEncoder.from_pretrained(text_encoder, tokenizer)


def test_missing_shard_raises_missing_component(tiny_folders, tmp_path):
    sharded = tmp_path / "text_encoder"
    PhiForCausalLM.from_pretrained(tiny_folders[0]).save_pretrained(sharded, max_shard_size="200KB")
    shard = sorted(sharded.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(MissingComponentError):
        PhiTextEncoder.from_pretrained(sharded, tiny_folders[1])


@pytest.mark.parametrize("change", [{"num_hidden_layers": 3}, {"intermediate_size": 96}])
def test_weights_that_do_not_fit_the_config_raise(folder_copy, change):
    text_encoder, tokenizer = folder_copy
    config_path = text_encoder / "config.json"
    config_path.write_text(json.dumps(json.loads(config_path.read_text()) | change))
    with pytest.raises(CheckpointMismatchError):
        PhiTextEncoder.from_pretrained(text_encoder, tokenizer)


def test_non_phi_config_raises(folder_copy):
    text_encoder, tokenizer = folder_copy
    config_path = text_encoder / "config.json"
    config_path.write_text(json.dumps(json.loads(config_path.read_text()) | {"model_type": "llama"}))
    with pytest.raises(InvalidConfigError, match="model_type"):
        PhiTextEncoder.from_pretrained(text_encoder, tokenizer)
