"""Flow-matching Euler sampler of the diffusion head (docs/architecture.md, "VAE, text encoder, scheduler"), numerically equal to diffusers'
`FlowMatchEulerDiscreteScheduler` with its default options, which the official pipelines use."""

from pathlib import Path

import numpy as np
import torch

from models.constants import SCHEDULER_CONFIG_NAME
from models.files import read_json, write_json_atomic
from models.network.config import SchedulerConfig


class FlowMatchEulerScheduler:
    """σ goes from σ_max to σ_min in equal steps (after the shift), then to 0; t = σ · T."""

    def __init__(self, config: SchedulerConfig | None = None):
        self.config = config or SchedulerConfig()

    def _shift(self, sigmas):
        shift = self.config.shift
        return shift * sigmas / (1 + (shift - 1) * sigmas)

    def sigmas(self, num_steps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The schedule of `num_steps` Euler steps.

        Returns:
            sigmas: float32 CPU tensor [num_steps + 1], ending with 0.
            timesteps: float32 CPU tensor [num_steps] = sigmas[:-1] · T, what the head is conditioned on.
        """
        if num_steps < 1:
            raise ValueError(f"num_steps={num_steps}: need at least one diffusion step")
        train_steps = self.config.num_train_timesteps
        # σ_max and σ_min come from the float32 training table, as diffusers derives them.
        table = torch.from_numpy(np.linspace(1, train_steps, train_steps, dtype=np.float32)[::-1].copy())
        table = self._shift(table / train_steps)
        sigma_max, sigma_min = table[0].item(), table[-1].item()
        sigmas = np.linspace(sigma_max * train_steps, sigma_min * train_steps, num_steps) / train_steps
        sigmas = torch.from_numpy(self._shift(sigmas)).to(torch.float32)
        timesteps = sigmas * train_steps
        return torch.cat([sigmas, torch.zeros(1)]), timesteps

    @staticmethod
    def step(velocity: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """One Euler step x ← x + (σ_next − σ)·v, updated in float32 and returned in the velocity's dtype.

        `sigma` and `sigma_next` are 0-dim float32 CPU tensors (entries of `sigmas`); keeping them as
        tensors reproduces diffusers' rounding exactly and never syncs with the GPU.
        """
        return (sample.to(torch.float32) + (sigma_next - sigma) * velocity).to(velocity.dtype)

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> "FlowMatchEulerScheduler":
        folder = Path(folder)
        return cls(SchedulerConfig.from_dict(read_json(folder / SCHEDULER_CONFIG_NAME, "scheduler")))

    def save_pretrained(self, folder: str | Path) -> None:
        write_json_atomic(Path(folder) / SCHEDULER_CONFIG_NAME, self.config.to_dict())
