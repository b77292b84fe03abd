"""Options shared by several commands, written once as `Annotated` aliases (huggingface_hub's `_cli_utils`).

Every configurable option defaults to None, meaning "not given on the command line", so that
`lina_cli.settings.resolve_settings` can fall back to `LINA_<OPTION>`, the config files and the built-in
default in `SETTINGS`; the help text comes from that table too.
"""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape

from lina_cli.settings import FORMAT_CHOICES, SETTINGS
from models.constants import DTYPE_CHOICES, KERNEL_CHOICES

if TYPE_CHECKING:
    import torch


def setting_help(name: str, command_default: Any = None) -> str:
    """Help text of a setting, with its built-in default (or the command's own), from the one table in
    `lina_cli.settings`."""
    setting = SETTINGS[name]
    shown = setting.default if command_default is None else command_default
    default = "" if shown is None else f" [default: {shown}]"
    return escape(f"{setting.help}.{default}")  # help is rich markup; the brackets are literal


def setting_option(*names: str, setting: str, kind: type = str, command_default: Any = None, **extra: Any):
    """An `Optional[kind]` option for a setting of `SETTINGS`: default None ("not given"), help from the table.

    `command_default` is what the command uses when neither the command line, the environment nor a config file
    sets the setting (the command applies it; here it only shows in the help).

    A value given on the command line is checked against the setting's rules (minimum, choices, finite) here, so a
    bad one is a usage error (exit 2) that names the option, before anything is loaded.
    """

    def check(value):
        if value is not None and (problem := SETTINGS[setting].problem(value)) is not None:
            raise typer.BadParameter(f"{value!r}: {problem}")
        return value

    # Optional[...] rather than `X | None`: Typer reads these annotations at run time, also on Python 3.10.
    return Annotated[
        Optional[kind],
        typer.Option(*names, help=setting_help(setting, command_default), show_default=False, callback=check, **extra),
    ]


def at_least(minimum: int):
    """A Typer callback for an integer option that must be ≥ `minimum` (a usage error in lina's words otherwise)."""

    def check(value):
        if value is not None and value < minimum:
            raise typer.BadParameter(f"{value!r}: must be ≥ {minimum}")
        return value

    return check


ModelOpt = setting_option("-m", "--model", setting="model")
RevisionOpt = setting_option("--revision", setting="revision")
CacheDirOpt = setting_option("--cache-dir", setting="cache_dir")
OfflineOpt = setting_option("--offline", setting="offline", kind=bool)
FormatOpt = setting_option("--format", setting="format", metavar="|".join(FORMAT_CHOICES))
SeedOpt = setting_option("-s", "--seed", setting="seed", kind=int)
DtypeOpt = setting_option("--dtype", setting="dtype", metavar="|".join(DTYPE_CHOICES))
DeviceOpt = setting_option("--device", setting="device")
# The sampler and batch options of every command that makes images, named as `lina generate` names them.
ARStepsOpt = setting_option("--ar-steps", setting="ar_steps", kind=int)
DiffusionStepsOpt = setting_option("--diffusion-steps", setting="diffusion_steps", kind=int)
CfgOpt = setting_option("--cfg", setting="cfg", kind=float)
CfgMinOpt = setting_option("--cfg-min", setting="cfg_min", kind=float)
BatchSizeOpt = setting_option("-b", "--batch-size", setting="batch_size", kind=int)
KernelsOpt = setting_option("--kernels", setting="kernels", metavar="|".join(KERNEL_CHOICES))
JsonOpt = Annotated[Optional[str], typer.Option(
    "--json", metavar="FILE|-", help="write the result as JSON to FILE ('-' = stdout, and no table)"
)]
STDOUT = "-"  # `--json -` (and `--csv -`) write to stdout instead of a file, and nothing else goes there
ImagePathArg = Annotated[
    Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="A PNG written by `lina generate`.")
]


def resolve_device_option(requested: str | None, local_rank: int | None = None) -> "torch.device":
    """--device through `models.pipeline.devices.resolve_device`; a name that is no device is a usage error (exit 2)."""
    from models.errors import InvalidDeviceError
    from models.pipeline.devices import resolve_device

    try:
        return resolve_device(requested, local_rank)
    except InvalidDeviceError as error:
        raise typer.BadParameter(str(error).removeprefix("--device "), param_hint="--device") from None
