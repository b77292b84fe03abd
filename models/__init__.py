"""LINA in plain PyTorch: load the official checkpoints and generate images.

The public names below are imported on first use, so `import models.constants` or `import models.errors`
(what the CLI needs to print help) never pulls in torch.
"""

import importlib

_EXPORTS = {
    "load_pipeline": "models.pipeline.pipeline",
    "LinaPipeline": "models.pipeline.pipeline",
    "ImageRequest": "models.pipeline.requests",
    "GenerationOutput": "models.pipeline.pipeline",
    "ModelSource": "models.pipeline.pipeline",
    "SamplingSettings": "models.sampling.settings",
    "LinaTransformer": "models.network.transformer",
    "TransformerConfig": "models.network.config",
    "VAEConfig": "models.network.config",
    "SchedulerConfig": "models.network.config",
    "LinaError": "models.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
