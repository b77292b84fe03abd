"""Expected slices from the authors' pipeline (techmonsterwang/LINA f13f7c3) on our tiny factory folders.

How the numbers were made (outside this repository, never committed): the tiny folders written by
`tests.factories.make_tiny_pipeline(..., task)` were loaded into the authors' `NOVATransformer3DModel`
(tiny archs registered in their registry; strict `load_state_dict`), their `AutoencoderKL` /
`AutoencoderKLMAR` and diffusers' `FlowMatchEulerDiscreteScheduler(1000, shift=1)`, and their
`NOVAC2IPipeline` / `NOVAPipeline` (t2i with `prompt_embeds` from our Phi-2 wrapper) were called in
float32 on the CPU with `generator=torch.Generator("cpu").manual_seed(seed)`. The latents were captured
before the VAE decode. Our float32 results agree to ~1e-6 (summation order); bf16 agrees bit for bit.
"""

import numpy as np
import pytest
import torch

from models import load_pipeline
from models.pipeline.requests import ImageRequest
from models.sampling.settings import SamplingSettings

REFERENCE = {
    "c2i": dict(
        request=ImageRequest(seed=7, class_label=207),
        settings=SamplingSettings(ar_steps=6, diffusion_steps=4, cfg=3.0, cfg_min=1.0),
        latents_first8=[1.08225, 0.502055, 2.150814, -0.216034, 0.491763, 0.051267, -0.379259, -0.22686],
        latents_sum=-2.62331,
        latents_abs_sum=235.70964,
        pixels_first8=[128, 138, 125, 125, 136, 142, 123, 131],
        pixels_sum=1612509,
    ),
    "t2i": dict(
        request=ImageRequest(seed=3, prompt="a red cube on a table"),
        settings=SamplingSettings(ar_steps=6, diffusion_steps=4, cfg=4.0),
        latents_first8=[0.692902, 1.073917, -1.495862, 2.280527, 0.686375, -0.439236, -0.835141, 1.038352],
        latents_sum=-45.25138,
        latents_abs_sum=244.38528,
        pixels_first8=[127, 111, 115, 127, 111, 119, 127, 112],
        pixels_sum=1415739,
    ),
}


@pytest.mark.parametrize("task", ["c2i", "t2i"])
def test_matches_the_authors_pipeline(task, request):
    folder = request.getfixturevalue(f"tiny_{task}_folder")
    expected = REFERENCE[task]
    pipe = load_pipeline(folder, device="cpu", dtype="fp32")
    latents = pipe.sample_latents([expected["request"]], expected["settings"])
    torch.testing.assert_close(latents.flatten()[:8], torch.tensor(expected["latents_first8"]), atol=2e-5, rtol=0)
    assert latents.sum().item() == pytest.approx(expected["latents_sum"], abs=1e-3)
    assert latents.abs().sum().item() == pytest.approx(expected["latents_abs_sum"], abs=1e-3)
    pixels = np.asarray(pipe.decode(latents)[0]).astype(np.int64).flatten()
    # uint8 truncation can flip a pixel by one level when a value sits on an integer boundary
    assert np.abs(pixels[:8] - np.array(expected["pixels_first8"])).max() <= 1
    assert abs(int(pixels.sum()) - expected["pixels_sum"]) <= 64
