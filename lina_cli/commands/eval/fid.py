"""`lina eval fid`: FID, Inception Score, precision/recall (and KID) of generated images, with the protocol.

Thin command: parse, check that the flags fit together, make the samples through the engine every image command
shares (`lina_cli.image_run`, unless `--samples` names existing ones), call `models.eval.fid.score.score_fid`, print
the scores and, under them, the protocol that makes them comparable. torch, numpy and PIL are imported inside the
command, so `lina --help` stays fast.
"""

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape

from lina_cli.console import Printer, stderr_console, stdout_console, write_json_result
from lina_cli.image_run import ImageRun, run_images
from lina_cli.options import (
    STDOUT,
    ARStepsOpt,
    BatchSizeOpt,
    CacheDirOpt,
    CfgMinOpt,
    CfgOpt,
    DeviceOpt,
    DiffusionStepsOpt,
    DtypeOpt,
    JsonOpt,
    KernelsOpt,
    OfflineOpt,
    RevisionOpt,
    at_least,
    resolve_device_option,
)
from lina_cli.settings import resolve_settings
from models.errors import EvalInputError
from models.eval.fid.constants import BUILTIN_REFERENCES, DEFAULT_REFERENCE, FEATURE_BATCH_SIZE, RESIZE_RULE
from models.runs.distributed import DistributedContext, context_from_env

if TYPE_CHECKING:
    from rich.console import Console

    from models.eval.fid.score import FIDResult

DEFAULT_MODEL = "lina-c2i-256"
DEFAULT_SAMPLES_DIR = Path("fid-samples")
PAPER_CLASSES, PAPER_PER_CLASS = "0-999", 50  # ADM's and the paper's 50 000 samples
SAMPLE_NAME = "{index:06d}.png"  # image i = class_index · n + j, as the authors' sampler numbers them

FID_EXAMPLES = [
    "lina eval fid   # the paper's protocol: lina-c2i-256, 1000 classes x 50, 64 AR steps, CFG 1 -> 2.4, bf16",
    "torchrun --nproc-per-node 2 -m lina_cli eval fid --samples-dir fid-samples   # the same on two GPUs",
    "lina eval fid -m ./my-c2i-folder --classes 0-99 --num-per-class 10 --json fid.json   # a quick, partial run",
    "lina eval fid --samples fid   # a folder of 256x256 PNGs against ADM's ImageNet 256 reference",
    "lina eval fid --samples samples.npz --ref VIRTUAL_imagenet256_labeled.npz --json fid.json",
    "lina eval fid --samples fid --ref real-images/ --kid --device cuda --feature-batch-size 256",
    "lina eval fid --samples fid --inception-weights weights-inception-2015-12-05-6726825d.pth --json -",
    "lina eval fid --samples fid --save-npz fid.npz   # also pack them for ADM's TensorFlow evaluator",
]
FID_NOTE = (
    "The reference batch is downloaded once into the lina cache (LINA_CACHE, else ~/.cache/lina). Sampling resumes: "
    "run the same command again after an interruption. The sampler options, --device, --dtype, --kernels and "
    "--offline can also be set with LINA_<OPTION> or the config files (see `lina config`)."
)

SamplesOpt = Annotated[Optional[Path], typer.Option(
    "--samples", metavar="DIR|FILE.npz",
    help="score these images instead of generating: a folder of PNG/JPEG files (not sub-folders) or an ADM .npz "
         "batch (arr_0)",
)]
FidModelOpt = Annotated[str, typer.Option(
    "--model", "-m", help="the class-conditional model that makes the samples: alias, hub repo id or folder",
)]
ClassesOpt = Annotated[str, typer.Option(
    "--classes", metavar="IDS", help="class ids to sample: 0-999, 1,5,9 or ranges, as `lina generate --class`",
)]
PerClassOpt = Annotated[int, typer.Option("--num-per-class", callback=at_least(1), help="images per class")]
SamplesDirOpt = Annotated[Path, typer.Option(
    "--samples-dir", help="where the generated samples are kept (re-running the command resumes there)",
)]
SampleSeedOpt = Annotated[int, typer.Option(
    "--seed", "-s", callback=at_least(0), help="base seed: image i (class_index · n + j) uses seed + i",
)]
RefOpt = Annotated[str, typer.Option(
    "--ref", metavar="|".join([*BUILTIN_REFERENCES, "FILE.npz", "DIR"]),
    help="reference: ADM's ImageNet batch (imagenet = 256 px, imagenet-512), an ADM .npz (reference batch, "
         "sample batch or mu/sigma statistics), or a folder of images",
)]
InceptionWeightsOpt = Annotated[Optional[Path], typer.Option(
    "--inception-weights", metavar="FILE",
    help="torch-fidelity's InceptionV3 weights (.pth, read with weights_only=True); default: its standard file, "
         "downloaded into torch hub's cache on first use",
)]
FeatureBatchOpt = Annotated[int, typer.Option(
    "--feature-batch-size", callback=at_least(1), help="images per Inception forward"
)]
ResizeOpt = Annotated[bool, typer.Option(
    "--resize/--no-resize", help=escape(f"accept images that are not 256x256 (512 for imagenet-512): {RESIZE_RULE}")
)]
KidOpt = Annotated[bool, typer.Option("--kid", help="also compute KID (needs reference images)")]
SaveNpzOpt = Annotated[Optional[Path], typer.Option(
    "--save-npz", metavar="FILE.npz", help="also pack the samples into an ADM batch (arr_0, arr_1 = class labels)"
)]


