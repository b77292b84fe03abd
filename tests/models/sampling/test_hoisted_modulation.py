"""The head's AdaLN statistics computed for all diffusion steps before the loop (`HOIST_MAX_ROWS`): they depend on
the condition and the step's time only, so the hoisted loop gives the per-step loop's values."""

import torch

from models import load_pipeline
from tests.models.sampling.two_prompts import two_prompt_latents


def test_the_head_takes_its_statistics_computed_apart(tiny_t2i_folder):
    head = load_pipeline(tiny_t2i_folder, device="cpu", dtype="fp32").transformer.image_decoder
    torch.manual_seed(0)
    width = head.head.in_features
    noisy, cond = torch.randn(3, 5, head.head.out_features), torch.randn(3, 5, width)
    steps = torch.randn(4, 3, 5, width)  # a leading step axis, as the sampler passes
    steps[2] = cond
    projections = head.project_condition(torch.nn.functional.silu(steps))
    assert [p.shape[-1] for p in projections] == [3 * width] * len(head.blocks) + [2 * width]
    hoisted = head.velocity_projected(noisy, [p[2] for p in projections])
    torch.testing.assert_close(hoisted, head.velocity(noisy, cond), rtol=1e-6, atol=1e-6)


def test_hoisting_leaves_the_samples(tiny_t2i_folder):
    pipe = load_pipeline(tiny_t2i_folder, device="cpu", dtype="fp32")
    per_step, hoisted = two_prompt_latents(pipe, hoist_max_rows=0), two_prompt_latents(pipe, hoist_max_rows=10_000)
    torch.testing.assert_close(hoisted, per_step, rtol=1e-5, atol=1e-5)
