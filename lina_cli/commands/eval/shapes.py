"""`lina eval shapes`: the shapes benchmark — generate its fixed prompt set with a model, score it, print the table.

Thin command: parse, check that the flags fit together, call `models.eval.shapes.benchmark`, print.
The model and the library are imported inside the command, so `lina --help` stays fast.
"""

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer

from lina_cli.commands.eval.geneval import _print_summary
from lina_cli.console import Printer, stdout_console
from lina_cli.options import (
    STDOUT,
    CacheDirOpt,
    DeviceOpt,
    DtypeOpt,
    JsonOpt,
    KernelsOpt,
    OfflineOpt,
    RevisionOpt,
    at_least,
    resolve_device_option,
    setting_option,
)
from lina_cli.progress import RunProgress, status
from lina_cli.settings import resolve_settings

if TYPE_CHECKING:
    from models.eval.geneval.summary import Summary
    from models.pipeline.pipeline import LinaPipeline

DEFAULT_OUTPUT = Path("eval-shapes")

SHAPES_EXAMPLES = [
    "lina eval shapes -m lina-shapes",
    "lina eval shapes -m ./my-shapes-model -o eval-shapes -n 4 -s 0 --json score.json",
    "lina eval shapes --score-only eval-shapes   # re-score a folder in GenEval's layout",
    "lina eval shapes -m lina-shapes --device cpu --json - | jq .overall",
]
SHAPES_NOTE = (
    "The prompt set: 114 GenEval-style prompts over circles, squares and triangles in 8 colours (single object, "
    "two objects, counting, colours, position, colour attribution); images go in GenEval's folder layout."
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
ImagesOpt = Annotated[int, typer.Option("--images-per-prompt", "-n", callback=at_least(1), help="images per prompt (GenEval: 4)")]
SeedOpt = Annotated[int, typer.Option(
    "--seed", "-s", callback=at_least(0), help="seed of the first image; image j of prompt p uses seed + p·n + j"
)]
ARStepsOpt = setting_option("--ar-steps", setting="ar_steps", kind=int)
DiffusionStepsOpt = setting_option("--diffusion-steps", setting="diffusion_steps", kind=int)
CfgOpt = setting_option("--cfg", setting="cfg", kind=float)


def shapes(
    model: ShapesModelOpt = None,
    output: OutputOpt = None,
    score_only: ScoreOnlyOpt = None,
    images_per_prompt: ImagesOpt = 4,
    seed: SeedOpt = 0,
    json_path: JsonOpt = None,
    ar_steps: ARStepsOpt = None,
    diffusion_steps: DiffusionStepsOpt = None,
    cfg: CfgOpt = None,
    device: DeviceOpt = None,
    dtype: DtypeOpt = None,
    kernels: KernelsOpt = None,
    revision: RevisionOpt = None,
    offline: OfflineOpt = None,
    cache_dir: CacheDirOpt = None,
) -> None:
    """Score a text-to-image model on the shapes benchmark: per-task accuracy and the overall score.

    Generates n images for each prompt of the fixed shapes prompt set, in GenEval's folder layout.
    A programmatic detector finds the objects: connected components, nearest palette colour, shape by fill ratio.
    GenEval's rules judge them; GenEval's results.jsonl goes next to the images.
    """
    if score_only is not None and (model is not None or output is not None):
        flag = "--model" if model is not None else "--output"
        raise typer.BadParameter(f"--score-only scores an existing folder; drop {flag}", param_hint=flag)
    if score_only is None and model is None:
        raise typer.BadParameter("which model? give -m MODEL, or --score-only DIR to score existing images",
                                 param_hint="--model")

    from models.eval.shapes.benchmark import RESULTS_NAME, check_output_folder, evaluate_shapes, score_shapes_folder

    if score_only is not None:
        folder = score_only
        scores = score_shapes_folder(folder)
    else:
        folder = output if output is not None else DEFAULT_OUTPUT
        check_output_folder(folder)  # before loading: a model can take minutes to load
        given = {"device": device, "dtype": dtype, "kernels": kernels, "revision": revision, "offline": offline,
                 "cache_dir": cache_dir, "ar_steps": ar_steps, "diffusion_steps": diffusion_steps, "cfg": cfg}
        value = {name: resolved.value for name, resolved in resolve_settings(given, list(given)).items()}
        pipe = _load(model, value)
        with _progress_bar() as progress:
            scores = evaluate_shapes(
                pipe, folder, images_per_prompt=images_per_prompt, seed=seed, ar_steps=value["ar_steps"],
                diffusion_steps=value["diffusion_steps"], cfg=value["cfg"], progress=progress,
            )
    results = folder / RESULTS_NAME
    _write_score(scores, results, json_path)


def _load(model: str, value: dict[str, Any]) -> "LinaPipeline":
    """The model, loaded as `lina generate` loads it (same settings, same checks), for text-to-image."""
    from models.runs.generation import load_checked_pipeline

    with status(Printer(), f"loading {model}"):
        return load_checked_pipeline(
            model, task="t2i", size=None, class_labels=[], device=resolve_device_option(value["device"]),
            dtype=value["dtype"], revision=value["revision"], offline=value["offline"] or None,
            cache_dir=value["cache_dir"], kernels=value["kernels"],
        )


@contextmanager
def _progress_bar() -> Iterator[Callable[[int, int], None]]:
    """The images bar of the one progress component; yields its progress(done, total)."""
    with RunProgress(Printer()) as progress:
        bar = progress.add("images", total=None, unit="img")
        yield lambda done, total: progress.update(bar, completed=done, total=total)


def _write_score(scores: "Summary", results: Path, json_path: str | None) -> None:
    from models.eval.geneval.summary import score_json

    data = score_json(scores) | {"results": str(results)}
    if json_path == STDOUT:
        typer.echo(json.dumps(data, indent=2))
        return
    if json_path is not None:
        from models.files import write_atomic

        text = json.dumps(data, indent=2) + "\n"
        write_atomic(Path(json_path), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    _print_summary(scores, None, results, stdout_console())
