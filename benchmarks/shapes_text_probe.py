"""Does a shapes model's text encoder carry what the weak shapes tasks need? Probes on its caption features
(docs/training.md, "The shipped model's scores").

LINA reads a caption's feature rows as a set: the condition tokens carry no position embedding, so word order
reaches it only through what each row took from the words before it. This script asks whether that set still
says which colour belongs to which shape (colour attribution) and which shape is where (position). It trains a
small attention-pooling probe (a few learned queries over the rows, then an MLP) on the features of three
quarters of the distinct captions of a task and reports its accuracy on the rest. The same probe on the rows'
word embeddings alone, a bag of words with no order, is the baseline.

    python -m benchmarks.shapes_text_probe -m lina-shapes
    lina train text-encoder --out runs/lm-parts --steps 400 && python -m benchmarks.shapes_text_probe --parts runs/lm-parts
"""

import argparse
import itertools
import random
from pathlib import Path

import torch
from torch import nn

from models import load_pipeline
from models.constants import TEXT_ENCODER_FOLDER, TOKENIZER_FOLDER
from models.data.shapes_prompts import color_attr, position
from models.data.shapes_vocab import COLOUR_NAMES, SHAPES
from models.eval.geneval.rules import RELATIONS
from models.network.text_encoder import PhiTextEncoder

TRAIN_FRACTION = 0.75
PROBE_QUERIES, PROBE_WIDTH, PROBE_HIDDEN = 4, 128, 256
PROBE_STEPS, PROBE_LR = 1500, 1e-3
POSITION_CAPTIONS = 1200  # of the 1,344 two-colour position captions, for a probe of a few seconds
NO_COLOUR = len(COLOUR_NAMES)  # colour-attribution label of a shape the caption does not name


def colour_attribution_task() -> tuple[list[str], torch.Tensor]:
    """Every two-shape, two-colour caption; labels [N, 3]: each shape's colour index, or NO_COLOUR."""
    captions, labels = [], []
    for first, second in itertools.permutations(SHAPES, 2):
        for first_colour, second_colour in itertools.permutations(COLOUR_NAMES, 2):
            captions.append(color_attr(first, first_colour, second, second_colour)["prompt"])
            label = [NO_COLOUR] * len(SHAPES)
            label[SHAPES.index(first)] = COLOUR_NAMES.index(first_colour)
            label[SHAPES.index(second)] = COLOUR_NAMES.index(second_colour)
            labels.append(label)
    return captions, torch.tensor(labels)


def position_task(rng: random.Random) -> tuple[list[str], torch.Tensor]:
    """Two-colour position captions; labels [N, 1]: the (subject, relation, target) triple's index."""
    triples = list(itertools.product(itertools.permutations(SHAPES, 2), RELATIONS))
    pairs = []
    for index, ((subject, target), relation) in enumerate(triples):
        for subject_colour, target_colour in itertools.permutations(COLOUR_NAMES, 2):
            caption = position(subject, relation, target, subject_colour=subject_colour, target_colour=target_colour)
            pairs.append((caption["prompt"], index))
    pairs = rng.sample(pairs, min(POSITION_CAPTIONS, len(pairs)))
    return [caption for caption, _ in pairs], torch.tensor([[index] for _, index in pairs])


class SetProbe(nn.Module):
    """Attention pooling over a set of rows (learned queries, no positions) → `heads` × `classes` logits."""

    def __init__(self, dim: int, heads: int, classes: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(PROBE_QUERIES, PROBE_WIDTH) * 0.1)
        self.keys, self.values = nn.Linear(dim, PROBE_WIDTH), nn.Linear(dim, PROBE_WIDTH)
        self.head = nn.Sequential(
            nn.Linear(PROBE_QUERIES * PROBE_WIDTH, PROBE_HIDDEN), nn.GELU(), nn.Linear(PROBE_HIDDEN, heads * classes)
        )
        self.heads, self.classes = heads, classes

    def forward(self, rows: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """rows [B, P, dim], valid [B, P] → logits [B, heads, classes]."""
        scores = torch.einsum("qw,bpw->bqp", self.queries, self.keys(rows)).masked_fill(~valid[:, None], -torch.inf)
        pooled = torch.einsum("bqp,bpw->bqw", scores.softmax(-1), self.values(rows))
        return self.head(pooled.flatten(1)).view(-1, self.heads, self.classes)


def held_out_accuracy(rows: torch.Tensor, valid: torch.Tensor, labels: torch.Tensor, classes: int, seed: int) -> float:
    """Train a probe on the first TRAIN_FRACTION of the captions; the share of the rest's labels it gets right."""
    torch.manual_seed(seed)
    split = int(TRAIN_FRACTION * len(labels))
    probe = SetProbe(rows.shape[-1], labels.shape[1], classes)
    optimizer = torch.optim.Adam(probe.parameters(), lr=PROBE_LR)
    for _ in range(PROBE_STEPS):
        logits = probe(rows[:split], valid[:split])
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), labels[:split].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        predicted = probe(rows[split:], valid[split:]).argmax(-1)
    named = labels[split:] != NO_COLOUR if labels.shape[1] > 1 else torch.ones_like(predicted, dtype=torch.bool)
    return (predicted == labels[split:])[named].float().mean().item()


def caption_rows(encoder, captions: list[str], max_rows: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The text encoder's rows [N, P, dim], their word embeddings alone [N, P, dim], and which rows exist [N, P]."""
    features = encoder.encode(captions, max_rows)
    width = features[0].shape[1]
    rows = torch.zeros(len(captions), max_rows, width)
    words = torch.zeros_like(rows)
    valid = torch.zeros(len(captions), max_rows, dtype=torch.bool)
    embedding = encoder.model.get_input_embeddings().weight.detach().float()
    for i, (caption, feature) in enumerate(zip(captions, features, strict=True)):
        count = feature.shape[0]
        token_ids = encoder.tokenizer(caption)["input_ids"][:count]
        rows[i, :count], words[i, :count], valid[i, :count] = feature.float().cpu(), embedding[token_ids], True
    return rows, words, valid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-m", "--model", default="lina-shapes", help="a text-to-image shapes model (default lina-shapes)")
    parser.add_argument("--parts", type=Path, help="probe this folder's text_encoder/ and tokenizer/ instead of the "
                        "model's (as `lina train text-encoder` writes them); the model still sets the row count")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    pipe = load_pipeline(args.model, device="cpu")
    max_rows = pipe.transformer.config.text_token_len
    encoder = pipe.text_encoder
    if args.parts is not None:
        encoder = PhiTextEncoder.from_pretrained(args.parts / TEXT_ENCODER_FOLDER, args.parts / TOKENIZER_FOLDER)
    rng = random.Random(args.seed)
    tasks = {"colour attribution": (colour_attribution_task(), NO_COLOUR + 1),
             "position": (position_task(rng), len(SHAPES) * (len(SHAPES) - 1) * len(RELATIONS))}
    for name, ((captions, labels), classes) in tasks.items():
        order = torch.randperm(len(captions), generator=torch.Generator().manual_seed(args.seed))
        captions, labels = [captions[i] for i in order], labels[order]
        rows, words, valid = caption_rows(encoder, captions, max_rows)
        encoded = held_out_accuracy(rows, valid, labels, classes, args.seed)
        bag = held_out_accuracy(words, valid, labels, classes, args.seed)
        print(f"{name}: {len(captions)} captions; held-out accuracy from the text encoder's rows {encoded:.3f}, "
              f"from the bag of word embeddings {bag:.3f}")


if __name__ == "__main__":
    main()
