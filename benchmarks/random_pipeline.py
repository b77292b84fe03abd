"""Write a pipeline folder of a released architecture with random weights, for measurements on a GPU machine that
cannot download the official ones: `lina generate`, `lina eval fid` and `lina eval geneval` then run on it as
they would on the real folder (the weights change the pictures, not the time).

    python -m benchmarks.random_pipeline lina-c2i-256 /tmp/c2i-256
    python -m benchmarks.random_pipeline lina-t2i-512 /tmp/t2i-512    # with a random Phi-2-sized text encoder

The text encoder of a text-to-image folder has Phi-2's architecture and a small byte-level tokenizer trained in
memory (the test suite's): prompts cost what Phi-2's cost per token, but tokenise into more tokens.
"""

import argparse
from pathlib import Path

import torch
from transformers import PhiConfig, PhiModel

from models.constants import RELEASED_MODELS
from models.network.config import released_transformer_config
from models.network.text_encoder import PhiTextEncoder
from models.perf.profiled_pipelines import RELEASED_VAE_CONFIGS, random_init_pipeline
from models.pipeline.pipeline import LinaPipeline
from tests.tiny_text import tiny_tokenizer

# Phi-2 (microsoft/phi-2): 32 layers of width 2560, 32 heads, rotary on 40 % of each head.
PHI2 = dict(hidden_size=2560, intermediate_size=10240, num_hidden_layers=32, num_attention_heads=32,
            partial_rotary_factor=0.4, max_position_embeddings=2048)


@torch.no_grad()
def random_phi2(vocab_size: int, device: torch.device, dtype: torch.dtype, seed: int) -> PhiModel:
    """Phi-2's body with random weights, built on the meta device and filled in place."""
    with torch.device("meta"):
        model = PhiModel(PhiConfig(vocab_size=vocab_size, **PHI2))
    model = model.to(dtype).to_empty(device=device)
    generator = torch.Generator(device).manual_seed(seed)
    for name, tensor in model.named_parameters():
        if name.endswith("bias"):
            tensor.zero_()
        elif tensor.dim() < 2:
            tensor.fill_(1)
        else:
            tensor.normal_(0, tensor[0].numel() ** -0.5, generator=generator)
    # The rotary table is computed from the config, not loaded: build it again where the weights now are.
    with torch.device(device):
        model.rotary_emb = type(model.rotary_emb)(config=model.config)
    return model.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("alias", choices=sorted(RELEASED_MODELS))
    parser.add_argument("folder", type=Path)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="bf16", choices=("bf16", "fp32"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    release = RELEASED_MODELS[args.alias]
    config = released_transformer_config(release["task"], release["resolution"])
    parts = random_init_pipeline(config, RELEASED_VAE_CONFIGS[release["task"]], args.device, args.dtype, args.seed)
    text_encoder = None
    if config.is_text_conditioned:
        tokenizer = tiny_tokenizer()
        dtype = next(parts.transformer.parameters()).dtype
        text_encoder = PhiTextEncoder(random_phi2(len(tokenizer), torch.device(args.device), dtype, args.seed), tokenizer)
    LinaPipeline(parts.transformer, parts.vae, parts.scheduler, text_encoder).save_pretrained(args.folder)
    print(f"wrote {args.alias} with random weights to {args.folder}")


if __name__ == "__main__":
    main()
