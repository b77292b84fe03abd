"""The Euler flow-matching scheduler equals diffusers' FlowMatchEulerDiscreteScheduler bit for bit (docs/architecture.md, "VAE, text encoder, scheduler")."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from models.network.config import SchedulerConfig
from models.sampling.scheduler import FlowMatchEulerScheduler

STEPS = [1, 5, 25, 50]
SHIFTS = [1.0, 3.0]


def _diffusers(num_steps: int, shift: float) -> FlowMatchEulerDiscreteScheduler:
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    scheduler.set_timesteps(num_steps)
    return scheduler


@pytest.mark.parametrize("shift", SHIFTS, ids=[f"shift{s}" for s in SHIFTS])
@pytest.mark.parametrize("num_steps", STEPS, ids=[f"n{n}" for n in STEPS])
def test_sigmas_and_timesteps_equal_diffusers(num_steps, shift):
    sigmas, timesteps = FlowMatchEulerScheduler(SchedulerConfig(shift=shift)).sigmas(num_steps)
    reference = _diffusers(num_steps, shift)
    assert sigmas.dtype == timesteps.dtype == torch.float32
    assert sigmas.shape == (num_steps + 1,) and timesteps.shape == (num_steps,)
    assert torch.equal(sigmas, reference.sigmas)
    assert torch.equal(timesteps, reference.timesteps)


def test_first_timesteps_of_25_steps():
    """docs/architecture.md, "VAE, text encoder, scheduler": σ = linspace(1, 0.001, 25), then 0; t = 1000·σ = 1000, 958.375, 916.75, …, 1."""
    sigmas, timesteps = FlowMatchEulerScheduler().sigmas(25)
    assert timesteps[:3].tolist() == [1000.0, 958.375, 916.75]
    assert timesteps[-1].item() == pytest.approx(1.0, abs=1e-4)
    assert sigmas[-1].item() == 0.0


def test_sigmas_refuses_zero_steps():
    with pytest.raises(ValueError, match="num_steps"):
        FlowMatchEulerScheduler().sigmas(0)


@pytest.mark.parametrize("shift", SHIFTS, ids=[f"shift{s}" for s in SHIFTS])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_step_loop_equals_diffusers(dtype, shift):
    """A full 25-step loop with data-dependent velocities stays bit-identical to diffusers' `step`."""
    num_steps = 25
    ours = FlowMatchEulerScheduler(SchedulerConfig(shift=shift))
    sigmas, timesteps = ours.sigmas(num_steps)
    reference = _diffusers(num_steps, shift)
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(2, 7, 16, generator=generator).to(dtype)
    x_ours, x_ref = start.clone(), start.clone()
    for j, timestep in enumerate(reference.timesteps):
        assert timestep == timesteps[j]
        noise = torch.randn(2, 7, 16, generator=generator)
        velocity = (noise - 0.5 * x_ours.float()).to(dtype)  # depends on the sample, like a model would
        x_ours = ours.step(velocity, sigmas[j], sigmas[j + 1], x_ours)
        x_ref = reference.step(velocity, timestep, x_ref).prev_sample
        assert x_ours.dtype == x_ref.dtype == dtype
        assert torch.equal(x_ours, x_ref), f"step {j} differs"


def test_scheduler_folder_round_trip_with_diffusers(tmp_path):
    """Our scheduler_config.json is read by diffusers, and diffusers' file is read by us."""
    ours = FlowMatchEulerScheduler(SchedulerConfig(shift=3.0))
    ours.save_pretrained(tmp_path / "ours")
    theirs = FlowMatchEulerDiscreteScheduler.from_pretrained(tmp_path / "ours")
    assert theirs.config.shift == 3.0 and theirs.config.num_train_timesteps == 1000

    FlowMatchEulerDiscreteScheduler(shift=2.0).save_pretrained(tmp_path / "theirs")
    loaded = FlowMatchEulerScheduler.from_pretrained(tmp_path / "theirs")
    assert loaded.config == SchedulerConfig(num_train_timesteps=1000, shift=2.0)
