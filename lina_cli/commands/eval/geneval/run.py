"""`lina eval geneval run` (generate GenEval's images with a LINA model, then score them) and `score` (score an
existing GenEval folder made by any tool)."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape

from lina_cli.commands.eval.geneval.report import print_summary
from lina_cli.console import Printer, stdout_console, write_json_result
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
    setting_option,
)

if TYPE_CHECKING:
    import torch

    from models.eval.geneval.run import GenEvalScore, PromptsUsed, ScoringJob

GENEVAL_MODEL = "lina-t2i-512"  # the model of the paper's GenEval 0.74
DEFAULT_OUTPUT = "outputs/geneval"
BACKEND_CHOICES = ("geneval-mask2former", "mmdetection", "hf-mask2former")  # models.eval.geneval.detector.BACKENDS

RUN_EXAMPLES = [
    "lina eval geneval run --metadata evaluation_metadata.jsonl   # lina-t2i-512, 553 prompts x 4 images, then score",
    "lina eval geneval run --metadata evaluation_metadata.jsonl --rewritten prompts.json -o geneval-512-rewrite",
    "lina eval geneval run -m lina-t2i-1024 --metadata evaluation_metadata.jsonl -b 8 --json score.json",
    "torchrun --nproc-per-node 2 -m lina_cli eval geneval run --metadata evaluation_metadata.jsonl -b 8",
]
RUN_NOTE = (
    "The paper's GenEval 0.74 is lina-t2i-512 conditioned on the authors' rewritten prompts (--rewritten, their "
    "evaluations/geneval/prompts.json), scored against GenEval's metadata; with GenEval's own prompts the same "
    "checkpoint scores 0.68. Re-running the same command resumes: finished images are skipped."
)
SCORE_EXAMPLES = [
    "lina eval geneval score outputs/geneval",
    "lina eval geneval score images/ --detector-weights mask2former_swin-s-p4-w7-224_lsj_8x2_50e_coco.pth",
    "lina eval geneval score images/ --detector hf-mask2former --json -",
]
SCORE_NOTE = (
    "The folder is GenEval's layout (<index:05d>/metadata.jsonl, <index:05d>/samples/<n>.png), from lina or any "
    "tool. GenEval's detector .pth is looked for in the lina cache (LINA_CACHE, else ~/.cache/lina/geneval/detector) "
    "and converted there once; CLIP's OpenAI weights come from the Hugging Face cache."
)

MetadataOpt = Annotated[Optional[Path], typer.Option(
    "--metadata", metavar="FILE", exists=True, dir_okay=False, readable=True,
    help="GenEval's prompts/evaluation_metadata.jsonl (553 lines); the prompts are scored against it",
)]
RewrittenOpt = Annotated[Optional[Path], typer.Option(
    "--rewritten", metavar="PROMPTS.json", exists=True, dir_okay=False, readable=True,
    help="condition on the dense_prompt of a JSON list of {id, prompt, dense_prompt} (the LINA authors' format), "
         "scored against the original metadata",
)]
ImagesPerPromptOpt = Annotated[int, typer.Option(
    "--images-per-prompt", min=1, help="images per prompt (GenEval's protocol: 4)"
)]
LimitOpt = Annotated[Optional[int], typer.Option(
    "--limit", metavar="N", callback=at_least(1), help="only the first N prompts (a quick check; not a GenEval score)"
)]
DetectorOpt = Annotated[str, typer.Option(
    "--detector", metavar="|".join(BACKEND_CHOICES),
    help="geneval-mask2former: GenEval's checkpoint in transformers; mmdetection: the same through mmdetection "
         "(needs mmdet 2.x); hf-mask2former: facebook/mask2former-swin-small-coco-instance (not GenEval's detector)",
)]
DetectorWeightsOpt = Annotated[Optional[Path], typer.Option(
    "--detector-weights", metavar="FILE", exists=True,
    help="GenEval's mmdetection .pth (or a folder it was converted into); for hf-mask2former a transformers folder",
)]
ClipWeightsOpt = Annotated[Optional[Path], typer.Option(
    "--clip-weights", metavar="FILE", exists=True,
    help="OpenAI's ViT-L-14 weights as a file, or an open_clip model folder (open_clip_config.json + weights); "
         "default: open_clip's 'openai' weights from the Hugging Face cache",
)]
GenEvalModelOpt = Annotated[Optional[str], typer.Option(
    "-m", "--model", show_default=False,
    help=escape(f"alias, hub repo id or folder of a text-to-image model [default: {GENEVAL_MODEL}, the paper's GenEval model]"),
)]
GenEvalSeedOpt = Annotated[Optional[int], typer.Option(
    "-s", "--seed", callback=at_least(0), show_default=False,
    help=escape("base seed; image j of prompt p uses seed + n·p + j [default: 1337, the LINA authors' GenEval seed]"),
)]
ResultsOpt = Annotated[Optional[Path], typer.Option(
    "--results", metavar="FILE", dir_okay=False, help="where to write results.jsonl (default: inside the image folder)"
)]


def _check_backend(detector: str) -> None:
    if detector not in BACKEND_CHOICES:
        raise typer.BadParameter(f"{detector!r}: expected one of {', '.join(BACKEND_CHOICES)}", param_hint="--detector")


def _check_json(json_path: str | None) -> None:
    if json_path not in (None, STDOUT) and Path(json_path).is_dir():
        raise typer.BadParameter(f"{json_path} is a folder; give a file name", param_hint="--json")


def run(
    metadata: MetadataOpt = None,
    rewritten: RewrittenOpt = None,
    model: GenEvalModelOpt = None,
    revision: RevisionOpt = None,
    output: Annotated[Path, typer.Option("-o", "--output", metavar="DIR", help="the image folder")] = Path(DEFAULT_OUTPUT),
    images_per_prompt: ImagesPerPromptOpt = 4,
    limit: LimitOpt = None,
    seed: GenEvalSeedOpt = None,
    cfg: CfgOpt = None,
    cfg_min: CfgMinOpt = None,
    ar_steps: ARStepsOpt = None,
    diffusion_steps: DiffusionStepsOpt = None,
    dtype: DtypeOpt = None,
    kernels: KernelsOpt = None,
    device: DeviceOpt = None,
    batch_size: BatchSizeOpt = None,
    overwrite: setting_option("--overwrite", setting="overwrite", kind=bool) = None,
    detector: DetectorOpt = "geneval-mask2former",
    detector_weights: DetectorWeightsOpt = None,
    clip_weights: ClipWeightsOpt = None,
    offline: OfflineOpt = None,
    cache_dir: CacheDirOpt = None,
    json_path: JsonOpt = None,
) -> None:
    """Generate GenEval's images with a LINA model, then score them: per-task accuracy and the overall score.

    Defaults follow the paper's GenEval runs: lina-t2i-512, 4 images per prompt, seed 1337, 128 AR steps, 25
    diffusion steps, cfg 7, bf16 on CUDA. Image j of prompt p uses seed + 4p + j, so resuming and the number of
    GPUs never change an image. Under torchrun every process generates its share; the first one then scores.
    The detector is GenEval's own Mask2Former checkpoint, run without mmdetection.
    """
    from functools import partial

    from lina_cli.image_run import ImageRun, run_images
    from lina_cli.settings import resolve_settings
    from models.eval.geneval.prompts import conditioning_prompts, read_metadata, read_rewritten
    from models.eval.geneval.run import (
        GENEVAL_SEED,
        ORIGINAL,
        REWRITTEN,
        PromptsUsed,
        geneval_conditions,
        geneval_paths,
        write_metadata_files,
    )
    from models.runs.distributed import context_from_env
    from models.runs.generation import RunOptions

    _check_backend(detector)
    _check_json(json_path)
    given = {"model": model, "revision": revision, "seed": seed, "dtype": dtype, "kernels": kernels, "device": device,
             "batch_size": batch_size, "overwrite": overwrite, "offline": offline, "cache_dir": cache_dir}
    settings = resolve_settings({k: v for k, v in given.items() if v is not None}, list(given))
    value = {name: resolved.value for name, resolved in settings.items()}
    if metadata is not None:
        metadata_path = metadata
    else:  # GenEval's prompts from the lina cache, downloaded the first time (`lina download geneval`)
        from models.eval.downloads import fetch_geneval_metadata

        metadata_path = fetch_geneval_metadata(offline=bool(value["offline"]))
    lines = read_metadata(metadata_path)[:limit]
    prompts = conditioning_prompts(lines, read_rewritten(rewritten) if rewritten is not None else None, rewritten)
    used = PromptsUsed(REWRITTEN if rewritten is not None else ORIGINAL, metadata_path, rewritten)
    image_run = ImageRun(
        model=GENEVAL_MODEL if settings["model"].is_default else value["model"], task="t2i",
        conditions=geneval_conditions(prompts),
        plan_paths=partial(geneval_paths, out_dir=output, images_per_prompt=images_per_prompt),
        seed=GENEVAL_SEED if value["seed"] is None else value["seed"], num_images=images_per_prompt,
        device=value["device"], dtype=value["dtype"], kernels=value["kernels"], revision=value["revision"],
        offline=value["offline"] or None, cache_dir=value["cache_dir"], ar_steps=ar_steps,
        diffusion_steps=diffusion_steps, cfg=cfg, cfg_min=cfg_min,
        options=RunOptions(batch_size=value["batch_size"], overwrite=value["overwrite"]),
        prepare=partial(write_metadata_files, output, lines),
    )
    context = context_from_env()
    printer = Printer(enabled=context.is_main, stdout_reserved=json_path == STDOUT)
    printer.note(f"{len(lines)} prompts x {images_per_prompt} images into {output}, seed {image_run.seed}, "
                 f"conditioned on the {used.conditioning} prompts")
    outcome = run_images(image_run, printer, context)
    if outcome.results is None:  # torchrun: the first process scores once every process has finished
        return
    written = sum(result.status == "written" for result in outcome.results)
    printer.note(f"images: {written} made now, {len(outcome.results) - written} already finished")
    first = outcome.results[0].metadata
    generation = {"model": first.model, "revision": first.revision, "seed": outcome.seed, "prompts": len(lines),
                  "images_per_prompt": images_per_prompt, "ar_steps": first.ar_steps,
                  "diffusion_steps": first.diffusion_steps, "cfg": first.cfg, "cfg_min": first.cfg_min,
                  "dtype": first.dtype, "kernels": first.kernels, "seconds": round(outcome.seconds, 3),
                  "gpus": outcome.gpus}
    target = resolve_device_option(value["device"], context.local_rank if context.enabled else None)
    score = _score(output, None, detector, detector_weights, clip_weights, target, used, generation,
                   bool(value["offline"]), printer)
    _report(score, json_path)


def score(
    folder: Annotated[Path, typer.Argument(metavar="DIR", exists=True, file_okay=False, help="a GenEval image folder")],
    metadata: MetadataOpt = None,
    rewritten: RewrittenOpt = None,
    detector: DetectorOpt = "geneval-mask2former",
    detector_weights: DetectorWeightsOpt = None,
    clip_weights: ClipWeightsOpt = None,
    device: DeviceOpt = None,
    results: ResultsOpt = None,
    offline: OfflineOpt = None,
    json_path: JsonOpt = None,
) -> None:
    """Score a GenEval image folder made by any tool: results.jsonl in GenEval's format, and the score.

    --metadata and --rewritten only record (and, for --metadata, check) the prompts used; without them the
    images' lina metadata says whether the original or rewritten prompts were used.
    """
    from lina_cli.settings import resolve_settings
    from models.eval.geneval.run import REWRITTEN, PromptsUsed, recorded_conditioning, scoring_jobs

    _check_backend(detector)
    _check_json(json_path)
    settings = resolve_settings({"device": device, "offline": offline}, ["device", "offline"])
    printer = Printer(stdout_reserved=json_path == STDOUT)
    jobs = scoring_jobs(folder)
    if metadata is not None:
        _check_folder_metadata(jobs, metadata)
    conditioning = REWRITTEN if rewritten is not None else recorded_conditioning(jobs)
    used = PromptsUsed(conditioning, metadata, rewritten)
    target = resolve_device_option(settings["device"].value)
    outcome = _score(folder, results, detector, detector_weights, clip_weights, target, used, None,
                     bool(settings["offline"].value), printer, jobs)
    _report(outcome, json_path)




def _check_folder_metadata(jobs: list["ScoringJob"], metadata: Path) -> None:
    """Each prompt folder's metadata must be line <index> of --metadata (the file the folder claims to score)."""
    from models.errors import GenEvalFileError
    from models.eval.geneval.prompts import read_metadata

    lines = read_metadata(metadata)
    for job in jobs:
        if job.index >= len(lines) or lines[job.index] != job.metadata:
            raise GenEvalFileError(f"{job.path.parent.parent}: its metadata is not line {job.index + 1} of {metadata}")


