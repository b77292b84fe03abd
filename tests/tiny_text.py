"""Tiny real text parts for tests: a random 2-layer Phi and a byte-level BPE CodeGen tokenizer.

They are written with `PhiTextEncoder.save_pretrained`, so the folders have the official layout
(`PhiForCausalLM` keys, `CodeGenTokenizerFast` files) and load through the user path.
"""

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import CodeGenTokenizerFast, PhiConfig, PhiModel

from models.network.text_encoder import PhiTextEncoder

# Phi-2's special token, used as BOS, EOS and UNK by its tokenizer.
END_OF_TEXT = "<|endoftext|>"
# The BPE learns merges from these; the byte alphabet makes every other string encodable too.
TRAINING_TEXT = (
    "a photo of a cat sitting on a red sofa",
    "an astronaut riding a horse on the moon, digital art",
    "a bowl of fruit on a wooden table in the morning light",
    "two dogs playing in the snow near a small house",
)
TINY_VOCAB = 320  # 256 byte symbols + 1 special token + learned merges, rounded up for the embedding
TINY_LAYERS = 2
TINY_HEAD_DIM = 16  # rotary on 0.4 * 16 = 6 dims per head, like Phi-2's 32 of 80
PHI2_PARTIAL_ROTARY = 0.4
TINY_MAX_POSITIONS = 512
WEIGHT_SCALE = 0.2  # random weights large enough that every token, norm and layer moves the features


def tiny_tokenizer() -> CodeGenTokenizerFast:
    """A byte-level BPE CodeGen tokenizer trained in memory on a few sentences."""
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=TINY_VOCAB,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(TRAINING_TEXT, trainer=trainer)
    # transformers 5 builds an empty vocabulary from vocab/merges file arguments, so pass the backend itself.
    return CodeGenTokenizerFast(
        tokenizer_object=backend, bos_token=END_OF_TEXT, eos_token=END_OF_TEXT, unk_token=END_OF_TEXT
    )


def tiny_phi_config(hidden_size: int = 64, layers: int = TINY_LAYERS) -> PhiConfig:
    """A small Phi (2 layers unless asked) with Phi-2's partial rotary factor and hidden_size // 16 heads."""
    return PhiConfig(
        vocab_size=TINY_VOCAB,
        hidden_size=hidden_size,
        intermediate_size=4 * hidden_size,
        num_hidden_layers=layers,
        num_attention_heads=hidden_size // TINY_HEAD_DIM,
        partial_rotary_factor=PHI2_PARTIAL_ROTARY,
        max_position_embeddings=TINY_MAX_POSITIONS,
    )


@torch.no_grad()
def tiny_phi_model(hidden_size: int = 64, seed: int = 0, layers: int = TINY_LAYERS) -> PhiModel:
    """A random tiny Phi body; LayerNorm weights and all biases are redrawn too, so a skipped load shows."""
    model = PhiModel(tiny_phi_config(hidden_size, layers))
    generator = torch.Generator().manual_seed(seed)
    for name, parameter in model.named_parameters():
        noise = torch.randn(parameter.shape, generator=generator) * WEIGHT_SCALE
        is_norm_weight = "layernorm" in name and name.endswith("weight")
        parameter.copy_(1 + noise if is_norm_weight else noise)
    return model.eval()


def write_tiny_text_components(
    text_encoder_folder: str | Path,
    tokenizer_folder: str | Path,
    *,
    hidden_size: int = 64,
    seed: int = 0,
    layers: int = TINY_LAYERS,
) -> None:
    """Write `text_encoder/` and `tokenizer/` folders of a tiny random Phi in the official layout."""
    encoder = PhiTextEncoder(tiny_phi_model(hidden_size, seed, layers), tiny_tokenizer())
    encoder.save_pretrained(text_encoder_folder, tokenizer_folder)
