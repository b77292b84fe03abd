"""`lina eval`: score generated images; one sub-group or command per benchmark (`lina eval fid`, `lina eval geneval`,
`lina eval shapes`)."""

from lina_cli.commands.eval.fid import FID_EXAMPLES, FID_NOTE, fid
from lina_cli.commands.eval.geneval import app as geneval_app
from lina_cli.commands.eval.shapes import SHAPES_EXAMPLES, SHAPES_NOTE, shapes
from lina_cli.framework import examples_epilog, typer_factory

app = typer_factory("Evaluate generated images with standard benchmarks.")
app.add_typer(geneval_app, name="geneval")
app.command(epilog=examples_epilog(SHAPES_EXAMPLES, SHAPES_NOTE), no_args_is_help=True)(shapes)
app.command(epilog=examples_epilog(FID_EXAMPLES, FID_NOTE))(fid)
