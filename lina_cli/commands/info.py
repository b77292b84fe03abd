"""`lina info IMAGE`: print the generation record stored in a PNG written by `lina generate`."""

from rich.markup import escape
from rich.table import Table

from lina_cli.console import Printer
from lina_cli.options import FormatOpt, ImagePathArg
from lina_cli.settings import resolve_settings

INFO_EXAMPLES = [
    "lina info outputs/00000-42-a-cat-on-a-sofa.png",
    "lina info image.png --format json | jq .seed",
    "lina generate --from-metadata image.png   # make it again",
]


def info(image: ImagePathArg, format: FormatOpt = None) -> None:
    """Show how an image was made: model and commit, prompt or class, seed, sampler settings, versions."""
    from models.runs.metadata import PARAMETERS_KEY, read_metadata, read_png_text

    printer = Printer(resolve_settings({"format": format}, ["format"])["format"].value)
    metadata = read_metadata(image)
    printer.json({"path": str(image), **metadata.to_json()})
    if printer.human:
        table = Table(show_header=False, box=None, pad_edge=False)
        for key, value in metadata.to_json().items():
            table.add_row(f"[bold]{key}[/]", escape("—" if value is None else str(value)))
        printer.out.print(table)
        printer.line(f"\n[dim]{PARAMETERS_KEY}:[/]\n{escape(read_png_text(image).get(PARAMETERS_KEY, ''))}")
