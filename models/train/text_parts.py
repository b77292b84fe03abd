"""`lina train text-encoder`: a small Phi text encoder (random, or trained as a language model) and a tokenizer,
built offline for some captions.

The parts are written with `PhiTextEncoder.save_pretrained`, so the folders have the released layout
(`text_encoder/`: a `PhiConfig` and `PhiForCausalLM` weights; `tokenizer/`: `CodeGenTokenizerFast` files)
and load through the pipeline's own path. The tokenizer is a byte-level BPE trained on the captions until
every word is a single token (any other text still encodes, byte by byte). By default the Phi weights stay
random: its causal attention still gives each row a feature of the words up to it, so the feature rows carry
word order, which LINA's condition tokens (no position embedding) would otherwise lose. Weights are drawn
at a unit-preserving scale (N(0, 1/fan_in), unit embeddings) so that every layer mixes the words it sees.

`train_language_model` can then train the Phi body, before LINA ever sees it, as a next-word model of captions
(a causal LM on the same tokens `PhiTextEncoder.encode` reads, with a throw-away LM head): a trained encoder
for comparison with the frozen random one (docs/training.md). LINA still trains with it frozen.
"""

import math
import random
from collections.abc import Iterable
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from torch import nn
from transformers import CodeGenTokenizerFast, PhiConfig, PhiForCausalLM, PhiModel

from models.constants import TEXT_ENCODER_FOLDER, TOKENIZER_FOLDER
from models.data.shapes_prompts import evaluation_prompts, sample_metadata
from models.errors import TrainingConfigError
from models.eval.geneval.prompts import TAGS
from models.network.text_encoder import PAD_TOKEN_ID, PhiTextEncoder
from models.train.data import SHAPES, open_source

END_OF_TEXT = "<|endoftext|>"  # Phi-2's BOS, EOS and UNK token
HEAD_WIDTH = 32
PHI2_PARTIAL_ROTARY = 0.4  # rotary on 40 % of each head's dims, as Phi-2
VOCAB_MULTIPLE = 64  # the embedding table is rounded up to a multiple of this
MAX_POSITIONS = 512
SHAPES_CAPTION_SAMPLES = 5000  # training captions drawn to collect the shapes vocabulary
LANGUAGE_MODEL_CAPTIONS = 20_000  # shapes captions a language-model-trained encoder learns from
IGNORED_LABEL = -100  # transformers' causal-LM loss skips these positions (the padding)


def shapes_captions(samples: int = SHAPES_CAPTION_SAMPLES, seed: int = 0) -> list[str]:
    """Captions of the shapes domain: the evaluation prompts and `samples` random training captions."""
    captions = [entry["prompt"] for entry in evaluation_prompts()]
    return captions + _training_captions(random.Random(f"shapes-vocabulary/{seed}"), samples)


def _training_captions(rng: random.Random, count: int) -> list[str]:
    """`count` captions of random shapes training scenes, each task equally likely."""
    return [sample_metadata(rng.choice(TAGS), rng)["prompt"] for _ in range(count)]


def captions_of(data: str) -> list[str]:
    """The captions a tokenizer is built for: the shapes domain's, or those of a captions folder or `.jsonl`.

    Raises:
        TrainingDataError: `data` is not "shapes" and holds no captions.
    """
    if data == SHAPES:
        return shapes_captions()
    source = open_source(data, task="t2i", size=1, dataset_size=1)
    return source.captions()


