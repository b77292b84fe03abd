"""The generation loop behind `lina generate`: resume, batch, sample, keep latents, decode, write.

It prints nothing: progress and results go to an `events` object (the CLI's reporter). Each batch is
sampled, its latents are optionally saved (`--save-latents`), and only then decoded, so an out-of-memory
error in the VAE never loses the sampling work: re-running the command decodes the saved latents.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from models.errors import InvalidPromptError, OutputError
from models.network.config import TransformerConfig, check_class_labels
from models.pipeline.requests import ImageRequest
from models.runs.metadata import METADATA_KEY, ImageMetadata
from models.runs.outputs import is_finished, latents_path, save_png
from models.version import __version__

if TYPE_CHECKING:
    import torch

    from models.pipeline.pipeline import LinaPipeline
    from models.sampling.settings import SamplingSettings

LATENTS_TENSOR = "latents"
STATUS_WRITTEN, STATUS_SKIPPED = "written", "skipped"


@dataclass(frozen=True)
class ImageResult:
    """One image of the run: where it is, whether it was made now or found finished, and its recipe."""

    path: Path
    status: str
    metadata: ImageMetadata
    latents: Path | None = None

    def to_json(self) -> dict[str, Any]:
        data = {"path": str(self.path), "status": self.status, **self.metadata.to_json()}
        if self.latents is not None:
            data["latents"] = str(self.latents)
        return data


class GenerationEvents(Protocol):
    """What the loop reports; the CLI turns these into progress bars and lines."""

    def started(self, to_make: int, finished: int) -> None: ...

    def ar_step(self, done: int, total: int) -> None: ...

    def image_done(self, result: ImageResult) -> None: ...


class NoEvents:
    """Events nobody watches: for library callers that want the results only."""

    def started(self, to_make: int, finished: int) -> None:
        pass

    def ar_step(self, done: int, total: int) -> None:
        pass

    def image_done(self, result: ImageResult) -> None:
        pass


@dataclass
class RunOptions:
    """How to run, beyond what each image's metadata already says."""

    batch_size: int = 1
    save_latents: bool = False
    overwrite: bool = False


def load_checked_pipeline(
    model: str,
    *,
    task: str,
    size: int | None,
    class_labels: list[int],
    device: "torch.device",
    dtype: str,
    revision: str | None,
    offline: bool | None,
    cache_dir: str | None = None,
    kernels: str = "auto",
    offload_text_encoder: bool = False,
) -> "LinaPipeline":
    """`models.load_pipeline`, refusing before any weight is read a run the model cannot do: another task, a
    `--size` it does not make, class ids it does not know.

    Raises:
        InvalidPromptError: prompts for a class-conditional model, or class ids for a text-to-image one.
        UnsupportedSizeError, InvalidClassLabelError: from the config's own checks.
    """
    from models import load_pipeline

    def check(config: TransformerConfig) -> None:
        if config.task != task:
            wanted = "prompts" if config.task == "t2i" else "--class ids"
            raise InvalidPromptError(f"{model} is a {config.task} model: it takes {wanted}")
        if size is not None:
            config.check_size(size)
        if class_labels:
            check_class_labels(class_labels, config.num_classes)

    return load_pipeline(
        model, device=device, dtype=dtype, revision=revision, offline=offline, cache_dir=cache_dir, kernels=kernels,
        check_config=check, offload_text_encoder=offload_text_encoder,
    )


def image_metadata(pipe: "LinaPipeline", job: ImageRequest, settings: "SamplingSettings", model: str) -> ImageMetadata:
    """The full record of one image of `pipe`; `model` is the name or absolute folder the user chose."""
    import torch

    from models.pipeline.devices import dtype_name

    source = pipe.source
    return ImageMetadata(
        model=model,
        repo_id=source.repo_id if source else None,
        revision=source.revision if source else None,
        task=pipe.task,
        index=job.index,
        seed=job.seed,
        prompt=job.prompt,
        negative_prompt=job.negative_prompt or None,
        class_label=job.class_label,
        size=tuple(pipe.image_size),
        ar_steps=settings.ar_steps,
        diffusion_steps=settings.diffusion_steps,
        cfg=settings.cfg,
        cfg_min=settings.cfg_min,
        dtype=dtype_name(pipe.dtype),
        device=str(pipe.device),
        lina_version=__version__,
        torch_version=torch.__version__,
        kernels=pipe.transformer.kernels_name,
    )


