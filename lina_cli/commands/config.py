"""`lina config`: every setting's resolved value and where it came from."""

from rich.markup import escape
from rich.table import Table

from lina_cli.console import Printer
from lina_cli.options import FormatOpt
from lina_cli.settings import SETTINGS, config_files, resolve_settings

CONFIG_EXAMPLES = [
    "lina config",
    "LINA_AR_STEPS=64 lina config --format json",
    "printf 'model = \"lina-c2i-256\"\\nbatch_size = 8\\n' > lina.toml && lina config",
]


def config(format: FormatOpt = None) -> None:
    """Show the defaults `lina generate` will use: command line > LINA_<OPTION> > ./lina.toml > user file > built-in."""
    resolved = resolve_settings({"format": format})
    printer = Printer(resolved["format"].value)
    files = config_files()
    for name, value in resolved.items():
        printer.json({"name": name, "value": value.value, "source": value.source, "env_var": SETTINGS[name].env_var})
    if not printer.human:
        return
    table = Table("setting", "value", "source", "env var", "meaning", box=None, pad_edge=False)
    for name, value in resolved.items():
        setting = SETTINGS[name]
        shown = "[dim]unset[/]" if value.value is None else escape(repr(value.value))
        table.add_row(setting.option, shown, escape(value.source), setting.env_var, escape(setting.help))
    printer.out.print(table)
    for path in files:
        printer.line(f"[dim]{'found' if path.is_file() else 'no file'}:[/] {escape(str(path))}")
