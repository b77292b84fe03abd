"""`lina train`: train LINA models (`lina train model`), their VAE and text parts, and export a run as a pipeline folder."""

from lina_cli.commands.train.model import EXPORT_EXAMPLES, MODEL_EXAMPLES, export, model
from lina_cli.commands.train.parts import TEXT_EXAMPLES, VAE_EXAMPLES, text_encoder, vae
from lina_cli.framework import examples_epilog, typer_factory

TRAIN_NOTE = "docs/training.md explains the objective, the run folder and the demo recipe. --device also reads LINA_DEVICE."

app = typer_factory("Train LINA models on your data or the built-in shapes dataset, and export them for `lina generate`.")
app.command(epilog=examples_epilog(MODEL_EXAMPLES, TRAIN_NOTE), no_args_is_help=True)(model)
app.command(epilog=examples_epilog(VAE_EXAMPLES, TRAIN_NOTE), no_args_is_help=True)(vae)
app.command("text-encoder", epilog=examples_epilog(TEXT_EXAMPLES, TRAIN_NOTE), no_args_is_help=True)(text_encoder)
app.command(epilog=examples_epilog(EXPORT_EXAMPLES, TRAIN_NOTE), no_args_is_help=True)(export)
