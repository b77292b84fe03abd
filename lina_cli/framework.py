"""App-wide Typer settings in one place (huggingface_hub's `typer_factory`), and the one error handler.

Every command runs inside `LinaGroup.invoke`, so any exception, from any command or sub-group, becomes
one `error:` line plus a `hint:` line and exit code 1 (`lina_cli.errors.format_error`). `LINA_DEBUG=1`
lets the exception through with its traceback. Ctrl-C exits 130 and says that re-running resumes.
"""

import typer
from rich.markup import escape
from typer.core import TyperGroup

from lina_cli.console import print_error
from lina_cli.errors import ErrorMessage, format_error
from models.constants import lina_debug

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what shells report for Ctrl-C
HELP_WIDTH = 120
ENV_NOTE = "Every option can also be set with LINA_<OPTION>, ./lina.toml or ~/.config/lina/config.toml (see `lina config`)."


class LinaGroup(TyperGroup):
    """A Typer group that turns exceptions into the CLI's one-line error messages."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            print_error(ErrorMessage("interrupted", "finished images are kept; run the same command again to resume"))
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except Exception as error:
            if _is_click_exception(error) or lina_debug():
                raise
            print_error(format_error(error))
            raise typer.Exit(EXIT_ERROR) from None


def _is_click_exception(error: Exception) -> bool:
    # Exits, aborts and usage errors (bad option values, exit code 2) are Typer's own to print. Matched by
    # name because Typer ships its own copy of Click whose module path is private and has moved over time.
    return any(cls.__name__ in ("ClickException", "Exit", "Abort") for cls in type(error).__mro__)


def typer_factory(help: str, *, epilog: str | None = None) -> typer.Typer:
    """A Typer app with lina's settings: help on no arguments, -h/--help, rich markup, fixed width."""
    return typer.Typer(
        cls=LinaGroup,
        help=help,
        epilog=epilog,
        no_args_is_help=True,
        rich_markup_mode="rich",
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"], "max_content_width": HELP_WIDTH},
    )


def examples_epilog(examples: list[str], note: str = ENV_NOTE) -> str:
    """The help epilog of a command: its examples, one per line, then a note on where defaults come from."""
    lines = "\n\n".join(f"  $ {escape(example)}" for example in examples)
    return f"[bold]Examples[/bold]\n\n{lines}\n\n{note}"
