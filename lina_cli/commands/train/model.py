"""`lina train model` (start or resume a run, optionally export it) and `lina train export` (a run → a pipeline folder).

Thin commands: parse, check that the flags fit together, call `models.train`, print. torch is imported inside.
"""

import math
import signal
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from lina_cli.commands.train.common import (
    TrainDtypeOpt,
    TrainingBars,
    TrainSeedOpt,
    WorkersOpt,
    batch_option,
    check_dtype,
    lr_option,
    option,
    steps_option,
)
from lina_cli.console import Printer
from lina_cli.options import (
    ARStepsOpt,
    CfgMinOpt,
    CfgOpt,
    DeviceOpt,
    DiffusionStepsOpt,
    FormatOpt,
    OfflineOpt,
    resolve_device_option,
)
from lina_cli.settings import resolve_settings
from models.train.recipe import DEFAULT_GEOMETRY, PRESETS, TrainRecipe

MODEL_EXAMPLES = [
    "lina train model --parts runs/shapes-parts --steps 12000 -b 256 --lr 3e-4 --out runs/shapes --export lina-shapes",
    "lina train model --out runs/shapes --resume --steps 20000   # continue (and extend) a run",
    "lina train model --data imagenet/train --size 256 --parts runs/in-parts --config geometry.json --out runs/in",
    "lina train model --init-from lina-c2i-256 --data my-classes --lr 1e-5 --out runs/finetune",
    "torchrun --nproc-per-node 8 -m lina_cli train model --parts runs/shapes-parts -b 2048 --out runs/shapes",
]
EXPORT_EXAMPLES = [
    "lina train export runs/shapes lina-shapes",
    "lina train export runs/shapes lina-shapes-fp16 --dtype fp16",
]
DEFAULTS = TrainRecipe()
EXIT_SIGNALLED = {"SIGINT": 128 + signal.SIGINT, "SIGTERM": 128 + signal.SIGTERM}
EXPORT_DTYPES = ("fp32", "fp16", "bf16")

OutOpt = Annotated[Path, typer.Option(
    "--out", "-o", show_default=False, help="the run folder: run.json, log.jsonl, cache/, checkpoints/"
)]
ResumeOpt = Annotated[bool, typer.Option("--resume", help="continue the run in --out from its latest checkpoint")]
DataOpt = option(str, "--data", help="'shapes', a class-folder tree, a folder with metadata.jsonl, or a .jsonl "
                 f"[default: {DEFAULTS.data}]")
TaskOpt = option(str, "--task", metavar="t2i|c2i", help="default: the data's kind (shapes: t2i) or the --init-from model's")
SizeOpt = option(int, "--size", min=1, help=f"image side in px [default: {DEFAULTS.image_size}]")
DatasetSizeOpt = option(int, "--dataset-size", min=1, help=f"images in the shapes dataset [default: {DEFAULTS.dataset_size}]")
ShapesMixOpt = option(str, "--shapes-mix", metavar="TASK=W,...", help="relative weights of the shapes tasks, e.g. "
                      "position=3,color_attr=2 (a task left out weighs 1) [default: all equal]")
ShapesRelationsOpt = option(str, "--shapes-relations", metavar="REL=W,...", help="relative weights of the relations"
                            " of the shapes position scenes, e.g. left_of=2,right_of=2 (left_of, right_of, above, below;"
                            " one left out weighs 1) [default: all equal]")
ConfigOpt = option(str, "--config", help=f"transformer geometry: a preset ({', '.join(PRESETS)}) or a JSON file with "
                   f"'arch' and 'text_token_len' [default: {DEFAULT_GEOMETRY}]")
PartsOpt = option(Path, "--parts", help="folder with vae/ (t2i: also text_encoder/, tokenizer/), as `lina train vae` "
                  "and `lina train text-encoder` write them")