def word_tokenizer(texts: Iterable[str]) -> CodeGenTokenizerFast:
    """A byte-level BPE CodeGen tokenizer in which every word of `texts` is one token."""
    texts = list(texts)
    words = {word for text in texts for word in text.split()}
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    # Enough room for every merge that builds every word (with and without its leading space) from bytes.
    room = len(pre_tokenizers.ByteLevel.alphabet()) + 1 + 2 * sum(len(word) + 1 for word in words)
    trainer = trainers.BpeTrainer(
        vocab_size=room, special_tokens=[END_OF_TEXT], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(sorted(set(texts)), trainer=trainer)
    special = {"bos_token": END_OF_TEXT, "eos_token": END_OF_TEXT, "unk_token": END_OF_TEXT}
    return CodeGenTokenizerFast(tokenizer_object=backend, **special)


@torch.no_grad()
def random_phi(vocab_size: int, hidden_size: int, layers: int, seed: int) -> PhiModel:
    """A Phi body with Phi-2's layout at a small width, every weight drawn from `seed` (unit-preserving scale).

    Raises:
        TrainingConfigError: a width that is not a multiple of the head width (32).
    """
    if hidden_size < HEAD_WIDTH or hidden_size % HEAD_WIDTH:
        raise TrainingConfigError(
            f"text encoder width {hidden_size}: use a multiple of {HEAD_WIDTH} (heads of {HEAD_WIDTH})"
        )
    config = PhiConfig(
        vocab_size=math.ceil(vocab_size / VOCAB_MULTIPLE) * VOCAB_MULTIPLE, hidden_size=hidden_size,
        intermediate_size=4 * hidden_size, num_hidden_layers=layers, num_attention_heads=hidden_size // HEAD_WIDTH,
        partial_rotary_factor=PHI2_PARTIAL_ROTARY, max_position_embeddings=MAX_POSITIONS,
    )
    with torch.random.fork_rng(devices=[]):  # construction draws a default init we overwrite; keep the global stream
        model = PhiModel(config)
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, generator=generator)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=module.in_features**-0.5, generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model.eval()


def build_text_parts(texts: Iterable[str], *, hidden_size: int = 128, layers: int = 2, seed: int = 0) -> PhiTextEncoder:
    """The tokenizer of `texts` and a random Phi of that vocabulary, as one encoder (nothing written)."""
    tokenizer = word_tokenizer(texts)
    return PhiTextEncoder(random_phi(len(tokenizer), hidden_size, layers, seed), tokenizer)


def save_text_parts(encoder: PhiTextEncoder, out_folder: str | Path) -> None:
    """Write `out_folder/text_encoder/` and `out_folder/tokenizer/` in the released layout."""
    out_folder = Path(out_folder)
    encoder.save_pretrained(out_folder / TEXT_ENCODER_FOLDER, out_folder / TOKENIZER_FOLDER)


def language_model_captions(data: str, seed: int = 0) -> list[str]:
    """The captions a text encoder learns from: for shapes, random training captions (the evaluation list itself is
    not among the inputs); otherwise the data's own captions."""
    if data != SHAPES:
        return captions_of(data)
    return _training_captions(random.Random(f"shapes-language-model/{seed}"), LANGUAGE_MODEL_CAPTIONS)


def train_language_model(
    encoder: PhiTextEncoder,
    captions: list[str],
    *,
    steps: int,
    batch_size: int = 256,
    lr: float = 3e-3,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> list[float]:
    """Train `encoder`'s Phi body in place as a next-word model of `captions` (AdamW, constant `lr`, float32).

    Captions are tokenized as `encode` tokenizes prompts (no BOS/EOS), so the rows LINA later reads come from the
    very positions the model trained on; each word is predicted from the words before it (the first word is not
    predicted). The LM head is made for the training and dropped; the body is left on the CPU, frozen again.

    Returns:
        The loss of every step.

    Raises:
        TrainingConfigError: no caption holds two tokens (nothing to predict).
    """
    token_ids = [ids for ids in encoder.tokenizer(captions, add_special_tokens=False)["input_ids"] if len(ids) > 1]
    if not token_ids:
        raise TrainingConfigError("the captions give nothing to predict: every one is a single token or empty")
    longest = max(len(ids) for ids in token_ids)
    tokens = torch.full((len(token_ids), longest), PAD_TOKEN_ID, dtype=torch.long)  # right-padded, as `encode`
    labels = torch.full((len(token_ids), longest), IGNORED_LABEL, dtype=torch.long)
    for row, ids in enumerate(token_ids):
        tokens[row, : len(ids)] = labels[row, : len(ids)] = torch.tensor(ids)
    with torch.random.fork_rng(devices=[]):  # the head's default init must not move the global stream
        language_model = PhiForCausalLM(encoder.model.config)
    language_model.model = encoder.model.requires_grad_(True)  # the encoder's own (frozen) body, trainable for now
    language_model.to(device).train()
    optimizer = torch.optim.AdamW(language_model.parameters(), lr=lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for _ in range(steps):
        batch = torch.randint(len(token_ids), (batch_size,), generator=generator)
        loss = language_model(input_ids=tokens[batch].to(device), labels=labels[batch].to(device)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    encoder.model.to("cpu").eval().requires_grad_(False)
    return losses
