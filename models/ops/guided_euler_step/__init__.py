"""The head loop's guidance mix and Euler step as one Triton kernel; the reference is `.reference`.

The fused function is imported on first access (PEP 562), so the reference imports where Triton is missing.
"""

__all__ = ["guided_euler_step"]


def __getattr__(name: str):
    if name == "guided_euler_step":
        from models.ops.guided_euler_step.fused import guided_euler_step

        return guided_euler_step
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
