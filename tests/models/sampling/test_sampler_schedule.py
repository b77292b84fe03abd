"""AR schedule, CFG ramp and generation orders of the sampler (docs/architecture.md, "Sampling")."""

import numpy as np
import pytest
import torch

from models.sampling.sampler import ar_schedule, cfg_scales, generation_orders


def numpy_schedule(num_tokens: int, ar_steps: int) -> list[int]:
    """docs/architecture.md, "Sampling" with numpy: len_k = round(L·cos(π/2·k/K)), counts = −diff, empty steps dropped."""
    remaining = np.round(num_tokens * np.cos(np.pi / 2 * np.arange(ar_steps + 1) / ar_steps)).astype(np.int64)
    counts = remaining[:-1] - remaining[1:]
    return counts[counts > 0].tolist()


def test_schedule_c2i_example():
    counts = ar_schedule(256, 64)
    assert len(counts) == 61
    assert counts[:9] == [1, 1, 1, 1, 1, 1, 2, 1, 2]
    assert counts[-4:] == [6, 6, 7, 6]
    assert sum(counts) == 256


@pytest.mark.parametrize(
    "num_tokens,ar_steps,effective,first",
    [(1024, 128, 125, None), (4096, 128, 127, [1, 2, 2, 3]), (4096, 64, 64, [1, 4, 6, 9])],
    ids=["L1024-K128", "L4096-K128", "L4096-K64"],
)
def test_schedule_t2i_examples(num_tokens, ar_steps, effective, first):
    counts = ar_schedule(num_tokens, ar_steps)
    assert len(counts) == effective
    assert sum(counts) == num_tokens
    if first is not None:
        assert counts[: len(first)] == first


@pytest.mark.parametrize("num_tokens", [1, 2, 15, 16, 24, 256, 1024, 4096])
@pytest.mark.parametrize("ar_steps", [1, 2, 3, 7, 16, 64, 128, 300])
def test_schedule_matches_numpy_and_sums_to_L(num_tokens, ar_steps):
    counts = ar_schedule(num_tokens, ar_steps)
    assert counts == numpy_schedule(num_tokens, ar_steps)
    assert sum(counts) == num_tokens
    assert all(count > 0 for count in counts)
    assert len(counts) <= ar_steps


def test_cfg_constant_when_no_minimum():
    assert cfg_scales(5, 7.0, None) == [7.0] * 5


@pytest.mark.parametrize("num_steps,start,end", [(61, 1.0, 2.4), (4, 2.0, 6.0), (1, 1.0, 3.0)])
def test_cfg_ramp(num_steps, start, end):
    """s_i = g0 + (g1 − g0)·(i+1)/K over the non-empty steps: ends exactly at cfg, first step above cfg_min."""
    scales = cfg_scales(num_steps, end, start)
    assert len(scales) == num_steps
    expected = [start + (end - start) * (i + 1) / num_steps for i in range(num_steps)]
    assert scales == pytest.approx(expected, rel=1e-12, abs=1e-12)
    assert scales[-1] == pytest.approx(end, abs=1e-12)
    if num_steps > 1:
        assert scales[0] > start


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
def test_generation_orders_reproducible_per_generator(dtype):
    tokens = 256
    orders = generation_orders([torch.Generator().manual_seed(s) for s in (3, 4)], tokens, dtype, torch.device("cpu"))
    assert orders.shape == (2, tokens) and orders.dtype == torch.long
    for row in orders:
        assert torch.equal(row.sort().values, torch.arange(tokens))  # a permutation
    assert not torch.equal(orders[0], orders[1])

    again = generation_orders([torch.Generator().manual_seed(4)], tokens, dtype, torch.device("cpu"))
    assert torch.equal(again[0], orders[1])  # image i depends only on its own generator, not on the batch


def test_generation_order_is_the_argsort_of_one_uniform_draw():
    """docs/architecture.md, "Sampling": u ~ U[0,1) of shape [1, L, 1] in the model dtype, then argsort along L."""
    tokens = 64
    generator = torch.Generator().manual_seed(1337)
    orders = generation_orders([generator], tokens, torch.float32, torch.device("cpu"))
    uniform = torch.empty(1, tokens, 1).uniform_(generator=torch.Generator().manual_seed(1337))
    assert torch.equal(orders[0], uniform[0, :, 0].argsort())
    # the generator advanced by exactly that one draw
    follow = torch.Generator().manual_seed(1337)
    torch.empty(1, tokens, 1).uniform_(generator=follow)
    assert torch.equal(torch.randn(3, generator=generator), torch.randn(3, generator=follow))
