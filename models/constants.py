"""Names of files in a pipeline folder, the released checkpoints, and environment switches."""

import os

# Folder layout written by `save_pretrained` and read by `from_pretrained` (diffusers' names, so the
# official hub folders load unchanged).
MODEL_INDEX_NAME = "model_index.json"
CONFIG_NAME = "config.json"
SCHEDULER_CONFIG_NAME = "scheduler_config.json"
SAFETENSORS_WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
SAFETENSORS_INDEX_NAME = "diffusion_pytorch_model.safetensors.index.json"
BIN_WEIGHTS_NAME = "diffusion_pytorch_model.bin"

# An optional `model_index.json` entry of lina's own: the sampler settings a model was made for (a small trained
# model wants fewer AR steps than the paper's). Official folders have none and take the paper's defaults.
SAMPLING_DEFAULTS_KEY = "lina_sampling"

TRANSFORMER_FOLDER = "transformer"
VAE_FOLDER = "vae"
SCHEDULER_FOLDER = "scheduler"
TEXT_ENCODER_FOLDER = "text_encoder"
TOKENIZER_FOLDER = "tokenizer"


def _is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def hub_offline() -> bool:
    """Whether the Hugging Face hub must not be contacted (read at call time, so tests can set it)."""
    return _is_true(os.environ.get("HF_HUB_OFFLINE"))


def lina_debug() -> bool:
    """Whether the CLI shows full tracebacks instead of one-line errors."""
    return _is_true(os.environ.get("LINA_DEBUG"))


# The three released checkpoints. Short aliases are what `lina download` and `--model` accept.
RELEASED_MODELS = {
    "lina-t2i-1024": {"repo_id": "techmonsterwang/LINA-t2i-d48w1536-sdxl1024", "task": "t2i", "resolution": 1024},
    "lina-t2i-512": {"repo_id": "techmonsterwang/LINA-t2i-d48w1536-sdxl512", "task": "t2i", "resolution": 512},
    "lina-c2i-256": {"repo_id": "techmonsterwang/LINA-c2i-d48w1536-marvae", "task": "c2i", "resolution": 256},
}
DEFAULT_MODEL = "lina-t2i-1024"
# Models that ship inside the package (`models/bundled/<folder>`): they load offline, with no download.
BUNDLED_MODELS = {
    "lina-shapes": {"folder": "lina-shapes", "task": "t2i", "resolution": 128},
}
# Every alias's task and resolution, released or bundled.
MODEL_CARDS = {**RELEASED_MODELS, **BUNDLED_MODELS}

# Which implementation of the model's ops runs (`models.ops`): "auto" picks the fused Triton kernels on CUDA
# (when Triton imports) and the plain-PyTorch references elsewhere.
KERNEL_CHOICES = ("auto", "fused", "reference")

# Compute dtypes by the names the CLI and the config files use; "auto" = bf16 on CUDA, fp32 on the CPU.
DTYPE_NAMES = ("bf16", "fp16", "fp32")
DTYPE_CHOICES = ("auto", *DTYPE_NAMES)
