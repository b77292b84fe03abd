"""Models that ship inside the package, so that the first `lina generate` after `pip install` runs offline.

Each alias of `models.constants.BUNDLED_MODELS` names a pipeline folder beside this file, in the format of the
released checkpoints (model_index.json, transformer/, vae/, text_encoder/, tokenizer/, scheduler/), with its
model card (README.md). They are loaded by the same code as any other folder.
"""

from pathlib import Path

from models.constants import BUNDLED_MODELS


def bundled_model_path(alias: str) -> Path:
    """The folder of a bundled model (`alias` must be a key of `BUNDLED_MODELS`)."""
    return Path(__file__).resolve().parent / BUNDLED_MODELS[alias]["folder"]
