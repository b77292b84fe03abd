"""The head's padded token counts (`HEAD_PAD_ROWS`, docs/performance.md "Time to the first image"): zero tokens
appended to a step's head call leave the real tokens' values, and on CUDA the fused path captures one graph per
padded size while the reference path, which never pads, captures one per token count."""

import pytest
import torch

from models import load_pipeline
from models.pipeline.requests import ImageRequest
from models.sampling.sampler import HEAD_PAD_ROWS, ar_schedule, pad_tokens
from tests.models.sampling.two_prompts import PROMPTS, SETTINGS, two_prompt_latents


def test_pad_tokens_appends_zero_tokens_up_to_the_multiple():
    x = torch.randn(2, 5, 3)
    padded = pad_tokens(x, 4)
    assert padded.shape == (2, 8, 3)
    assert torch.equal(padded[:, :5], x) and not padded[:, 5:].any()
    assert pad_tokens(x, 5) is x and pad_tokens(x, 1) is x


def test_padding_the_head_tokens_leaves_the_real_ones(tiny_t2i_folder):
    pipe = load_pipeline(tiny_t2i_folder, device="cpu", dtype="fp32")
    counts = ar_schedule(pipe.config.num_image_tokens, SETTINGS.ar_steps)
    # 2 CFG rows × 2 images: a multiple of 8 tokens, so every step of this schedule is padded
    assert all(count % 8 for count in counts)
    exact, padded = two_prompt_latents(pipe, head_pad_rows=1), two_prompt_latents(pipe, head_pad_rows=32)
    torch.testing.assert_close(padded, exact, rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")
@pytest.mark.parametrize("kernels", ["fused", "reference"])
def test_the_fused_path_captures_a_graph_per_padded_size(tiny_t2i_folder, kernels):
    pipe = load_pipeline(tiny_t2i_folder, device="cuda", dtype="bf16", kernels=kernels)
    pipe.sample_latents([ImageRequest(seed=4, prompt=PROMPTS[0])], SETTINGS)
    counts = ar_schedule(pipe.config.num_image_tokens, SETTINGS.ar_steps)
    multiple = HEAD_PAD_ROWS // 2 if kernels == "fused" else 1  # 2 CFG rows × 1 image
    assert len(pipe.head_graphs) == len({-(-count // multiple) for count in counts})
