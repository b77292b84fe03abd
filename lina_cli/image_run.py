"""The flow every image-making command shares (`lina generate`, `lina eval fid`, `lina eval geneval`): pick the
device, join torchrun's group, seed, plan the files, load the model, run the resumable engine with progress, gather
the results on rank 0 and summarise (fastapi-cli's one `_run` behind several commands).
"""

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lina_cli import STARTED
from lina_cli.console import GenerationReporter, Printer
from lina_cli.options import resolve_device_option
from lina_cli.progress import status
from models.pipeline.requests import Condition, ImageRequest, build_requests
from models.runs.distributed import (
    DistributedContext,
    broadcast_from_main,
    gather_to_main,
    init_process_group,
    shutdown,
)
from models.runs.generation import ImageResult, RunOptions, load_checked_pipeline
from models.runs.generation import generate as run_generation
from models.runs.outputs import check_writable

RANDOM_SEED_RANGE = 2**32  # random seeds stay in the 32-bit range other tools print and accept


@dataclass(frozen=True)
class ImageRun:
    """Everything a command resolved about the images to make; None sampler values take the model's defaults."""

    model: str
    task: str
    conditions: list[Condition]
    plan_paths: Callable[[list[ImageRequest]], dict[int, Path]]  # request index → target PNG
    seed: int | None = None  # None: random, printed
    num_images: int = 1
    negative_prompt: str | None = None
    size: int | None = None
    device: str | None = None
    dtype: str = "auto"
    kernels: str = "auto"
    offload_text_encoder: bool = False  # on a GPU, the text encoder waits in CPU memory between batches (generate: on)
    revision: str | None = None
    offline: bool | None = None
    cache_dir: str | None = None
    ar_steps: int | None = None
    diffusion_steps: int | None = None
    cfg: float | None = None
    cfg_min: float | None = None
    options: RunOptions = field(default_factory=RunOptions)
    # Called on rank 0 once the model has loaded, before any image is made (a benchmark's metadata files), so a
    # run the model cannot do writes no file.
    prepare: Callable[[], None] | None = None


@dataclass(frozen=True)
class RunTimings:
    """Where a run's wall time went, in seconds: what a user waits for before the first image, then the rest.

    Attributes:
        imports: from lina's start (`lina_cli.STARTED`) to the model about to load: Python modules, torch.
        load: reading the weights into the pipeline on its device.
        first_image: from the start of generation to the first image written: its sampling plus every one-time
            cost (kernel compilation, autotuning, CUDA-graph capture). None if no image was made.
        generation: all of generation, the first image included.
    """

    imports: float
    load: float
    first_image: float | None
    generation: float

    def to_json(self) -> dict[str, float | None]:
        return {f"{name}_seconds": None if value is None else round(value, 3) for name, value in vars(self).items()}


@dataclass(frozen=True)
class RunOutcome:
    """What a run made, on rank 0: every image's result in index order (None on other ranks), and its record."""

    results: list[ImageResult] | None
    seed: int
    seconds: float
    device: str
    gpus: int
    timings: RunTimings | None = None


def run_images(run: ImageRun, printer: Printer, context: DistributedContext) -> RunOutcome:
    """Make every image of `run` that is not already on disk, on this process's share under torchrun.

    Errors leave every finished file in place, so running the same command again resumes.
    """
    import torch

    device = resolve_device_option(run.device, context.local_rank if context.enabled else None)
    if run.device is None and device.type == "cpu":
        printer.warn("CUDA is not available; running on the CPU, which is slow for the released models "
                     "(pass --device cpu to silence this)")
    init_process_group(context, device.type)  # before anything is shared between ranks (the random seed)
    try:
        seed = run.seed
        if seed is None:
            seed = broadcast_from_main(context, secrets.randbelow(RANDOM_SEED_RANGE))
        requests = build_requests(run.conditions, seed=seed, num_images=run.num_images, negative_prompt=run.negative_prompt)
        paths = run.plan_paths(requests)
        check_writable({path.parent for path in paths.values()})

        if run.task == "t2i":  # transformers would draw its own weight-loading bar under our spinner and in logs
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()
        from models import load_pipeline  # noqa: F401  (its imports count as imports, not as loading)

        if device.type == "cuda":  # the summary's peak is this run's, also when one process makes several runs
            torch.cuda.reset_peak_memory_stats(device)
        loading = time.perf_counter()
        with status(printer, f"loading {run.model}"):
            pipe = load_checked_pipeline(
                run.model, task=run.task, size=run.size,
                class_labels=[c.class_label for c in run.conditions if c.class_label is not None],
                device=device, dtype=run.dtype, revision=run.revision, offline=run.offline, cache_dir=run.cache_dir,
                kernels=run.kernels, offload_text_encoder=run.offload_text_encoder,
            )
        loaded = time.perf_counter()
        if run.prepare is not None and context.is_main:
            run.prepare()
        if run.seed is None:  # said once the model is there, so a run that fails to load does not announce a seed
            printer.note(f"seed {seed} (random; pass -s {seed} to repeat this run)")
        sampler = pipe.sampling_settings(run.ar_steps, run.diffusion_steps, run.cfg, run.cfg_min)
        began = time.perf_counter()
        reporter = GenerationReporter(
            printer, ar_steps=sampler.ar_steps, batch_size=run.options.batch_size, live_results=not context.enabled
        )
        with reporter:
            results = run_generation(
                pipe, context.shard(requests), paths, sampler, model=recorded_name(run.model), options=run.options,
                events=reporter,
            )
        peak = torch.cuda.max_memory_allocated(pipe.device) if pipe.device.type == "cuda" else None
        everything = gather_to_main(context, results)
        seconds = time.perf_counter() - began
        timings = RunTimings(loading - STARTED, loaded - loading, reporter.first_image_seconds, seconds)
        if everything is not None:
            everything = sorted(everything, key=lambda result: result.metadata.index)
            if context.enabled:
                for result in everything:
                    reporter.show(result)
            reporter.summary(everything, timings, peak)
        gpus = context.world_size if device.type == "cuda" else 0
        return RunOutcome(everything, seed, seconds, str(pipe.device), gpus, timings)
    finally:
        shutdown(context)


def recorded_name(model_name: str) -> str:
    """What the metadata stores as the model: folders as absolute paths, so --from-metadata works anywhere."""
    path = Path(model_name).expanduser()
    return str(path.resolve()) if path.is_dir() else model_name
