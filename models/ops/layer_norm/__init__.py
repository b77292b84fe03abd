"""LayerNorm with its neighbouring element-wise work fused into one Triton kernel; the reference is `.reference`.

The fused functions are imported on first access (PEP 562), so the reference imports where Triton is missing.
"""

__all__ = ["add_layer_norm", "add_layer_norm_modulated", "modulated_layer_norm"]


def __getattr__(name: str):
    if name in __all__:
        from models.ops.layer_norm import fused

        return getattr(fused, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
