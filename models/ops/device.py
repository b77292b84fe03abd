"""Run a fused op on its inputs' GPU.

Triton launches a kernel on the *current* CUDA device, whatever device the tensors live on; a model on cuda:1
while cuda:0 is current would then run its kernels on the wrong GPU. The fused ops switch to the device of
their first tensor for the launch when it is not the current one; otherwise (and on the CPU interpreter) the
op is called as it is, so the common case costs one device-index comparison.
"""

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

Op = TypeVar("Op", bound=Callable[..., torch.Tensor])


def on_input_device(op: Op) -> Op:
    """Decorate a fused op so that its kernels launch on the device of its first argument."""

    @functools.wraps(op)
    def launch_on_input_device(first: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        index = first.get_device()  # -1 for a CPU tensor
        if index >= 0 and index != torch.cuda.current_device():
            with torch.cuda.device(index):
                return op(first, *args, **kwargs)
        return op(first, *args, **kwargs)

    return launch_on_input_device  # type: ignore[return-value]
