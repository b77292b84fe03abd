"""The decoder's depthwise-conv branch as one Triton kernel; the reference is `.reference`.

The fused function is imported on first access (PEP 562), so the reference imports where Triton is missing.
"""

__all__ = ["add_depthwise_conv"]


def __getattr__(name: str):
    if name == "add_depthwise_conv":
        from models.ops.depthwise_conv.fused import add_depthwise_conv

        return add_depthwise_conv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
