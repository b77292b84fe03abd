"""`lina generate`: images from prompts, a prompts file or class ids, resumable, with metadata in every PNG."""

from functools import partial
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from lina_cli.console import Printer
from lina_cli.image_run import ImageRun, run_images
from lina_cli.options import (
    ARStepsOpt,
    BatchSizeOpt,
    CacheDirOpt,
    CfgMinOpt,
    CfgOpt,
    DeviceOpt,
    DiffusionStepsOpt,
    DtypeOpt,
    FormatOpt,
    KernelsOpt,
    ModelOpt,
    OfflineOpt,
    RevisionOpt,
    SeedOpt,
    setting_option,
)
from lina_cli.settings import SOURCE_CLI, Resolved, resolve_settings
from models.constants import MODEL_CARDS, RELEASED_MODELS
from models.errors import InvalidPromptError, UnsupportedSizeError
from models.pipeline.requests import Condition
from models.runs.conditions import gather_conditions
from models.runs.distributed import (
    context_from_env,
)
from models.runs.generation import RunOptions
from models.runs.metadata import ImageMetadata, read_metadata
from models.runs.outputs import plan_outputs

GENERATE_EXAMPLES = [
    'lina generate "a red fox in the snow, watercolor"',
    'lina generate "a cat on a sofa" -s 5 -n 4 --size 512',
    "lina generate --prompts-file prompts.txt -n 4 -o 'out/{index:05d}-{prompt_slug}.png'",
    "lina generate --class 207 --class 980 -n 8 --format json",
    "lina generate --class 0-999 -n 50 --batch-size 25 -o fid --save-latents   # re-run to resume",
    "torchrun --nproc-per-node 4 -m lina_cli generate --class 0-999 -n 50 -o fid",
    "lina generate --from-metadata outputs/00000-5-a-cat-on-a-sofa.png -o again.png",
]


