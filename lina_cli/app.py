"""Builds the `lina` app: one factory call, then one line per command. No logic lives here."""

from lina_cli.commands.config import CONFIG_EXAMPLES, config
from lina_cli.commands.download import DOWNLOAD_EXAMPLES, download
from lina_cli.commands.eval import app as eval_app
from lina_cli.commands.generate import GENERATE_EXAMPLES, generate
from lina_cli.commands.info import INFO_EXAMPLES, info
from lina_cli.commands.models import MODELS_EXAMPLES, models
from lina_cli.commands.profile import app as profile_app
from lina_cli.commands.train import app as train_app
from lina_cli.framework import examples_epilog, typer_factory

app = typer_factory(
    "LINA image generation: the bundled demo model or the official checkpoints; generate images, read their "
    "metadata, evaluate, profile and train.",
    epilog=examples_epilog([
        'lina generate "two red circles left of a blue square" -m lina-shapes --device cpu',
        'lina download lina-t2i-1024',
        'lina generate "a cat on a sofa" -s 5 -n 2',
    ]),
)
app.command(epilog=examples_epilog(DOWNLOAD_EXAMPLES), no_args_is_help=True)(download)
app.command(epilog=examples_epilog(MODELS_EXAMPLES))(models)
app.command(epilog=examples_epilog(GENERATE_EXAMPLES), no_args_is_help=True)(generate)
app.command(epilog=examples_epilog(INFO_EXAMPLES), no_args_is_help=True)(info)
app.command(epilog=examples_epilog(CONFIG_EXAMPLES))(config)
app.add_typer(profile_app, name="profile")
app.add_typer(eval_app, name="eval")
app.add_typer(train_app, name="train")


def main() -> None:
    """Console-script entry point (`lina`), also used by `python -m lina_cli`."""
    app(prog_name="lina")