InitFromOpt = option(str, "--init-from", metavar="MODEL", help="fine-tune a pipeline (folder, alias or hub repo), its parts too")
AttentionOpt = option(str, "--attention", metavar="linear|softmax", help="the attention of a new model [default: linear]")
WarmupOpt = option(int, "--warmup", min=0, help=f"linear warm-up steps [default: {DEFAULTS.warmup}]")
CooldownOpt = option(int, "--cooldown", min=0, metavar="STEPS", help="take the learning rate linearly to 0 over the "
                     "last STEPS of --steps (may be added when resuming) [default: none, as the authors]")
EmaDecayOpt = option(float, "--ema-decay", help=f"EMA decay [default: {DEFAULTS.ema_decay}]")
EmaEveryOpt = option(int, "--ema-every", min=1, help=f"steps between EMA updates [default: {DEFAULTS.ema_every}]")
GradClipOpt = option(float, "--grad-clip", help="clip the gradient norm to this [default: no clipping, as the authors]")
CheckpointOpt = option(int, "--checkpoint-every", min=1, help=f"steps between checkpoints [default: {DEFAULTS.checkpoint_every}]")
LogEveryOpt = option(int, "--log-every", min=1, help=f"steps between log lines [default: {DEFAULTS.log_every}]")
TimeLimitOpt = option(float, "--time-limit", metavar="MINUTES", min=0.0,
                      help="stop after this many minutes of training (with a checkpoint; --export still runs)")
CompileOpt = Annotated[bool, typer.Option(
    "--compile", help="torch.compile each block: faster steps for small models on a GPU, after a minute of compiling"
)]
ExportOpt = option(Path, "--export", metavar="FOLDER", help="when the run finishes, export it as a pipeline folder here")
EXPORT_DTYPE_HELP = "dtype of the exported weight files (fp16 halves them)"
ExportDtypeOpt = Annotated[str, typer.Option("--export-dtype", metavar="|".join(EXPORT_DTYPES), help=EXPORT_DTYPE_HELP)]
# `lina train export` names the same choice --dtype: its only dtype is the weight files'
WeightsDtypeOpt = Annotated[str, typer.Option("--dtype", metavar="|".join(EXPORT_DTYPES), help=EXPORT_DTYPE_HELP)]


