"""Choosing the op set: plain references on the CPU, fused Triton kernels by default on CUDA.

The fused set's per-op agreement is tested in tests/models/ops; here, on CUDA, whole generations: a bf16 image
from the fused kernels must be as close to the float32 image as the bf16 image of the reference ops is.
"""

import pytest
import torch

from models import load_pipeline
from models.errors import LinaError
from models.ops import REFERENCE_KERNELS, resolve_kernels
from models.pipeline.requests import ImageRequest
from models.sampling.settings import SamplingSettings
from tests.numerics import relative_rms

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="the fused kernels run on CUDA")


def test_cpu_pipelines_run_the_reference_ops(tiny_c2i_folder):
    pipe = load_pipeline(tiny_c2i_folder, device="cpu")
    assert pipe.transformer.kernels_name == "reference"
    with_kernels = [m for m in pipe.transformer.modules() if hasattr(m, "kernels")]
    assert with_kernels and all(m.kernels is REFERENCE_KERNELS for m in with_kernels)


def test_auto_picks_fused_on_cuda_only():
    assert resolve_kernels("auto", torch.device("cpu")) == "reference"
    assert resolve_kernels("reference", torch.device("cuda")) == "reference"
    with pytest.raises(ValueError, match="expected one of auto, fused, reference"):
        resolve_kernels("flash", torch.device("cpu"))


@pytest.mark.parametrize(("capability", "expected"), [((7, 0), "reference"), ((8, 0), "fused"), ((9, 0), "fused")])
def test_auto_needs_an_ampere_or_newer_gpu(monkeypatch, capability, expected):
    pytest.importorskip("triton")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)
    assert resolve_kernels("auto", torch.device("cuda", 0)) == expected


def test_bad_choices_are_refused(tiny_c2i_folder):
    pipe = load_pipeline(tiny_c2i_folder, device="cpu")
    with pytest.raises(ValueError, match="expected one of"):
        pipe.transformer.set_kernels("flash")
    with pytest.raises(LinaError, match="CUDA only"):
        load_pipeline(tiny_c2i_folder, device="cpu", kernels="fused")


@cuda
def test_cuda_default_is_fused(tiny_c2i_folder):
    assert load_pipeline(tiny_c2i_folder, device="cuda").transformer.kernels_name == "fused"


@cuda
@pytest.mark.parametrize("folder", ["tiny_t2i_folder", "tiny_c2i_folder"])
def test_fused_generation_is_as_accurate_as_reference(folder, request):
    """Error against float32, summed over seeds: fused bf16 within 1.5× of reference bf16 (and both small).

    Random weights make the AR loop sensitive: two valid bf16 computations drift apart over the steps.
    What matters is that the fused kernels add no error beyond bf16's own, which this measures.
    """
    path = request.getfixturevalue(folder)
    settings = SamplingSettings(8, 6, cfg=3.0, cfg_min=1.0)
    kind = {"prompt": "a red cube"} if "t2i" in folder else {"class_label": 3}
    requests = [ImageRequest(seed=seed, **kind) for seed in range(4)]
    exact = load_pipeline(path, device="cuda", dtype="fp32", kernels="reference").sample_latents(requests, settings)
    errors = {}
    for kernels in ("reference", "fused"):
        latents = load_pipeline(path, device="cuda", dtype="bf16", kernels=kernels).sample_latents(requests, settings)
        errors[kernels] = relative_rms(latents.float(), exact)
    assert errors["reference"] < 0.1, errors
    assert errors["fused"] <= 1.5 * errors["reference"], errors


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")
def test_pipeline_on_the_second_gpu_matches_the_first(tiny_t2i_folder):
    """Kernels and head graphs run on the pipeline's GPU, not the current one (Triton launches on the current)."""
    settings = SamplingSettings(6, 4, cfg=3.0)
    requests = [ImageRequest(seed=1, prompt="a red cube")]
    assert torch.cuda.current_device() == 0
    first = load_pipeline(tiny_t2i_folder, device="cuda:0", dtype="bf16").sample_latents(requests, settings)
    second = load_pipeline(tiny_t2i_folder, device="cuda:1", dtype="bf16").sample_latents(requests, settings)
    assert torch.cuda.current_device() == 0 and second.device == torch.device("cuda", 1)
    assert torch.equal(first.cpu(), second.cpu())
