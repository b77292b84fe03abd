"""FLOPs as `torch.utils.flop_counter.FlopCounterMode` counts them, with the formulas it lacks.

The CPU SDPA kernel has no formula before PyTorch PR #195801 (issue #195460) and would count 0, so
`EXTRA_FLOP_FORMULAS` supplies one; a fused kernel that should be counted must register its formula there too,
or it counts as zero.
"""

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count


def _sdpa_cpu_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query_shape, key_shape, value_shape)


# Kernels FlopCounterMode would otherwise count as zero .
EXTRA_FLOP_FORMULAS: dict[Any, Callable[..., int]] = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_cpu_flops,
}


def count_flops(fn: Callable[[], object]) -> int:
    """FLOPs (2 × MACs) that FlopCounterMode counts while `fn()` runs, with `EXTRA_FLOP_FORMULAS`."""
    with FlopCounterMode(display=False, custom_mapping=EXTRA_FLOP_FORMULAS) as counter:
        fn()
    return counter.get_total_flops()