def generate(
    prompts: Annotated[
        Optional[list[str]], typer.Argument(help="Text prompts, one image set each (text-to-image models).", show_default=False)
    ] = None,
    prompts_file: Annotated[
        Optional[Path],
        typer.Option(
            "--prompts-file", exists=True, dir_okay=False, show_default=False,
            help="Prompts file: .txt = one prompt per line; .jsonl = {\"prompt\", \"negative_prompt\", \"seed\", \"n\"} per line.",
        ),
    ] = None,
    classes: Annotated[
        Optional[list[str]],
        typer.Option("--class", show_default=False, help="Class id(s) for the class-conditional model: 207, 0-999 or 1,5,9 (repeatable)."),
    ] = None,
    model: ModelOpt = None,
    revision: RevisionOpt = None,
    num_images: setting_option("-n", "--num-images", setting="num_images", kind=int) = None,
    seed: SeedOpt = None,
    cfg: CfgOpt = None,
    cfg_min: CfgMinOpt = None,
    ar_steps: ARStepsOpt = None,
    diffusion_steps: DiffusionStepsOpt = None,
    negative_prompt: setting_option("--negative-prompt", setting="negative_prompt") = None,
    size: setting_option("--size", setting="size", kind=int) = None,
    dtype: DtypeOpt = None,
    kernels: KernelsOpt = None,
    device: DeviceOpt = None,
    offload_text_encoder: Annotated[bool, typer.Option(
        "--offload-text-encoder/--keep-text-encoder",
        help="On a GPU, the text encoder waits in CPU memory and is streamed in a layer at a time only while prompts "
             "are encoded (1024 px: peak 5.1 instead of 9.8 GiB); --keep-text-encoder keeps it on the GPU, which "
             "saves the copy per batch when memory allows.",
    )] = True,
    batch_size: BatchSizeOpt = None,
    output: setting_option("-o", "--output", setting="output") = None,
    overwrite: setting_option("--overwrite", setting="overwrite", kind=bool) = None,
    save_latents: setting_option("--save-latents", setting="save_latents", kind=bool) = None,
    offline: OfflineOpt = None,
    cache_dir: CacheDirOpt = None,
    format: FormatOpt = None,
    from_metadata: Annotated[
        Optional[Path],
        typer.Option(
            "--from-metadata", exists=True, dir_okay=False, show_default=False,
            help="Make the image recorded in this PNG again; options given here override the recorded ones.",
        ),
    ] = None,
) -> None:
    """Generate images with LINA.

    Text-to-image models take prompts (arguments or --prompts-file); the class-conditional model takes --class ids.
    Image i of a run uses seed + i, so resuming and GPU count never change an image (a larger --batch-size can
    change pixels by rounding only: batched matrix kernels sum in another order). Existing files
    are never overwritten: an image already made by the same command is skipped, so re-running resumes a run.
    Defaults follow the paper: text-to-image 128 AR steps, 25 diffusion steps, cfg 7; class-conditional 64 AR
    steps, cfg ramping from 1 to 2.4.
    """
    given = {
        "model": model, "revision": revision, "num_images": num_images, "seed": seed, "cfg": cfg, "cfg_min": cfg_min,
        "ar_steps": ar_steps, "diffusion_steps": diffusion_steps, "negative_prompt": negative_prompt, "size": size,
        "dtype": dtype, "device": device, "kernels": kernels, "batch_size": batch_size, "output": output, "overwrite": overwrite,
        "save_latents": save_latents, "offline": offline, "cache_dir": cache_dir, "format": format,
    }
    recorded = read_metadata(from_metadata) if from_metadata else None
    replayed = _replay(recorded) if recorded else {}
    settings = resolve_settings({**replayed, **{name: v for name, v in given.items() if v is not None}}, list(given))
    value = {name: resolved.value for name, resolved in settings.items()}
    context = context_from_env()
    printer = Printer(value["format"], enabled=context.is_main)

    if recorded and not (prompts or prompts_file or classes):
        conditions = [Condition(prompt=recorded.prompt, class_label=recorded.class_label)]
    else:
        conditions = gather_conditions(prompts, prompts_file, classes)
    task = "c2i" if conditions[0].class_label is not None else "t2i"
    if task == "c2i" and settings["negative_prompt"].source == SOURCE_CLI:
        raise InvalidPromptError("--negative-prompt applies to text-to-image models; class-conditional ones have none")
    negative_prompt = value["negative_prompt"] if task == "t2i" else None  # a config-file default may be set
    model_name = _pick_model(settings["model"], task, value["size"])

    run = ImageRun(
        model=model_name, task=task, conditions=conditions, plan_paths=partial(plan_outputs, value["output"]),
        seed=value["seed"], num_images=value["num_images"], negative_prompt=negative_prompt, size=value["size"],
        device=value["device"], dtype=value["dtype"], kernels=value["kernels"], offload_text_encoder=offload_text_encoder,
        revision=value["revision"], offline=value["offline"] or None, cache_dir=value["cache_dir"], ar_steps=value["ar_steps"],
        diffusion_steps=value["diffusion_steps"], cfg=value["cfg"], cfg_min=value["cfg_min"],
        options=RunOptions(batch_size=value["batch_size"], save_latents=value["save_latents"], overwrite=value["overwrite"]),
    )
    run_images(run, printer, context)


def _replay(recorded: ImageMetadata) -> dict[str, Any]:
    """Settings that make the image recorded in a PNG again (they rank just below the command line)."""
    return {
        "model": recorded.model,
        "revision": recorded.revision if recorded.repo_id else None,
        "seed": recorded.seed,
        "num_images": 1,
        "cfg": recorded.cfg,
        "cfg_min": recorded.cfg_min,
        "ar_steps": recorded.ar_steps,
        "diffusion_steps": recorded.diffusion_steps,
        "negative_prompt": recorded.negative_prompt,
        "dtype": recorded.dtype,
        "kernels": recorded.kernels,
    }


def _pick_model(model: Resolved, task: str, size: int | None) -> str:
    """The model to load: the one configured, or else the released alias for the task and --size."""
    from models.pipeline.hub import released_alias

    if model.is_default:
        alias = released_alias(task, size)
        if alias is None:
            sizes = sorted(card["resolution"] for card in RELEASED_MODELS.values() if card["task"] == task)
            raise UnsupportedSizeError(
                f"no released {task} model makes {size}px images; released sizes: {', '.join(map(str, sizes))}"
            )
        return alias
    card = MODEL_CARDS.get(model.value)
    if card is not None and size is not None and size != card["resolution"]:
        other = released_alias(card["task"], size)
        suggestion = f"; {other} does" if other else ""
        raise UnsupportedSizeError(
            f"{model.value} makes {card['resolution']}x{card['resolution']} images only, not --size {size}{suggestion}"
        )
    return model.value
