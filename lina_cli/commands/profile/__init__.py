"""`lina profile`: what LINA costs — linear vs softmax attention, and the whole generation pipeline."""

from lina_cli.commands.profile.attention import PROFILE_EXAMPLES, attention
from lina_cli.commands.profile.pipeline import PIPELINE_EXAMPLES, pipeline
from lina_cli.framework import examples_epilog, typer_factory

# Only --dtype and --device of these commands are settings; the rest are plain options.
SETTINGS_NOTE = "--dtype and --device can also be set with LINA_DTYPE / LINA_DEVICE or the config files (see `lina config`)."

app = typer_factory("Measure what LINA costs: linear vs softmax attention, and the whole generation pipeline.")
app.command(epilog=examples_epilog(PROFILE_EXAMPLES, SETTINGS_NOTE))(attention)
app.command(epilog=examples_epilog(PIPELINE_EXAMPLES, SETTINGS_NOTE), no_args_is_help=True)(pipeline)
