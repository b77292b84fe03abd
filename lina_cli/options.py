"""Options shared by several commands, written once as `Annotated` aliases (huggingface_hub's `_cli_utils`).

Every configurable option defaults to None, meaning "not given on the command line", so that
`lina_cli.settings.resolve_settings` can fall back to `LINA_<OPTION>`, the config files and the built-in
default in `SETTINGS`; the help text comes from that table too.
"""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from lina_cli.settings import DTYPE_CHOICES, FORMAT_CHOICES, SETTINGS


def setting_help(name: str) -> str:
    """Help text of a setting, with its built-in default, from the one table in `lina_cli.settings`."""
    setting = SETTINGS[name]
    default = "" if setting.default is None else f" [default: {setting.default}]"
    return escape(f"{setting.help}.{default}")  # help is rich markup; the brackets are literal


# Optional[...] rather than `X | None`: Typer reads these annotations at run time, also on Python 3.10.
ModelOpt = Annotated[Optional[str], typer.Option("-m", "--model", help=setting_help("model"), show_default=False)]
RevisionOpt = Annotated[Optional[str], typer.Option("--revision", help=setting_help("revision"), show_default=False)]
CacheDirOpt = Annotated[Optional[str], typer.Option("--cache-dir", help=setting_help("cache_dir"), show_default=False)]
OfflineOpt = Annotated[Optional[bool], typer.Option("--offline", help=setting_help("offline"), show_default=False)]
FormatOpt = Annotated[
    Optional[str],
    typer.Option("--format", metavar="|".join(FORMAT_CHOICES), help=setting_help("format"), show_default=False),
]
SeedOpt = Annotated[Optional[int], typer.Option("-s", "--seed", min=0, help=setting_help("seed"), show_default=False)]
DtypeOpt = Annotated[
    Optional[str], typer.Option("--dtype", metavar="|".join(DTYPE_CHOICES), help=setting_help("dtype"), show_default=False)
]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help=setting_help("device"), show_default=False)]
ImagePathArg = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A PNG written by `lina generate`.")
]
