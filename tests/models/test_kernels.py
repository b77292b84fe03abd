"""Choosing the linear-attention op: the plain reference by default, the fused Triton kernel on request."""

import pytest
import torch

from models import load_pipeline
from models.ops.linear_attn.reference import linear_attention_qkv
from models.pipeline import ImageRequest
from models.sampler import SamplingSettings

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused kernel runs on CUDA")


def test_reference_is_the_default_and_bad_choices_are_refused(tiny_c2i_folder):
    pipe = load_pipeline(tiny_c2i_folder, device="cpu")
    assert pipe.transformer.image_encoder.blocks[-1].attn.kernel is linear_attention_qkv
    with pytest.raises(ValueError, match="'reference' or 'fused'"):
        pipe.transformer.set_attention_kernel("flash")
    with pytest.raises(ValueError, match="CUDA only"):
        load_pipeline(tiny_c2i_folder, device="cpu", attention_kernel="fused")


@cuda
def test_fused_pipeline_matches_reference_within_bf16_rounding(tiny_t2i_folder):
    settings = SamplingSettings(6, 4, cfg=3.0, cfg_min=1.0)
    requests = [ImageRequest(seed=1, prompt="a red cube"), ImageRequest(seed=2, prompt="")]
    reference = load_pipeline(tiny_t2i_folder, device="cuda", dtype="bf16").sample_latents(requests, settings)
    fused = load_pipeline(tiny_t2i_folder, device="cuda", dtype="bf16", attention_kernel="fused").sample_latents(requests, settings)
    error = (fused.float() - reference.float()).pow(2).mean().sqrt() / reference.float().pow(2).mean().sqrt()
    assert error < 2e-2, f"relative RMS {error:.3e}"
