"""Latents of two prompts from the tiny text-to-image folder, for tests of sampler options that must leave them."""

import torch

from models.sampling.sampler import sample_latents
from models.sampling.settings import SamplingSettings

SETTINGS = SamplingSettings(ar_steps=6, diffusion_steps=4, cfg=3.0)
PROMPTS = ["a red cube", "a blue ball"]


def two_prompt_latents(pipe, **sampler_options) -> torch.Tensor:
    """`sample_latents` of PROMPTS (seeds 4 and 5, empty negatives) with SETTINGS and the given sampler options."""
    encode = pipe.text_encoder.encode
    condition = pipe.transformer.condition_tokens_from_text(encode(PROMPTS, pipe.config.text_token_len))
    null = pipe.transformer.condition_tokens_from_text(encode([""] * len(PROMPTS), pipe.config.text_token_len))
    generators = [torch.Generator().manual_seed(seed) for seed in (4, 5)]
    return sample_latents(pipe.transformer, pipe.scheduler, condition, null, generators, SETTINGS, **sampler_options)
