"""One step of the diffusion head's flow ODE in plain PyTorch: the classifier-free guidance mix, then the
flow-matching Euler update (docs/architecture.md, "Sampling").

The function is exactly what the sampler evaluates (`denoise_tokens`' mix, then `FlowMatchEulerScheduler.step`),
with the same ops in the same order; `fused.py` has the same signature.
"""

import torch


def guided_euler_step(
    velocity: torch.Tensor, sigma: torch.Tensor, sigma_next: torch.Tensor, sample: torch.Tensor, scale: float | None
) -> torch.Tensor:
    """x ← x + (σ_next − σ)·v, v = v_u + s·(v_c − v_u), updated in float32 and returned in the velocity's dtype.

    Args:
        velocity: the head's prediction, [2B, n, K] holding [cond ; uncond] rows ([B, n, K] when `scale` is None).
        sigma, sigma_next: 0-dim float32 CPU tensors, so (σ_next − σ)·v is computed in the velocity's dtype (a
            0-dim tensor does not promote), as diffusers rounds it.
        sample: the tokens being denoised, [B, n, K].
        scale: the CFG scale, or None without guidance (v is the velocity itself).
    """
    if scale is not None:
        cond, uncond = velocity.chunk(2)
        velocity = uncond + (cond - uncond) * scale
    return (sample.to(torch.float32) + (sigma_next - sigma) * velocity).to(velocity.dtype)
