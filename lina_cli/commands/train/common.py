"""What the `lina train` commands share: options, and drawing a run's progress through the one progress component."""

from dataclasses import asdict
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from lina_cli.console import Printer
from lina_cli.progress import RunProgress

TRAIN_DTYPES = ("auto", "bf16", "fp32")



def option(kind: type, *names: str, help: str, **extra: Any):
    """An optional `kind` option whose None means "not given" (the recipe's default, or the resumed run's value).

    Help text is rich markup, so its literal [default: ...] brackets are escaped here.
    """
    # Optional[...] rather than `X | None`: Typer reads these annotations at run time, also on Python 3.10.
    return Annotated[Optional[kind], typer.Option(*names, show_default=False, help=escape(help), **extra)]


def steps_option(default: int):
    return option(int, "--steps", min=1, help=f"optimiser steps of the whole run [default: {default}]")


def batch_option(default: int, note: str = ""):
    return option(int, "--batch-size", "-b", min=1, help=f"images per step{note} [default: {default}]")


def lr_option(default: float, note: str = ""):
    return option(float, "--lr", min=0.0, help=f"learning rate{note} [default: {default:g}]")


TrainSeedOpt = option(int, "--seed", "-s", min=0, help="seeds the initialisation, data order and every random draw")
TrainDtypeOpt = option(str, "--dtype", metavar="|".join(TRAIN_DTYPES),
                       help="auto: bf16 autocast on CUDA, fp32 on the CPU (weights are always fp32)")
WorkersOpt = option(int, "--workers", min=0, help="processes rendering or decoding images while latents are cached "
                    "[default: up to 8 with a GPU, 0 on the CPU]")


def check_dtype(dtype: str | None) -> None:
    if dtype is not None and dtype not in TRAIN_DTYPES:
        message = f"{dtype!r}: expected one of {', '.join(TRAIN_DTYPES)} (fp16 training is not supported)"
        raise typer.BadParameter(message, param_hint="--dtype")


def duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def describe(progress: Any) -> str:
    """One log interval in words: step, loss, learning rate or KL, gradient norm, speed, MFU."""
    parts = [f"step {progress.step}/{progress.steps}", f"loss {progress.loss:.4f}"]
    if hasattr(progress, "lr"):
        parts += [f"lr {progress.lr:.2e}", f"grad {progress.grad_norm:.3g}"]
    else:
        parts += [f"rec {progress.reconstruction:.4f}", f"kl {progress.kl:.3g}"]
    parts.append(f"{progress.images_per_second:,.0f} img/s")
    if getattr(progress, "mfu", None) is not None:
        parts.append(f"MFU {progress.mfu:.1%}")
    if getattr(progress, "eta_seconds", None) is not None:
        parts.append(f"eta {duration(progress.eta_seconds)}")
    return " · ".join(parts)


class TrainingBars:
    """A run's bars: one per setup stage (caching latents, text features), then the steps bar with loss and speed.

    The steps bar counts the steps of this call (`first_step` is where it starts); on a terminal the latest
    interval is in its description, elsewhere each interval is one line (human) or one JSON object (json).
    """

    def __init__(self, printer: Printer, first_step: int = 0):
        self.printer, self.first_step = printer, first_step
        self.progress = RunProgress(printer)
        self._bars: dict[str, Any] = {}

    def __enter__(self) -> "TrainingBars":
        self.progress.__enter__()
        return self

    def __exit__(self, *exc_info) -> None:
        self.progress.__exit__(*exc_info)

    def setup(self, stage: str, done: int, total: int) -> None:
        if stage not in self._bars:
            self._bars[stage] = self.progress.add(stage, total=total, unit="img" if "image" in stage else "caption")
        self.progress.update(self._bars[stage], completed=done, total=total)

    def log(self, progress: Any) -> None:
        if "steps" not in self._bars:
            label = "training" if not self.first_step else f"training (resumed at step {self.first_step})"
            self._bars["steps"] = self.progress.add(label, total=progress.steps - self.first_step, unit="step")
        text = describe(progress)
        self.progress.update(self._bars["steps"], completed=progress.step - self.first_step, description=escape(text))
        self.printer.json(asdict(progress))
        if not self.progress.live:
            self.printer.line(escape(text))