def _score(
    folder: Path, results: Path | None, backend: str, detector_weights: Path | None, clip_weights: Path | None,
    device: "torch.device", used: "PromptsUsed", generation: dict | None, offline: bool, printer: Printer,
    jobs: list["ScoringJob"] | None = None,
) -> "GenEvalScore":
    """The scoring step `run` and `score` share: load the detector and CLIP, score every image, write the files."""
    from lina_cli.progress import RunProgress, status
    from models.eval.geneval.colour import load_colour_classifier
    from models.eval.geneval.detector import build_detector
    from models.eval.geneval.run import RESULTS_NAME, score_images, scoring_jobs, scoring_protocol, write_score

    jobs = jobs if jobs is not None else scoring_jobs(folder)
    with status(printer, f"loading the {backend} detector and CLIP"):
        detector = build_detector(backend, detector_weights, device, offline=offline)
        colour = load_colour_classifier(clip_weights, device)
    with RunProgress(printer) as progress:
        bar = progress.add("scoring", total=len(jobs), unit="img")
        lines = score_images(jobs, detector, colour, progress=lambda done, total: progress.update(bar, completed=done))
    protocol = scoring_protocol(detector, colour, used, generation=generation)
    return write_score(results if results is not None else folder / RESULTS_NAME, lines, protocol)


def _report(score: "GenEvalScore", json_path: str | None) -> None:
    """The score as a table and the protocol under it, or as JSON on stdout or in a file."""
    if write_json_result(score.to_json(), json_path):
        return
    console = stdout_console()
    print_summary(score.summary, None, score.results, console)
    protocol = score.protocol
    detector, colour, prompts = protocol["detector"], protocol["colour"], protocol["prompts"]
    console.print(f"[dim]detector:[/] {detector['backend']}  {escape(detector['weights']['path'])}  "
                  f"sha256 {detector['weights']['sha256'][:16]}…")
    if detector["note"]:
        console.print(f"[yellow]warning:[/] {escape(detector['note'])}")
    console.print(f"[dim]colour:[/] CLIP {escape(colour['model'])}  sha256 {colour['weights']['sha256'][:16]}…")
    console.print(f"[dim]prompts:[/] conditioned on the {prompts['conditioning']} prompts; results in "
                  f"{escape(str(score.results))}")
