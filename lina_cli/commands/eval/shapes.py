"""`lina eval shapes`: the shapes benchmark — generate its prompt set (or yours) with a model, score it, print it.

Thin command: parse, check that the flags fit together, call `models.eval.shapes.benchmark`, print.
The model and the library are imported inside the command, so `lina --help` stays fast.
"""

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from lina_cli.commands.eval.geneval.report import print_summary
from lina_cli.console import Printer, stdout_console, write_json_result
from lina_cli.image_run import ImageRun, run_images
from lina_cli.options import (
    STDOUT,
    ARStepsOpt,
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
    setting_option,
)
from lina_cli.settings import resolve_settings

if TYPE_CHECKING:
    from models.eval.geneval.summary import Summary

DEFAULT_OUTPUT = Path("eval-shapes")
# Shapes models are small: 16 images at a time keep a CPU's cores busy and fit any GPU (lina-shapes on two cores:
# 32 images in 19 s with -b 16 against 38 s one by one, model load included; the fixed set's 456 in about 3 min).
# Each image draws from its own seed, so the batch does not change which images are made (docs/training.md's
# scores were made with -b 16).
SHAPES_BATCH_SIZE = 16
ShapesBatchSizeOpt = setting_option(
    "-b", "--batch-size", setting="batch_size", kind=int, command_default=SHAPES_BATCH_SIZE
)

SHAPES_EXAMPLES = [
    "lina eval shapes -m lina-shapes",
    "lina eval shapes -m ./my-shapes-model -o eval-shapes -n 4 -s 0 --json score.json",
    "lina eval shapes -m lina-shapes --prompts my-prompts.jsonl -n 50   # your own prompts, 50 seeds each",
    "lina eval shapes --score-only eval-shapes   # re-score a folder in GenEval's layout",
    "lina eval shapes -m lina-shapes --device cpu --json - | jq .overall",
]
SHAPES_NOTE = (
    "The prompt set: 114 GenEval-style prompts over circles, squares and triangles in 8 colours (single object, "
    "two objects, counting, colours, position, colour attribution); images go in GenEval's folder layout. "
    "--prompts FILE replaces it with yours, in GenEval's evaluation_metadata.jsonl format, one object per line: "
    '{"tag": "position", "include": [{"class": "square", "count": 1, "color": "blue"}, {"class": "circle", '
    '"count": 2, "color": "red", "position": ["left of", 0]}], "prompt": "two red circles left of a blue square"}'
)

ShapesModelOpt = Annotated[Optional[str], typer.Option(
    "--model", "-m", show_default=False, help="text-to-image model to evaluate: alias, hub repo id or pipeline folder",
)]
OutputOpt = Annotated[Optional[Path], typer.Option(
    "--output", "-o", show_default=False,
    help=f"folder for the images (GenEval layout) and results.jsonl [default: {DEFAULT_OUTPUT}]",
)]
ScoreOnlyOpt = Annotated[Optional[Path], typer.Option(
    "--score-only", metavar="DIR", show_default=False,
    help="generate nothing: score the images already in DIR (<index:05d>/metadata.jsonl, samples/*.png)",
)]
PromptsOpt = Annotated[Optional[Path], typer.Option(
    "--prompts", metavar="FILE", exists=True, dir_okay=False, readable=True, show_default=False,
    help="generate your own prompt set instead of the fixed one: GenEval metadata lines (evaluation_metadata.jsonl "
         "format) with shapes circle, square, triangle and palette colours",
)]
ImagesOpt = Annotated[int, typer.Option("--images-per-prompt", "-n", callback=at_least(1), help="images per prompt (GenEval: 4)")]
SeedOpt = Annotated[int, typer.Option(
    "--seed", "-s", callback=at_least(0), help="seed of the first image; image j of prompt p uses seed + p·n + j"
)]


