"""`lina eval geneval summary`: score any GenEval `results.jsonl`, and re-check its verdicts."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from lina_cli.commands.eval.geneval.report import print_summary
from lina_cli.console import stdout_console, write_json_result
from lina_cli.options import (
    JsonOpt,
)

if TYPE_CHECKING:

    pass


SUMMARY_EXAMPLES = [
    "lina eval geneval summary outputs/geneval/results.jsonl",
    "lina eval geneval summary results.jsonl --verify   # re-judge every verdict from its recorded detections",
    "lina eval geneval summary results.jsonl --json score.json",
    "lina eval geneval summary results.jsonl --verify --json - | jq .overall",
]
SUMMARY_NOTE = (
    "Any results.jsonl in GenEval's format works: from GenEval's evaluate_images.py, from lina, or from other tools."
)


ResultsArg = Annotated[Path, typer.Argument(
    metavar="RESULTS.jsonl", exists=True, dir_okay=False, readable=True,
    help="a GenEval results file: one JSON line per image (filename, tag, prompt, correct, reason, metadata, details)",
)]
VerifyOpt = Annotated[bool, typer.Option(
    "--verify",
    help="re-judge every line from its recorded detections and metadata with lina's rules, and report agreement; "
         "lines that reach a colour clause need the image and are only counted; exits 1 on any disagreement",
)]


def summary(results: ResultsArg, verify: VerifyOpt = False, json_path: JsonOpt = None) -> None:
    """Score a GenEval results file: per-task accuracy and the overall score, as GenEval's summary_scores.py.

    The overall score is the mean of the task accuracies; a prompt counts as correct when any of its images is.
    """
    from models.eval.geneval.results import read_results
    from models.eval.geneval.summary import score_json, summarize
    from models.eval.geneval.summary import verify as verify_lines

    lines = read_results(results)
    scores = summarize(lines)
    report = verify_lines(lines) if verify else None
    data = score_json(scores, report)
    if not write_json_result(data, json_path):
        print_summary(scores, report, results, stdout_console())
    if report is not None and report.disagreements:
        raise typer.Exit(1)
