"""The CUDA-graph head loop gives the eager loop's results bit for bit (CUDA only)."""

import pytest
import torch

from models import load_pipeline
from models.pipeline.requests import ImageRequest
from models.sampling.settings import SamplingSettings

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a CUDA device")


@pytest.mark.parametrize("dtype", ["bf16", "fp32"])
@pytest.mark.parametrize("settings", [SamplingSettings(6, 4, cfg=3.0, cfg_min=1.0), SamplingSettings(6, 4, cfg=1.0)], ids=["ramp", "no-cfg"])
def test_graphed_head_loop_equals_eager(tiny_t2i_folder, settings, dtype):
    pipe = load_pipeline(tiny_t2i_folder, device="cuda", dtype=dtype)
    requests = [ImageRequest(seed=4, prompt="a red cube"), ImageRequest(seed=5, prompt="a blue ball")]
    graphed = pipe.sample_latents(requests, settings)
    again = pipe.sample_latents(requests, settings)  # replays graphs captured by the first call
    graphs = len(pipe.head_graphs)
    pipe.head_graphs = None
    eager = pipe.sample_latents(requests, settings)
    assert graphs > 0
    assert torch.equal(graphed, eager) and torch.equal(again, eager)