def shapes(
    model: ShapesModelOpt = None,
    output: OutputOpt = None,
    score_only: ScoreOnlyOpt = None,
    prompts_file: PromptsOpt = None,
    images_per_prompt: ImagesOpt = 4,
    seed: SeedOpt = 0,
    json_path: JsonOpt = None,
    ar_steps: ARStepsOpt = None,
    diffusion_steps: DiffusionStepsOpt = None,
    cfg: CfgOpt = None,
    cfg_min: CfgMinOpt = None,
    batch_size: ShapesBatchSizeOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    kernels: KernelsOpt = None,
    revision: RevisionOpt = None,
    offline: OfflineOpt = None,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Score a text-to-image model on the shapes benchmark: per-task accuracy and the overall score.

    Generates n images for each prompt of the fixed shapes prompt set, or of your --prompts FILE, in GenEval's
    folder layout.
    A programmatic detector finds the objects: connected components, nearest palette colour, shape by fill ratio.
    GenEval's rules judge them; GenEval's results.jsonl goes next to the images.
    """
    exclusive = {"--model": model, "--output": output, "--prompts": prompts_file}
    flag = next((name for name, value in exclusive.items() if value is not None), None)
    if score_only is not None and flag is not None:
        raise typer.BadParameter(f"--score-only scores an existing folder; drop {flag}", param_hint=flag)
    if score_only is None and model is None:
        raise typer.BadParameter("which model? give -m MODEL, or --score-only DIR to score existing images",
                                 param_hint="--model")

    from models.eval.shapes.benchmark import RESULTS_NAME, score_shapes_folder

    if score_only is not None:
        folder = score_only
    else:
        folder = output if output is not None else DEFAULT_OUTPUT
        given = {"device": device, "dtype": dtype, "kernels": kernels, "revision": revision, "offline": offline,
                 "cache_dir": cache_dir, "ar_steps": ar_steps, "diffusion_steps": diffusion_steps, "cfg": cfg,
                 "cfg_min": cfg_min, "batch_size": batch_size}
        resolved = resolve_settings(given, list(given))
        value = {name: setting.value for name, setting in resolved.items()}
        if resolved["batch_size"].is_default:
            value["batch_size"] = SHAPES_BATCH_SIZE
        if not _generate(model, folder, prompts_file, images_per_prompt, seed, value, json_path == STDOUT):
            return  # a torchrun rank other than 0: rank 0 scores
    _write_score(score_shapes_folder(folder), folder / RESULTS_NAME, json_path)


def _generate(
    model: str, folder: Path, prompts_file: Path | None, per_prompt: int, seed: int, value: dict[str, Any],
    stdout_reserved: bool,
) -> bool:
    """Make (or finish) the prompt set's images in `folder` through the engine of `lina generate`; False on the
    torchrun ranks that do not score. The set is `prompts_file`'s, else the fixed one."""
    from models.data.shapes_prompts import evaluation_prompts
    from models.eval.geneval.run import geneval_conditions, geneval_paths, write_metadata_files
    from models.eval.shapes.benchmark import check_output_folder, read_prompt_file
    from models.runs.distributed import context_from_env
    from models.runs.generation import RunOptions

    prompts = read_prompt_file(prompts_file) if prompts_file is not None else evaluation_prompts()
    check_output_folder(folder, prompts)  # before loading: a model can take minutes to load
    context = context_from_env()
    run = ImageRun(
        model=model, task="t2i", conditions=geneval_conditions([line["prompt"] for line in prompts]),
        plan_paths=partial(geneval_paths, out_dir=folder, images_per_prompt=per_prompt), seed=seed,
        num_images=per_prompt, device=value["device"], dtype=value["dtype"], kernels=value["kernels"],
        revision=value["revision"], offline=value["offline"] or None, cache_dir=value["cache_dir"],
        ar_steps=value["ar_steps"], diffusion_steps=value["diffusion_steps"], cfg=value["cfg"],
        cfg_min=value["cfg_min"], options=RunOptions(batch_size=value["batch_size"]),
        prepare=partial(write_metadata_files, folder, prompts),
    )
    printer = Printer(enabled=context.is_main, stdout_reserved=stdout_reserved)
    return run_images(run, printer, context).results is not None


def _write_score(scores: "Summary", results: Path, json_path: str | None) -> None:
    from models.eval.geneval.summary import score_json

    data = score_json(scores) | {"results": str(results)}
    if write_json_result(data, json_path):
        return
    print_summary(scores, None, results, stdout_console())