def fid(
    samples: SamplesOpt = None,
    ref: RefOpt = DEFAULT_REFERENCE,
    model: FidModelOpt = DEFAULT_MODEL,
    classes: ClassesOpt = PAPER_CLASSES,
    num_per_class: PerClassOpt = PAPER_PER_CLASS,
    seed: SampleSeedOpt = 0,
    samples_dir: SamplesDirOpt = DEFAULT_SAMPLES_DIR,
    ar_steps: ARStepsOpt = None,
    diffusion_steps: DiffusionStepsOpt = None,
    cfg: CfgOpt = None,
    cfg_min: CfgMinOpt = None,
    batch_size: BatchSizeOpt = None,
    dtype: DtypeOpt = None,
    kernels: KernelsOpt = None,
    revision: RevisionOpt = None,
    cache_dir: CacheDirOpt = None,
    inception_weights: InceptionWeightsOpt = None,
    device: DeviceOpt = None,
    feature_batch_size: FeatureBatchOpt = FEATURE_BATCH_SIZE,
    resize: ResizeOpt = False,
    kid: KidOpt = False,
    json_path: JsonOpt = None,
    save_npz: SaveNpzOpt = None,
    offline: OfflineOpt = None,
) -> None:
    """FID, Inception Score, precision and recall (and KID) of a class-conditional model against ADM's ImageNet
    reference, sampling included.

    Without --samples it first makes the paper's samples with --model (1000 classes x 50, 64 AR steps, 25
    diffusion steps, CFG ramping 1 -> 2.4, bf16 on CUDA) through the engine of `lina generate`: resumable, one seed
    per image, PNG metadata, data-parallel under torchrun. Features come from torch-fidelity's InceptionV3 (the
    port of the network ADM's evaluator runs); FID is computed in float64 against the reference's stored mu/sigma,
    precision/recall with ADM's k = 3 manifolds. The protocol (weights and reference SHA-256, sample count and
    class balance, sampler settings, model and commit, GPUs, versions) is printed under the scores and stored in
    the JSON. Fewer than 50 000 samples is reported as "not FID-50k".
    """
    if save_npz is not None and save_npz.suffix.lower() != ".npz":
        raise typer.BadParameter(f"{save_npz}: the ADM batch is an .npz file; give a FILE.npz", param_hint="--save-npz")
    if json_path not in (None, STDOUT) and Path(json_path).is_dir():
        raise typer.BadParameter(f"{json_path} is a folder; give a file name", param_hint="--json")
    given = {
        "device": device, "offline": offline, "dtype": dtype, "kernels": kernels, "revision": revision,
        "cache_dir": cache_dir, "ar_steps": ar_steps, "diffusion_steps": diffusion_steps, "cfg": cfg,
        "cfg_min": cfg_min, "batch_size": batch_size,
    }
    value = {name: resolved.value for name, resolved in resolve_settings(given, list(given)).items()}
    offline = bool(value["offline"])
    generation = None
    if samples is None:
        from models.eval.fid.score import check_scoring_inputs

        check_scoring_inputs(ref, inception_weights, offline=offline)  # before hours of sampling, not after
        made = _generate_samples(
            model, classes, num_per_class, seed, samples_dir, value, context_from_env(), json_path == STDOUT
        )
        if made is None:  # a torchrun rank other than 0: rank 0 scores
            return
        samples, generation = samples_dir, made
    target = str(resolve_device_option(value["device"]))
    result = _score(samples, ref, inception_weights, target, feature_batch_size, resize, kid, offline, generation)
    if save_npz is not None:
        _pack(samples, save_npz, result.protocol["image_size"], resize)
    if not write_json_result(result.to_json(), json_path):
        _print_result(result, ref, stdout_console())


