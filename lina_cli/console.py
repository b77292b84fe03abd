"""Everything the CLI prints: results on stdout, progress, warnings and errors on stderr.

`--format human` prints readable lines (and live progress bars when stderr is a terminal), `json` prints one
JSON object per line on stdout, `quiet` prints only errors. Colour follows rich's rules: off when
`NO_COLOR` is set or the stream is not a terminal; live bars are drawn only on a terminal.
"""

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

from lina_cli.errors import ErrorMessage
from lina_cli.options import STDOUT
from lina_cli.progress import RunProgress
from models.runs.generation import STATUS_SKIPPED, ImageResult

if TYPE_CHECKING:
    from lina_cli.image_run import RunTimings

HUMAN, JSON, QUIET = "human", "json", "quiet"
GIB = 1024**3
PIPE_WIDTH = 200  # tables written to a file or pipe are not cut at rich's 80-column fallback


def stdout_console() -> Console:
    # No `file=`: rich then writes to the current sys.stdout, which live progress bars (and test runners) redirect.
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console.width = PIPE_WIDTH
    return console


def stderr_console() -> Console:
    return Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(error: ErrorMessage) -> None:
    """`error: <what went wrong>` then `hint: <what to do>`, on stderr."""
    console = stderr_console()
    console.print(f"[bold red]error:[/] {escape(error.message)}")
    console.print(f"[dim]hint:[/] {escape(error.hint)}")


