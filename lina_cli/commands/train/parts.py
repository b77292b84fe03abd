"""`lina train vae` and `lina train text-encoder`: the parts a model trains with, in the released folder formats.

Thin commands: parse, check, call `models.train.vae_stage` / `models.train.text_parts`, print.
"""

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
    steps_option,
)
from lina_cli.console import Printer
from lina_cli.options import DeviceOpt, FormatOpt, resolve_device_option
from lina_cli.settings import resolve_settings
from models.train.recipe import VAERecipe

VAE_EXAMPLES = [
    "lina train vae --out runs/shapes-parts --steps 3000 -b 128   # the shapes demo's VAE: 4 channels, stride 8",
    "lina train vae --data my-images --size 256 --widths 64,128,256,256 --out runs/my-parts",
]
TEXT_EXAMPLES = [
    "lina train text-encoder --out runs/shapes-parts   # a random 2-layer Phi and a word-level tokenizer for shapes captions",
    "lina train text-encoder --data my-captions.jsonl --hidden 256 --out runs/my-parts",
    "lina train text-encoder --out runs/lm-parts --steps 400   # trained as a next-word model of the captions instead",
]

DEFAULTS = VAERecipe()

OutOpt = Annotated[Path, typer.Option("--out", "-o", show_default=False, help="folder that receives the part's folder(s)")]
DataOpt = Annotated[str, typer.Option(
    "--data", help="'shapes', a folder of images (class folders or metadata.jsonl), or a captions .jsonl"
)]
GroupsOpt = Annotated[int, typer.Option("--groups", min=1, help="GroupNorm groups (must divide every width)")]
KlOpt = Annotated[float, typer.Option("--kl-weight", min=0.0, help="weight of the KL term (per-element means)")]


def _widths(text: str) -> tuple[int, ...]:
    try:
        widths = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        widths = ()
    if not widths or min(widths) < 1:
        message = f"{text!r}: expected comma-separated positive widths, e.g. 32,64,64,64"
        raise typer.BadParameter(message, param_hint="--widths")
    return widths


def vae(
    out: OutOpt,
    data: DataOpt = "shapes",
    size: Annotated[int, typer.Option("--size", min=1, help="image side in px")] = DEFAULTS.image_size,
    widths: Annotated[str, typer.Option(
        "--widths", help="channels per level; n levels give stride 2^(n-1) (4 levels: stride 8, as SDXL's VAE)"
    )] = ",".join(map(str, DEFAULTS.block_out_channels)),
    layers_per_block: Annotated[int, typer.Option("--layers-per-block", min=1)] = DEFAULTS.layers_per_block,
    latent_channels: Annotated[int, typer.Option("--latent-channels", min=1)] = DEFAULTS.latent_channels,
    groups: GroupsOpt = DEFAULTS.norm_num_groups,
    kl_weight: KlOpt = DEFAULTS.kl_weight,
    steps: steps_option(DEFAULTS.steps) = None,
    batch_size: batch_option(DEFAULTS.batch_size) = None,
    lr: lr_option(DEFAULTS.lr) = None,
    seed: TrainSeedOpt = None,
    dtype: TrainDtypeOpt = None,
    device: DeviceOpt = None,
    workers: WorkersOpt = None,
    fmt: FormatOpt = None,
) -> None:
    """Train a small KL autoencoder (L1 + L2 + KL) and write it as OUT/vae/, the format pipelines load.

    Its shift and scaling factors are set from the latents of held-out images (zero mean, unit variance).
    """
    check_dtype(dtype)
    from models.train.vae_stage import VAERecipe, train_vae

    values = {"format": fmt, "device": device}
    setting = {name: resolved.value for name, resolved in resolve_settings(values, list(values)).items()}
    printer = Printer(setting["format"])
    target = resolve_device_option(setting["device"])
    given = {"steps": steps, "batch_size": batch_size, "lr": lr, "seed": seed, "dtype": dtype}
    recipe = VAERecipe(
        data=data, image_size=size, block_out_channels=_widths(widths), layers_per_block=layers_per_block,
        latent_channels=latent_channels, norm_num_groups=groups, kl_weight=kl_weight,
        **{key: value for key, value in given.items() if value is not None},
    )
    from models.train.trainer import default_workers

    with TrainingBars(printer) as bars:
        result = train_vae(out, recipe, device=target, workers=default_workers(target) if workers is None else workers,
                           on_log=bars.log)
    stopped = f" (stopped by {result.interrupted_by} at step {result.step})" if result.interrupted_by else ""
    printer.line(f"[green]wrote[/] {escape(str(result.folder))}{escape(stopped)}  [dim]{result.parameters:,} parameters · "
                 f"scaling {result.scaling_factor:.4g} · shift {result.shift_factor:.4g}[/]")


def text_encoder(
    out: OutOpt,
    data: DataOpt = "shapes",
    hidden: Annotated[int, typer.Option("--hidden", min=32, help="width of the Phi body (the text features' width)")] = 128,
    layers: Annotated[int, typer.Option("--layers", min=1, help="Phi layers")] = 2,
    seed: Annotated[int, typer.Option("--seed", "-s", min=0, help="seed of the random weights and of the training")] = 0,
    steps: Annotated[int, typer.Option(
        "--steps", min=0, help="train the Phi as a next-word model of the captions for this many steps (0: keep it random)"
    )] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", "-b", min=1, help="captions per step")] = 256,
    lr: Annotated[float, typer.Option("--lr", min=0.0, help="learning rate of that training")] = 3e-3,
    device: DeviceOpt = None,
) -> None:
    """Write OUT/text_encoder/ (a Phi, frozen-random or trained as a language model on the captions) and OUT/tokenizer/
    (one token per caption word), offline."""
    from models.train.text_parts import (
        build_text_parts,
        captions_of,
        language_model_captions,
        save_text_parts,
        train_language_model,
    )

    encoder = build_text_parts(captions_of(data), hidden_size=hidden, layers=layers, seed=seed)
    trained = ""
    if steps:
        target = resolve_device_option(resolve_settings({"device": device}, ["device"])["device"].value)
        losses = train_language_model(encoder, language_model_captions(data, seed), steps=steps,
                                      batch_size=batch_size, lr=lr, seed=seed, device=target)
        trained = f" · trained {steps} steps, next-word loss {losses[0]:.3f} → {losses[-1]:.3f}"
    save_text_parts(encoder, out)
    parameters = sum(p.numel() for p in encoder.model.parameters())
    Printer().line(f"[green]wrote[/] {escape(str(out))}/text_encoder and tokenizer  "
                   f"[dim]{parameters:,} parameters · vocabulary {len(encoder.tokenizer)}{trained}[/]")
