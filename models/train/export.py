"""Export a training run as a pipeline folder that `load_pipeline` and `lina generate` read as they are.

The folder holds the run's EMA weights (or its raw weights) from its latest checkpoint, with the VAE, text
encoder, tokenizer and scheduler it trained with, written by `LinaPipeline.save_pretrained`, optionally cast
to fp16 or bf16 to halve the files.
"""

from pathlib import Path

import torch

from models.constants import MODEL_INDEX_NAME
from models.errors import OutputError, RunFolderError
from models.network.text_encoder import PhiTextEncoder
from models.network.transformer import LinaTransformer
from models.network.vae import AutoencoderKL
from models.pipeline.devices import DTYPES
from models.pipeline.pipeline import LinaPipeline
from models.sampling.scheduler import FlowMatchEulerScheduler
from models.sampling.settings import sampling_settings_for
from models.train.checkpoint import latest_checkpoint, load_ema_weights, load_model_weights
from models.train.run import read_run


def export(
    run_dir: str | Path, out_folder: str | Path, *, dtype: str = "fp32", ema: bool = True,
    sampling: dict[str, float | int | None] | None = None,
) -> Path:
    """Write the pipeline folder of a run's latest checkpoint.

    Args:
        run_dir: a training run folder.
        out_folder: where the pipeline goes; it must be new, empty, or an earlier pipeline folder (overwritten).
        dtype: "fp32", "fp16" or "bf16": the dtype the weight files are stored in (loading casts them).
        ema: export the EMA weights (the authors release EMA weights) rather than the raw ones.
        sampling: sampler settings the model is made for (`ar_steps`, `diffusion_steps`, `cfg`, `cfg_min`; unset
            ones take the task's paper defaults), stored in the folder so `lina generate` uses them; None: none.

    Raises:
        RunFolderError: the run has no checkpoint yet.
        OutputError: `out_folder` holds files that are not a pipeline.
    """
    run_dir, out_folder = Path(run_dir), Path(out_folder)
    spec = read_run(run_dir)
    checkpoint = latest_checkpoint(run_dir)
    if checkpoint is None:
        raise RunFolderError(f"{run_dir} has no checkpoint yet; train at least --checkpoint-every steps, then export")
    if out_folder.exists() and any(out_folder.iterdir()) and not (out_folder / MODEL_INDEX_NAME).is_file():
        raise OutputError(f"{out_folder} is not empty and not a pipeline folder; export into a new folder")
    if dtype not in DTYPES:
        raise OutputError(f"export dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    store = DTYPES[dtype]

    with torch.device("meta"):
        transformer = LinaTransformer(spec.transformer)
    weights = load_ema_weights(checkpoint) if ema else load_model_weights(checkpoint)
    transformer.load_state_dict(weights, strict=True, assign=True)
    parts = spec.components
    vae = AutoencoderKL.from_pretrained(parts.vae)
    text_encoder = None
    if spec.transformer.is_text_conditioned:
        text_encoder = PhiTextEncoder.from_pretrained(parts.text_encoder, parts.tokenizer)
        text_encoder.model.to(store)
    defaults = sampling_settings_for(spec.transformer.task, **sampling) if sampling else None
    pipeline = LinaPipeline(
        transformer.to(store), vae.to(store), FlowMatchEulerScheduler(spec.scheduler), text_encoder,
        sampling_defaults=defaults,
    )
    pipeline.save_pretrained(out_folder)
    return out_folder
