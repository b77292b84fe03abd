"""LINA's bidirectional linear attention as a fused Triton kernel; the reference is `.reference`.

The fused function is imported on first access (PEP 562), so `models.ops.linear_attn.reference` can be
imported where Triton is missing, and the kernels are built only when the fast path is actually used.
"""

__all__ = ["linear_attention_qkv"]


def __getattr__(name: str):
    if name == "linear_attention_qkv":
        from models.ops.linear_attn.fused import linear_attention_qkv

        return linear_attention_qkv
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
