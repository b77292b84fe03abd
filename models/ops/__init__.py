"""The ops LINA's modules call, as sets: plain-PyTorch references or fused Triton kernels.

One folder per op, each with `reference.py` (the readable definition, and what the model runs by default on
the CPU) beside `fused.py` (Triton, same signature, tested against the reference; `device.py` makes each
launch on its inputs' GPU):

- `linear_attn`: linear attention from the qkv projection to the head-merged output;
- `depthwise_conv`: the decoder blocks' conv branch added to the attention output;
- `guided_euler_step`: the head loop's guidance mix and Euler update;
- `layer_norm`: LayerNorm with its residual add, gate or AdaLN modulation (or both: a head block's end and the
  next AdaLN).

The modules are written with the plain-PyTorch path inline, as the paper states the computation; a module whose
`kernels` attribute holds the fused set substitutes these kernels for that path (`LinaTransformer.set_kernels`
swaps the whole set). The references here are the same ops, kept beside each kernel so tests can hold the kernel
to them.
"""

import importlib
from collections.abc import Callable
from dataclasses import dataclass

import torch

from models.constants import KERNEL_CHOICES
from models.errors import LinaError
from models.ops.depthwise_conv.reference import add_depthwise_conv
from models.ops.guided_euler_step.reference import guided_euler_step
from models.ops.layer_norm.reference import add_layer_norm, add_layer_norm_modulated, modulated_layer_norm
from models.ops.linear_attn.reference import linear_attention_qkv

__all__ = ["KERNEL_CHOICES", "Kernels", "REFERENCE_KERNELS", "fused_kernels", "kernels_named", "resolve_kernels"]


@dataclass(frozen=True)
class Kernels:
    """One implementation of every op; `name` is "reference" or "fused"."""

    name: str
    linear_attention_qkv: Callable[..., torch.Tensor]
    add_depthwise_conv: Callable[..., torch.Tensor]
    add_layer_norm: Callable[..., torch.Tensor]
    modulated_layer_norm: Callable[..., torch.Tensor]
    add_layer_norm_modulated: Callable[..., tuple[torch.Tensor, torch.Tensor]]
    guided_euler_step: Callable[..., torch.Tensor]

    @property
    def fused(self) -> bool:
        """Whether modules should call these kernels instead of their inline plain-PyTorch path."""
        return self.name == "fused"


REFERENCE_KERNELS = Kernels(
    "reference",
    linear_attention_qkv,
    add_depthwise_conv,
    add_layer_norm,
    modulated_layer_norm,
    add_layer_norm_modulated,
    guided_euler_step,
)


def fused_kernels() -> Kernels:
    """The Triton set (imports Triton; raises ImportError without it)."""
    from models.ops.depthwise_conv.fused import add_depthwise_conv as fused_conv
    from models.ops.guided_euler_step.fused import guided_euler_step as fused_euler_step
    from models.ops.layer_norm.fused import add_layer_norm as fused_add_norm
    from models.ops.layer_norm.fused import add_layer_norm_modulated as fused_add_norm_modulated
    from models.ops.layer_norm.fused import modulated_layer_norm as fused_modulated_norm
    from models.ops.linear_attn.fused import linear_attention_qkv as fused_attention

    return Kernels(
        "fused",
        fused_attention,
        fused_conv,
        fused_add_norm,
        fused_modulated_norm,
        fused_add_norm_modulated,
        fused_euler_step,
    )


def kernels_named(name: str) -> Kernels:
    """The "reference" or "fused" set."""
    if name == "reference":
        return REFERENCE_KERNELS
    if name == "fused":
        return fused_kernels()
    raise ValueError(f"kernels {name!r}: expected one of {', '.join(KERNEL_CHOICES)}")


# The fused kernels use bf16 tensor-core dots, which Triton compiles for Ampere (sm_80) and newer.
MIN_FUSED_CAPABILITY = (8, 0)


def resolve_kernels(choice: str, device: torch.device) -> str:
    """The set to run on `device`: "auto" → "fused" on a CUDA GPU of compute capability ≥ 8.0 when Triton
    imports, else "reference"; "fused" and "reference" are kept.

    Raises:
        ValueError: an unknown choice.
        LinaError: "fused" for a device that is not a CUDA GPU.
    """
    if choice not in KERNEL_CHOICES:
        raise ValueError(f"kernels {choice!r}: expected one of {', '.join(KERNEL_CHOICES)}")
    if choice == "fused" and device.type != "cuda":
        raise LinaError(f"the fused kernels run on CUDA only, but this run is on {device}: use the reference kernels")
    if choice != "auto":
        return choice
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < MIN_FUSED_CAPABILITY:
        return "reference"
    try:
        importlib.import_module("triton")
    except ImportError:
        return "reference"
    return "fused"
