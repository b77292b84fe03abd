"""Optimiser, learning-rate schedule and EMA as the authors train (docs/training.md).

From github.com/techmonsterwang/LINA `diffnext/engine/`: AdamW with β = (0.9, 0.95) and weight decay 0.02 except
on the parameters of norm layers (`get_param_groups`); a learning rate that rises linearly from 0.001× over the
warm-up, then stays constant (`ConstantLR`); an fp32 EMA copy of the weights, updated every N steps with
decay d as ema ← d·ema + (1 − d)·θ for the trainable parameters (`ModelEMA`, the same deepcopy-and-freeze
recipe as DiT's `train.py`).

Beyond the authors' schedule, an optional cool-down: the last N steps of a run take the learning rate linearly to 0
(the warm-up/stable/decay shape), which a run of known length can use to end on settled weights.
"""

import copy
from collections.abc import Iterable

import torch
from torch import nn

NORM_LAYERS = (nn.LayerNorm, nn.GroupNorm)


def parameter_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Trainable parameters in two groups: norm-layer parameters without weight decay, all others with it."""
    decayed, plain, seen = [], [], set()
    for module in model.modules():
        for parameter in module.parameters(recurse=False):
            if not parameter.requires_grad or id(parameter) in seen:
                continue
            seen.add(id(parameter))
            (plain if isinstance(module, NORM_LAYERS) else decayed).append(parameter)
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}]


def build_optimizer(
    model: nn.Module, lr: float, weight_decay: float, betas: tuple[float, float]
) -> torch.optim.AdamW:
    """AdamW over `parameter_groups`; the fused CUDA kernel when the weights are on a GPU."""
    on_gpu = next(model.parameters()).is_cuda
    return torch.optim.AdamW(parameter_groups(model, weight_decay), lr=lr, betas=betas, fused=on_gpu or None)


def warmup_factor_at(step: int, warmup: int, start_factor: float) -> float:
    """Learning-rate multiplier of step `step` (0-based): α + (1 − α)·start_factor with α = (step + 1)/warmup
    during the warm-up, 1 after it."""
    if step >= warmup:
        return 1.0
    alpha = (step + 1) / warmup
    return alpha + (1 - alpha) * start_factor


def cooldown_factor_at(step: int, steps: int, cooldown: int) -> float:
    """Learning-rate multiplier of step `step` (0-based) of a `steps`-step run whose last `cooldown` steps decay
    linearly to 0: 1 before them, then (steps − step)/cooldown, so the last step runs at 1/cooldown of the rate."""
    if cooldown == 0 or step < steps - cooldown:
        return 1.0
    return max(0.0, (steps - step) / cooldown)


class WarmupStableDecay:
    """The warm-up, then a constant rate, then the cool-down (none when `cooldown` is 0), as a picklable callable
    so `LambdaLR` state dicts stay plain data."""

    def __init__(self, warmup: int, start_factor: float, steps: int = 0, cooldown: int = 0):
        self.warmup, self.start_factor, self.steps, self.cooldown = warmup, start_factor, steps, cooldown

    def __call__(self, step: int) -> float:
        warmup = warmup_factor_at(step, self.warmup, self.start_factor)
        return warmup * cooldown_factor_at(step, self.steps, self.cooldown)


def build_scheduler(
    optimizer: torch.optim.Optimizer, warmup: int, start_factor: float, steps: int = 0, cooldown: int = 0
) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, WarmupStableDecay(warmup, start_factor, steps, cooldown))


def gradient_norm(parameters: Iterable[nn.Parameter], max_norm: float | None) -> torch.Tensor:
    """The global L2 norm of the gradients, clipping them to `max_norm` first when given (None: no clipping)."""
    grads = [p for p in parameters if p.grad is not None]
    if max_norm is None:
        return torch.nn.utils.get_total_norm([p.grad for p in grads])
    return torch.nn.utils.clip_grad_norm_(grads, max_norm)


class ModelEMA:
    """An fp32 exponential moving average of a model's trainable parameters.

    `model` keeps the deep copy (eval mode, no gradients); buffers and frozen parameters stay as copied.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).float().eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """ema ← decay·ema + (1 − decay)·θ for every trainable parameter θ of `model` (same structure)."""
        pairs = [(a, p) for a, p in zip(self.model.parameters(), model.parameters(), strict=True) if p.requires_grad]
        averages = [average for average, _ in pairs]
        # two multi-tensor kernels instead of two per parameter; the same arithmetic as mul_ then add_
        torch._foreach_mul_(averages, self.decay)
        torch._foreach_add_(averages, [parameter.detach().float() for _, parameter in pairs], alpha=1 - self.decay)