def write_json_result(data: dict[str, Any], json_path: str | None) -> bool:
    """A command's one result as JSON: to stdout for `--json -` (returns True: print nothing else), else to the
    file, atomically (returns False: the human report follows)."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    if json_path == STDOUT:
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        return True
    if json_path is not None:
        from models.files import write_atomic

        write_atomic(Path(json_path), lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))
    return False


def print_json_line(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False, sort_keys=True) + "\n")
    sys.stdout.flush()


class Printer:
    """Output of one command in one format; `enabled=False` silences it (torchrun ranks other than 0)."""

    def __init__(self, fmt: str = HUMAN, *, enabled: bool = True, stdout_reserved: bool = False):
        self.fmt = fmt
        self.enabled = enabled
        # A command whose stdout carries one result (`--json -`) prints its human lines on stderr instead.
        self.out = stderr_console() if stdout_reserved else stdout_console()
        self.err = stderr_console()
        self.live: RunProgress | None = None  # set while progress bars are drawn on the terminal

    @property
    def _stdout_on_live_terminal(self) -> bool:
        """Whether stdout lines must go through the live region: bars are drawn and stdout is that terminal."""
        return self.live is not None and self.out.is_terminal

    @property
    def human(self) -> bool:
        return self.enabled and self.fmt == HUMAN

    def warn(self, message: str) -> None:
        if self.enabled and self.fmt != QUIET:
            self.err.print(f"[yellow]warning:[/] {escape(message)}")

    def line(self, message: str) -> None:
        """A human-format line on stdout (markup allowed), above the progress bars while they are live."""
        if self.human:
            (self.live.print if self._stdout_on_live_terminal else self.out.print)(message)

    def note(self, message: str) -> None:
        """A human-format status line on stderr."""
        if self.human:
            self.err.print(f"[dim]{escape(message)}[/]")

    def json(self, data: dict[str, Any]) -> None:
        if not (self.enabled and self.fmt == JSON):
            return
        if self._stdout_on_live_terminal:
            self.live.print(json.dumps(data, ensure_ascii=False, sort_keys=True), markup=False, highlight=False)
        else:
            print_json_line(data)


class GenerationReporter:
    """Receives the generation loop's events (see `models.runs.generation.GenerationEvents`) and prints them."""

    def __init__(self, printer: Printer, *, ar_steps: int, batch_size: int = 1, live_results: bool = True):
        self.printer = printer
        self.batch_size = batch_size  # images arrive a batch at a time: the pace is known after the first one
        self.ar_steps = ar_steps  # as asked; the schedule may leave some steps empty (docs/architecture.md, "Sampling")
        self.live_results = live_results  # False under torchrun: rank 0 prints every rank's results at the end
        self.progress = RunProgress(printer)
        self._images = self._steps = None
        self._to_make, self._made, self._began = 0, 0, 0.0
        self.first_image_seconds: float | None = None  # from the start of generation to the first image written

    def __enter__(self) -> "GenerationReporter":
        return self

    def __exit__(self, *exc_info) -> None:
        self.progress.__exit__(*exc_info)

    def started(self, to_make: int, finished: int) -> None:
        if finished and self.printer.human:
            self.printer.note(f"resuming: {finished} image(s) already finished, {to_make} to make")
        self._to_make, self._made, self._began = to_make, 0, time.perf_counter()
        if to_make:
            self.progress.__enter__()
            self._images = self.progress.add("images", total=to_make, unit="img")
            self._steps = self.progress.add("AR steps", total=None, unit="step")

    def ar_step(self, done: int, total: int) -> None:
        """`total` counts the schedule's non-empty steps; the label says how many of those asked for are empty."""
        empty = self.ar_steps - total
        label = f"AR steps ({empty} of {self.ar_steps} empty)" if empty > 0 else "AR steps"
        self.progress.update(self._steps, completed=done, total=total, description=label)

    def image_done(self, result: ImageResult) -> None:
        if result.status != STATUS_SKIPPED:
            self.progress.update(self._images, advance=1)
            self._made += 1
            if self.first_image_seconds is None:
                self.first_image_seconds = time.perf_counter() - self._began
            if self._made == min(self.batch_size, self._to_make) < self._to_make:
                self._estimate()
        if self.live_results:
            self.show(result)

    def _estimate(self) -> None:
        """One line after the first image of a long run: how long the rest should take at that pace."""
        left = self._to_make - self._made
        seconds = (time.perf_counter() - self._began) * left / self._made
        hours, rest = divmod(int(seconds), 3600)
        self.printer.note(
            f"about {hours}:{rest // 60:02d}:{rest % 60:02d} for the {left} image(s) left, at the pace of the first "
            "batch (warm-up included, so usually less)"
        )

    def show(self, result: ImageResult) -> None:
        """Print one image's line: its path (human, skipped ones only counted) or its JSON record."""
        self.printer.json(result.to_json())
        if result.status != STATUS_SKIPPED:
            meta = result.metadata
            subject = meta.prompt if meta.prompt is not None else f"class {meta.class_label}"
            self.printer.line(f"[green]saved[/] {escape(str(result.path))}  [dim]seed {meta.seed} · {escape(subject)}[/]")

    def summary(self, results: list[ImageResult], timings: "RunTimings", peak_memory_bytes: int | None) -> None:
        """The run's last report: counts, time per image, peak GPU memory, where the files are, and where the wall
        time before the first image went. JSON: one line `{"summary": {...}}` after the images' lines."""
        made = [r for r in results if r.status != STATUS_SKIPPED]
        self.printer.json({"summary": {
            "made": len(made), "skipped": len(results) - len(made), **timings.to_json(),
            "peak_memory_bytes": peak_memory_bytes,
        }})
        if not self.printer.human:
            return
        seconds = timings.generation
        parts = [f"made {len(made)} image(s) in {seconds:.1f} s"]
        if made:
            parts.append(f"{seconds / len(made):.2f} s/image")
        skipped = len(results) - len(made)
        if skipped:
            parts.append(f"{skipped} already finished")
        if peak_memory_bytes is not None:
            parts.append(f"peak GPU memory {peak_memory_bytes / GIB:.1f} GiB")
        folders = sorted({str(r.path.parent) for r in results})
        where = folders[0] if len(folders) == 1 else f"{len(folders)} folders"
        if timings.first_image is not None:
            self.printer.note(
                f"start-up: imports {timings.imports:.1f} s, loading {timings.load:.1f} s; first image "
                f"{timings.first_image:.1f} s (one-time warm-up included)"
            )
        self.printer.line(f"[bold]{escape(', '.join(parts))}[/] → {escape(where)}")