def _generate_samples(
    model: str, classes: str, per_class: int, seed: int, folder: Path, value: dict[str, Any],
    context: "DistributedContext", stdout_reserved: bool,
) -> dict[str, Any] | None:
    """Make (or finish) the samples in `folder` and return how they were made, for the protocol; None on the
    torchrun ranks that do not score."""
    from models.eval.fid.images import IMAGE_EXTENSIONS
    from models.pipeline.requests import Condition
    from models.runs.conditions import parse_class_ids
    from models.runs.generation import RunOptions
    from models.runs.outputs import plan_outputs

    labels = parse_class_ids([classes])
    printer = Printer(enabled=context.is_main, stdout_reserved=stdout_reserved)
    printer.note(f"{len(labels) * per_class} samples ({len(labels)} classes × {per_class}) in {folder}")
    run = ImageRun(
        model=model, task="c2i", conditions=[Condition(class_label=label) for label in labels],
        plan_paths=partial(plan_outputs, str(folder / SAMPLE_NAME)), seed=seed, num_images=per_class,
        device=value["device"], dtype=value["dtype"], kernels=value["kernels"], revision=value["revision"],
        offline=value["offline"] or None, cache_dir=value["cache_dir"], ar_steps=value["ar_steps"],
        diffusion_steps=value["diffusion_steps"], cfg=value["cfg"], cfg_min=value["cfg_min"],
        options=RunOptions(batch_size=value["batch_size"]),
    )
    outcome = run_images(run, printer, context)
    if outcome.results is None:
        return None
    made = {result.path.name for result in outcome.results}
    stray = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.name not in made)
    if stray:
        raise EvalInputError(
            f"{folder} also holds {len(stray)} image(s) this run did not make (e.g. {stray[0]}), which would be "
            "scored with it; use a fresh --samples-dir, or score the folder as it is with --samples"
        )
    record = outcome.results[0].metadata
    return {
        "model": record.model, "repo_id": record.repo_id, "revision": record.revision, "classes": classes,
        "num_per_class": per_class, "seed": outcome.seed, "ar_steps": record.ar_steps,
        "diffusion_steps": record.diffusion_steps, "cfg": record.cfg, "cfg_min": record.cfg_min,
        "dtype": record.dtype, "kernels": record.kernels, "device": outcome.device, "gpus": outcome.gpus,
        "sampling_seconds": round(outcome.seconds, 1),
    }


def _score(
    samples: Path, ref: str, weights: Path | None, device: str, batch_size: int, resize: bool, kid: bool,
    offline: bool, generation: dict[str, Any] | None,
) -> "FIDResult":
    """The scoring step, shared by existing samples and freshly generated ones."""
    from models.eval.fid.score import score_fid

    with _progress() as progress:
        return score_fid(
            samples, ref, inception_weights=weights, device=device, batch_size=batch_size, resize=resize, kid=kid,
            offline=offline, generation=generation, progress=progress,
        )


def _pack(samples: Path, target: Path, image_size: int, resize: bool) -> None:
    from models.eval.fid.images import pack_adm_npz, scan_images

    images = scan_images(samples, image_size, resize=resize, reject_duplicates=True)
    pack_adm_npz(images, target)
    stderr_console().print(f"[dim]packed {images.count} images into {escape(str(target))}[/dim]")


@contextmanager
def _progress() -> Iterator[Callable[[str, int, int | None], None]]:
    """Progress bars on stderr, one per task the library reports (hashing, downloading, Inception), on a terminal."""
    from lina_cli.console import Printer
    from lina_cli.progress import RunProgress

    bars: dict[str, Any] = {}
    with RunProgress(Printer()) as progress:

        def update(task: str, done: int, total: int | None) -> None:
            if task not in bars:
                bars[task] = progress.add(escape(task), total, "B" if task.startswith("downloading") else "img")
            progress.update(bars[task], completed=done, total=total)

        yield update


# ----------------------------------------------------------------------------------------------------
# The human report
# ----------------------------------------------------------------------------------------------------


def _print_result(result: "FIDResult", ref: str, console: "Console") -> None:
    from rich.table import Table

    label = "FID-50k" if result.fid_50k else f"not FID-50k ({result.num_samples} samples)"
    table = Table(title=f"{label} against {escape(ref)}")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_row("FID", f"{result.fid:.4f}")
    table.add_row("Inception Score", f"{result.inception_score:.4f} ± {result.inception_score_std:.4f}")
    table.add_row("Precision", _number(result.precision))
    table.add_row("Recall", _number(result.recall))
    if result.kid is not None:
        table.add_row("KID", f"{result.kid:.6f} ± {result.kid_std:.6f}")
    table.add_row("sFID", _number(result.sfid))
    table.add_row("samples", str(result.num_samples))
    console.print(table)
    protocol = Table(title="Protocol", show_header=False, title_justify="left")
    protocol.add_column("key", style="dim")
    protocol.add_column("value", overflow="fold")
    for key, value in _flatten(result.protocol):
        protocol.add_row(escape(key), escape(value))
    console.print(protocol)
    for note in result.notes:
        style = "yellow" if note.startswith("not FID-50k") else "dim"
        console.print(f"[{style}]note: {escape(note)}[/{style}]")


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.4f}"


def _flatten(data: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, str]]:
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from _flatten(value, name + ".")
        else:
            yield name, "—" if value is None else (json.dumps(value) if isinstance(value, (list, dict)) else str(value))
