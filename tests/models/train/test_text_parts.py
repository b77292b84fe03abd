"""The text parts of a demo pipeline: a word-level tokenizer and a Phi, random or trained as a next-word model of
the captions, written in the released layout and read back by the pipeline's own loader."""

import pytest
import torch

from models.errors import TrainingConfigError
from models.network.text_encoder import PhiTextEncoder
from models.train.text_parts import (
    build_text_parts,
    language_model_captions,
    save_text_parts,
    shapes_captions,
    train_language_model,
)

CAPTIONS = shapes_captions(200)
PROMPT = "a photo of a red circle left of a blue square"


def tiny_encoder() -> PhiTextEncoder:
    return build_text_parts(CAPTIONS, hidden_size=32, layers=1, seed=0)


def test_language_model_training_learns_the_captions_and_leaves_a_frozen_encoder(tmp_path):
    encoder = tiny_encoder()
    random_rows = encoder.encode([PROMPT], 16)[0].clone()
    captions = language_model_captions("shapes")[:2000]
    losses = train_language_model(encoder, captions, steps=40, batch_size=64, lr=1e-2)
    assert len(losses) == 40 and sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0
    assert not encoder.model.training and not any(p.requires_grad for p in encoder.model.parameters())
    trained_rows = encoder.encode([PROMPT], 16)[0]
    assert not torch.allclose(trained_rows, random_rows)

    again = tiny_encoder()
    train_language_model(again, captions, steps=40, batch_size=64, lr=1e-2)
    torch.testing.assert_close(again.encode([PROMPT], 16)[0], trained_rows, rtol=0, atol=0)  # seeded, so repeatable

    save_text_parts(encoder, tmp_path)
    loaded = PhiTextEncoder.from_pretrained(tmp_path / "text_encoder", tmp_path / "tokenizer")
    torch.testing.assert_close(loaded.encode([PROMPT], 16)[0], trained_rows)


def test_the_language_model_reads_seeded_training_captions():
    captions = language_model_captions("shapes")
    assert captions == language_model_captions("shapes") and len(set(captions)) > 500
    assert all(caption.startswith("a photo of ") for caption in captions)


def test_captions_with_nothing_to_predict_are_refused():
    with pytest.raises(TrainingConfigError, match="nothing to predict"):
        train_language_model(tiny_encoder(), ["a", ""], steps=1)