def save_latents(latents: "torch.Tensor", path: Path, metadata: ImageMetadata) -> None:
    """Write one image's latents [C, h, w] (model space, compute dtype) with its recipe, atomically."""
    import json

    from safetensors.torch import save_file

    from models.files import write_atomic

    tensors = {LATENTS_TENSOR: latents.detach().contiguous().cpu()}
    text = json.dumps(metadata.to_json(), sort_keys=True)
    write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata={METADATA_KEY: text}))


def load_saved_latents(path: Path, metadata: ImageMetadata, *, overwrite: bool) -> "torch.Tensor | None":
    """Latents [C, h, w] saved by an earlier run of the same image, or None if there are none to reuse."""
    import json

    from safetensors import safe_open

    if overwrite or not path.is_file():
        return None
    with safe_open(str(path), framework="pt") as handle:
        text = (handle.metadata() or {}).get(METADATA_KEY)
        saved = ImageMetadata.from_json(json.loads(text), str(path)) if text else None
        if saved is None or saved.recipe() != metadata.recipe():
            raise OutputError(f"{path} exists with other settings; it is never overwritten")
        return handle.get_tensor(LATENTS_TENSOR)


def generate(
    pipe: "LinaPipeline",
    jobs: list[ImageRequest],
    paths: dict[int, Path],
    settings: "SamplingSettings",
    *,
    model: str,
    options: RunOptions,
    events: GenerationEvents,
) -> list[ImageResult]:
    """Make every job's image that is not already finished, and return one result per job.

    Args:
        pipe: a loaded `models.LinaPipeline`.
        jobs: this process's images (already sharded under torchrun).
        paths: job index → target PNG.
        settings: the resolved `SamplingSettings`.
        model: recorded as the metadata's `model`.
        options: batch size, latents and overwrite switches.
        events: receives progress and results.
    """
    records = {job.index: image_metadata(pipe, job, settings, model) for job in jobs}
    results: list[ImageResult] = []
    pending: list[ImageRequest] = []
    for job in jobs:
        if is_finished(paths[job.index], records[job.index], overwrite=options.overwrite):
            results.append(ImageResult(paths[job.index], STATUS_SKIPPED, records[job.index]))
        else:
            pending.append(job)
    events.started(len(pending), len(results))
    for result in results:
        events.image_done(result)

    for start in range(0, len(pending), options.batch_size):
        batch = pending[start : start + options.batch_size]
        latents = _batch_latents(pipe, batch, paths, records, settings, options, events)
        images = pipe.decode(latents)
        for job, image in zip(batch, images, strict=True):
            path = paths[job.index]
            save_png(image, path, records[job.index])
            kept = latents_path(path) if options.save_latents else None
            result = ImageResult(path, STATUS_WRITTEN, records[job.index], kept)
            results.append(result)
            events.image_done(result)
    return results


def _batch_latents(
    pipe: "LinaPipeline",
    batch: list[ImageRequest],
    paths: dict[int, Path],
    records: dict[int, ImageMetadata],
    settings: "SamplingSettings",
    options: RunOptions,
    events: GenerationEvents,
) -> "torch.Tensor":
    """Latents [B, C, h, w] of a batch: reused from earlier `--save-latents` files where present, else sampled."""
    import torch

    reused = {}
    if options.save_latents:
        for job in batch:
            saved = load_saved_latents(latents_path(paths[job.index]), records[job.index], overwrite=options.overwrite)
            if saved is not None:
                reused[job.index] = saved.to(device=pipe.device, dtype=pipe.dtype)
    to_sample = [job for job in batch if job.index not in reused]
    sampled = {}
    if to_sample:
        latents = pipe.sample_latents(to_sample, settings, progress=events.ar_step)
        for job, tensor in zip(to_sample, latents, strict=True):
            sampled[job.index] = tensor
            if options.save_latents:
                save_latents(tensor, latents_path(paths[job.index]), records[job.index])
    return torch.stack([reused.get(job.index, sampled.get(job.index)) for job in batch])
