"""Learning-rate warm-up, EMA and gradient clipping as the authors' engine computes them (docs/training.md)."""

import pytest
import torch
from torch import nn

from models.train.optim import (
    ModelEMA,
    build_optimizer,
    build_scheduler,
    cooldown_factor_at,
    gradient_norm,
    warmup_factor_at,
)


def test_warmup_rises_linearly_from_a_thousandth_then_stays():
    # the authors' ConstantLR: lr · (α + (1 − α)·0.001), α = (step + 1) / warmup, for steps before the warm-up ends
    assert warmup_factor_at(0, 10, 0.001) == pytest.approx(0.1 + 0.9 * 0.001)
    assert warmup_factor_at(9, 10, 0.001) == pytest.approx(1.0)
    assert warmup_factor_at(10, 10, 0.001) == 1.0 and warmup_factor_at(5000, 10, 0.001) == 1.0
    assert warmup_factor_at(0, 0, 0.001) == 1.0

    model = nn.Linear(3, 2)
    optimizer = build_optimizer(model, lr=0.5, weight_decay=0.02, betas=(0.9, 0.95))
    scheduler = build_scheduler(optimizer, warmup=4, start_factor=0.001)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    expected = [0.5 * warmup_factor_at(step, 4, 0.001) for step in range(6)]
    assert seen == pytest.approx(expected)
    assert optimizer.defaults["betas"] == (0.9, 0.95)



def test_a_cooldown_takes_the_last_steps_linearly_to_zero():
    assert [cooldown_factor_at(step, 10, 4) for step in range(10)] == [1.0] * 6 + [1.0, 0.75, 0.5, 0.25]
    assert all(cooldown_factor_at(step, 10, 0) == 1.0 for step in range(12))

    model = nn.Linear(3, 2)
    optimizer = build_optimizer(model, lr=0.5, weight_decay=0.02, betas=(0.9, 0.95))
    scheduler = build_scheduler(optimizer, warmup=2, start_factor=0.001, steps=6, cooldown=3)
    seen = []
    for _ in range(6):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.5 * (0.5 + 0.5 * 0.001), 0.5, 0.5, 0.5, 0.5 * 2 / 3, 0.5 / 3])

def test_ema_updates_trainable_parameters_only():
    model = nn.Sequential(nn.Linear(2, 2), nn.LayerNorm(2))
    model[1].requires_grad_(False)
    ema = ModelEMA(model, decay=0.9)
    before = [p.clone() for p in ema.model.parameters()]
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(1.0)
    ema.update(model)
    after = list(ema.model.parameters())
    trainable = [p.requires_grad for p in model.parameters()]
    for old, new, current, trains in zip(before, after, model.parameters(), trainable, strict=True):
        expected = 0.9 * old + 0.1 * current if trains else old
        torch.testing.assert_close(new, expected)
    assert not any(p.requires_grad for p in ema.model.parameters()) and not ema.model.training


def test_gradient_norm_clips_only_when_asked():
    model = nn.Linear(4, 1, bias=False)
    model.weight.grad = torch.full((1, 4), 3.0)  # norm 6
    assert gradient_norm(model.parameters(), None).item() == pytest.approx(6.0)
    assert torch.equal(model.weight.grad, torch.full((1, 4), 3.0))
    assert gradient_norm(model.parameters(), 1.5).item() == pytest.approx(6.0)
    assert model.weight.grad.norm().item() == pytest.approx(1.5, rel=1e-5)
