"""What both profile commands share: `-` for stdout, the --json option, a status spinner, SI-prefixed numbers."""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Annotated, Optional

import typer
from rich.markup import escape

from lina_cli.console import stderr_console

STDOUT = "-"  # `--json -` / `--csv -` write to stdout instead of a file (and skip the table)

JsonOpt = Annotated[Optional[str], typer.Option(
    "--json", metavar="FILE", help="write the results as JSON to FILE ('-' = stdout, no table)"
)]

@contextmanager
def spinner(label: str = "profiling attention") -> Iterator[Callable[[str], None]]:
    """A status line on stderr while counting and timing, drawn only on a terminal; yields its updater."""
    console = stderr_console()
    if not console.is_terminal:
        yield lambda text: None
        return
    with console.status(f"{label}…") as status:
        yield lambda text: status.update(escape(text) + "…")


def si_format(value: float, unit: str) -> str:
    """4 significant digits with an SI prefix and the unit: 36238786560, 'MAC' → '36.24 GMAC'."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}".rstrip()
    return f"{value:.4g} {unit}".rstrip()
