"""The one live progress region of a long command, and a status spinner: drawn on stderr, on a terminal only.

While bars are live, every line the command prints (results, notes, warnings) goes through the console that owns
them, so rich draws it above the bars and the screen holds one copy of each bar under a growing list of lines.
rich cannot do that for a second Console writing to stdout (its stdout redirection hands Console objects the real
stream), which is why `Printer` routes its terminal lines here while a `RunProgress` is live.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

if TYPE_CHECKING:
    from lina_cli.console import Printer


class RateColumn(ProgressColumn):
    """Items per second, or seconds per item when slower than one a second; the unit is the task's `unit` field."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("–", style="progress.data.speed")
        unit = task.fields.get("unit", "it")
        label = f"{speed:.2f} {unit}/s" if speed >= 1 else f"{1 / speed:.1f} s/{unit}"
        return Text(label, style="progress.data.speed")


class RunProgress:
    """Bars of one command (`add` a bar, `update` it), live on stderr while the context is open.

    Nothing is drawn unless the printer prints human or JSON output (not quiet, not a non-zero torchrun rank) and
    stderr is a terminal; then every call is a no-op and output stays plain lines.
    """

    def __init__(self, printer: "Printer"):
        self.printer = printer
        self.live = printer.enabled and printer.fmt != "quiet" and printer.err.is_terminal
        self._progress: Progress | None = None

    def __enter__(self) -> "RunProgress":
        if self.live:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[progress.description]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                RateColumn(),
                TimeElapsedColumn(),
                TextColumn("eta"),
                TimeRemainingColumn(),
                console=self.printer.err,
                # Lines reach the terminal through `print` (see the module docstring); a piped stdout
                # (`--format json > runs.jsonl`) must keep its lines, so nothing is redirected.
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._progress.start()
            self.printer.live = self
        return self

    def __exit__(self, *exc_info) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
            self.printer.live = None

    def add(self, description: str, total: int | None, unit: str) -> TaskID | None:
        """A new bar; `total` None draws a pulsing bar until the total is known."""
        if self._progress is None:
            return None
        return self._progress.add_task(description, total=total, unit=unit)

    def update(self, bar: TaskID | None, **changes) -> None:
        """`completed=`, `total=`, `advance=` or `description=` of a bar from `add`."""
        if self._progress is not None and bar is not None:
            self._progress.update(bar, **changes)

    def print(self, renderable, **options) -> None:
        """A line above the bars."""
        self.printer.err.print(renderable, **options)


@contextmanager
def status(printer: "Printer", label: str) -> Iterator[Callable[[str], None]]:
    """A one-line spinner on stderr while something runs without a known length; yields its updater.

    Drawn only on a terminal, for human output; elsewhere the updater does nothing.
    """
    if not (printer.enabled and printer.fmt == "human" and printer.err.is_terminal):
        yield lambda text: None
        return
    with printer.err.status(escape(label) + "…") as spinner:
        yield lambda text: spinner.update(escape(text) + "…")
