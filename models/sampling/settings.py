"""Sampler settings: AR steps, diffusion steps and guidance, with the paper's defaults per task (no torch here)."""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class SamplingSettings:
    """Sampler knobs. `cfg_min` None means constant guidance; otherwise it ramps linearly to `cfg`."""

    ar_steps: int
    diffusion_steps: int
    cfg: float
    cfg_min: float | None = None

    def __post_init__(self) -> None:
        if self.ar_steps < 1 or self.diffusion_steps < 1:
            raise ValueError(f"ar_steps={self.ar_steps} and diffusion_steps={self.diffusion_steps} must be ≥ 1")
        for name in ("cfg", "cfg_min"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"{name}={value} must be a finite number")


# The settings of the paper's published runs (docs/architecture.md, "Sampler settings"); one table for the API and the CLI.
SAMPLING_DEFAULTS = {
    "t2i": SamplingSettings(ar_steps=128, diffusion_steps=25, cfg=7.0),  # GenEval runs
    "c2i": SamplingSettings(ar_steps=64, diffusion_steps=25, cfg=2.4, cfg_min=1.0),  # FID-50k run
}


def sampling_settings_for(
    task: str,
    ar_steps: int | None = None,
    diffusion_steps: int | None = None,
    cfg: float | None = None,
    cfg_min: float | None = None,
    defaults: SamplingSettings | None = None,
) -> SamplingSettings:
    """Fill unset sampler options from the task's paper defaults (`SAMPLING_DEFAULTS`).

    `defaults` replaces the task's paper settings (a model folder's own, `models.constants.SAMPLING_DEFAULTS_KEY`).
    Unset, `cfg_min` is the task's default ramp start when `cfg` is unset too (c2i ramps 1 → 2.4), and
    equals `cfg` (constant guidance) when only `cfg` is given.
    """
    defaults = SAMPLING_DEFAULTS[task] if defaults is None else defaults
    return SamplingSettings(
        ar_steps=ar_steps or defaults.ar_steps,
        diffusion_steps=diffusion_steps or defaults.diffusion_steps,
        cfg=defaults.cfg if cfg is None else cfg,
        cfg_min=cfg_min if cfg_min is not None else (defaults.cfg_min if cfg is None else None),
    )
