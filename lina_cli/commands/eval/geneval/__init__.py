"""`lina eval geneval`: GenEval from a checkpoint to a score. Three commands, since a Typer group cannot also be a
command that takes options of its own:

    run      generate GenEval's images with a LINA model (resumable, torchrun), then score them
    score    score an existing GenEval image folder made by any tool
    summary  score any GenEval `results.jsonl`, and re-check its verdicts

Thin commands: parse, check that flags fit together, call `models.eval.geneval`, print. The library is imported
inside the commands, so `lina --help` stays fast.
"""

from lina_cli.commands.eval.geneval.run import RUN_EXAMPLES, RUN_NOTE, SCORE_EXAMPLES, SCORE_NOTE, run, score
from lina_cli.commands.eval.geneval.summary import SUMMARY_EXAMPLES, SUMMARY_NOTE, summary
from lina_cli.framework import examples_epilog, typer_factory

app = typer_factory("GenEval: score text-to-image models on object, count, colour and position prompts.")
app.command("run", epilog=examples_epilog(RUN_EXAMPLES, RUN_NOTE))(run)
app.command("score", epilog=examples_epilog(SCORE_EXAMPLES, SCORE_NOTE), no_args_is_help=True)(score)
app.command(epilog=examples_epilog(SUMMARY_EXAMPLES, SUMMARY_NOTE), no_args_is_help=True)(summary)