def model(
    out: OutOpt,
    resume: ResumeOpt = False,
    data: DataOpt = None,
    task: TaskOpt = None,
    size: SizeOpt = None,
    dataset_size: DatasetSizeOpt = None,
    shapes_mix: ShapesMixOpt = None,
    shapes_relations: ShapesRelationsOpt = None,
    config: ConfigOpt = None,
    parts: PartsOpt = None,
    init_from: InitFromOpt = None,
    attention: AttentionOpt = None,
    steps: steps_option(DEFAULTS.steps) = None,
    batch_size: batch_option(DEFAULTS.batch_size, ", across all processes (the global batch)") = None,
    lr: lr_option(DEFAULTS.lr, " after the warm-up") = None,
    warmup: WarmupOpt = None,
    cooldown: CooldownOpt = None,
    ema_decay: EmaDecayOpt = None,
    ema_every: EmaEveryOpt = None,
    grad_clip: GradClipOpt = None,
    checkpoint_every: CheckpointOpt = None,
    log_every: LogEveryOpt = None,
    seed: TrainSeedOpt = None,
    dtype: TrainDtypeOpt = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    time_limit: TimeLimitOpt = None,
    compile_blocks: CompileOpt = False,
    export_folder: ExportOpt = None,
    export_dtype: ExportDtypeOpt = "fp32",
    offline: OfflineOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """Train a LINA transformer with the paper's objective: from scratch (--parts) or from a model (--init-from).

    The VAE latents (and text features) are cached once in the run folder.
    AdamW, warm-up, EMA, bf16 autocast on CUDA; a checkpoint every --checkpoint-every steps and on Ctrl-C/SIGTERM.
    --resume continues exactly where the checkpoint left off; under torchrun each process takes its share of a batch.
    """
    check_dtype(dtype)
    if export_dtype not in EXPORT_DTYPES:
        message = f"{export_dtype!r}: expected one of {', '.join(EXPORT_DTYPES)}"
        raise typer.BadParameter(message, param_hint="--export-dtype")
    for name, value in (("--task", task), ("--attention", attention)):
        allowed = ("t2i", "c2i") if name == "--task" else ("linear", "softmax")
        if value is not None and value not in allowed:
            raise typer.BadParameter(f"{value!r}: expected {' or '.join(allowed)}", param_hint=name)
    if resume:
        given = [flag for flag, value in (("--config", config), ("--parts", parts), ("--init-from", init_from),
                                           ("--attention", attention)) if value is not None]
        if given:
            message = f"a resumed run keeps its model and parts; drop {', '.join(given)}"
            raise typer.BadParameter(message, param_hint="--resume")
    elif parts is None and init_from is None:
        message = "what to train with? give --parts DIR (from scratch) or --init-from MODEL"
        raise typer.BadParameter(message, param_hint="--parts")

    from transformers.utils import logging as transformers_logging

    from models.runs.distributed import context_from_env
    from models.train.checkpoint import latest_checkpoint
    from models.train.export import export as export_run
    from models.train.run import plan_run
    from models.train.signals import TIME_LIMIT
    from models.train.trainer import train

    transformers_logging.disable_progress_bar()  # its weight-loading bar would land under ours and in logs
    values = {"format": fmt, "device": device, "offline": offline}
    setting = {name: resolved.value for name, resolved in resolve_settings(values, list(values)).items()}
    context = context_from_env()
    printer = Printer(setting["format"], enabled=context.is_main)
    target = resolve_device_option(setting["device"], context.local_rank if context.enabled else None)
    recipe = {
        "data": data, "task": task, "image_size": size, "dataset_size": dataset_size,
        "shapes_mix": None if shapes_mix is None else _parse_weights(shapes_mix, "--shapes-mix", "TASK", "position=3"),
        "shapes_relations": None if shapes_relations is None else _parse_relations(shapes_relations), "steps": steps,
        "batch_size": batch_size, "lr": lr, "warmup": warmup, "cooldown": cooldown, "ema_decay": ema_decay,
        "ema_every": ema_every, "grad_clip": grad_clip, "checkpoint_every": checkpoint_every, "log_every": log_every,
        "seed": seed, "dtype": dtype,
    }
    given = {key: value for key, value in recipe.items() if value is not None}
    spec = None if resume else plan_run(given, parts=parts, geometry=config, init_from=init_from, attention=attention,
                                        offline=setting["offline"] or None)
    checkpoint = latest_checkpoint(out) if resume else None
    first_step = int(checkpoint.name.removeprefix("step-")) if checkpoint else 0
    if spec is not None:
        printer.note(f"training {spec.transformer.task} {spec.transformer.arch} at {spec.recipe.image_size} px "
                     f"({spec.transformer.attention} attention) → {out}")
        _warn_about_a_slow_ema(printer, spec.recipe)
    elif checkpoint is not None:
        printer.note(f"resuming {out} from step {first_step}")

    with TrainingBars(printer, first_step) as bars:
        seconds = None if time_limit is None else 60 * time_limit
        result = train(out, spec, resume=resume, changes=given, device=target, workers=workers,
                       on_setup=bars.setup, on_log=bars.log, time_limit=seconds,
                       compile_blocks=compile_blocks)
    if result.interrupted_by == TIME_LIMIT:
        where = escape(str(result.checkpoint))
        printer.line(f"[yellow]time limit[/]: stopped at step {result.step}/{result.steps} → {where}")
    elif result.interrupted_by is not None:
        where = escape(str(result.checkpoint)) if result.checkpoint else "no checkpoint"
        printer.line(f"[yellow]stopped[/] by {escape(result.interrupted_by)} at step {result.step}/{result.steps}; "
                     f"checkpoint {where}")
        printer.note(f"resume with: lina train model --out {out} --resume")
        raise typer.Exit(EXIT_SIGNALLED.get(result.interrupted_by, 1))
    else:
        printer.line(f"[bold]trained {result.steps} steps[/] → {escape(str(result.checkpoint))}")
    if export_folder is not None and context.is_main:
        exported = export_run(out, export_folder, dtype=export_dtype)
        printer.line(f"[green]exported[/] {escape(str(exported))}  [dim]lina generate -m {escape(str(exported))} ...[/]")


def _parse_weights(text: str, flag: str, kind: str, example: str) -> dict[str, float]:
    """"position=3,color_attr=2" → {"position": 3.0, "color_attr": 2.0}; which names and weights are valid is the
    recipe's to say."""
    weights = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, _, weight = item.partition("=")
        try:
            weights[name.strip()] = float(weight)
        except ValueError:
            raise typer.BadParameter(f"{item!r}: expected {kind}=WEIGHT, e.g. {example}", param_hint=flag) from None
    if not weights:
        raise typer.BadParameter(f"expected {kind}=WEIGHT pairs, e.g. {example}", param_hint=flag)
    return weights


def _parse_relations(text: str) -> dict[str, float]:
    """"left_of=2,above=1" → {"left of": 2.0, "above": 1.0}: the relations' words joined by "_" on the command line."""
    weights = _parse_weights(text, "--shapes-relations", "RELATION", "left_of=2")
    return {name.replace("_", " "): weight for name, weight in weights.items()}


def _warn_about_a_slow_ema(printer: Printer, recipe: TrainRecipe) -> None:
    """The exported weights are the EMA's; one that has seen too few updates is still close to the initial weights."""
    updates, memory = recipe.steps // recipe.ema_every, 1 / (1 - recipe.ema_decay)  # memory: updates it averages over
    if updates >= 3 * memory:
        return
    # the rarest updates that still give three memories' worth, else every step with a shorter memory
    every = recipe.steps // math.ceil(3 * memory)
    if every >= 1:
        fix = f"--ema-every {every}"
    else:
        decay = math.floor((1 - 3 / recipe.steps) * 1000) / 1000
        fix = f"--ema-every 1 --ema-decay {decay:g}" if decay > 0 else "a longer run"
    printer.warn(
        f"the EMA (decay {recipe.ema_decay}, every {recipe.ema_every} steps) gets only {updates} updates but averages "
        f"over about {memory:.0f}: the exported EMA weights will still be close to the start. Use {fix}, or export "
        "the raw weights with `lina train export --raw`"
    )


def export(
    run: Annotated[Path, typer.Argument(help="A training run folder (lina train model --out).", show_default=False)],
    folder: Annotated[Path, typer.Argument(help="Where the pipeline folder goes.", show_default=False)],
    dtype: WeightsDtypeOpt = "fp32",
    raw: Annotated[bool, typer.Option("--raw", help="export the raw weights instead of the EMA weights")] = False,
    ar_steps: ARStepsOpt = None,
    diffusion_steps: DiffusionStepsOpt = None,
    cfg: CfgOpt = None,
    cfg_min: CfgMinOpt = None,
) -> None:
    """Export a training run's latest checkpoint as a pipeline folder that `lina generate -m FOLDER` loads.

    Sampler options given here are stored in the folder as the model's own defaults (the rest take the task's
    paper defaults), so `lina generate` and `lina eval` use them without flags.
    """
    if dtype not in EXPORT_DTYPES:
        raise typer.BadParameter(f"{dtype!r}: expected one of {', '.join(EXPORT_DTYPES)}", param_hint="--dtype")
    from models.train.export import export as export_run

    given = {"ar_steps": ar_steps, "diffusion_steps": diffusion_steps, "cfg": cfg, "cfg_min": cfg_min}
    sampling = {name: value for name, value in given.items() if value is not None} or None
    exported = export_run(run, folder, dtype=dtype, ema=not raw, sampling=sampling)
    Printer().line(f"[green]exported[/] {escape(str(exported))}")
