"""The human report of a GenEval score: the per-task table, the totals and the verify agreement."""

from pathlib import Path
from typing import TYPE_CHECKING

from rich.markup import escape

if TYPE_CHECKING:
    from rich.console import Console

    from models.eval.geneval.summary import Summary, VerifyReport

SHOWN_DISAGREEMENTS = 10


def print_summary(scores: "Summary", report: "VerifyReport | None", path: Path, console: "Console") -> None:
    from rich.table import Table

    table = Table(title=f"GenEval — {escape(str(path))}")
    for header in ("task", "correct", "images", "accuracy"):
        table.add_column(header, justify="left" if header == "task" else "right")
    for task in scores.tasks:
        table.add_row(task.tag, str(task.correct), str(task.images), f"{task.accuracy:.4f}")
    table.add_section()
    overall = f"[bold]overall[/] (mean of {len(scores.tasks)} tasks)"
    table.add_row(overall, "", str(scores.images), f"[bold]{scores.overall:.5f}[/]")
    console.print(table)
    console.print(
        f"{scores.images} images, {scores.prompts} prompts: {scores.correct_images:.2%} of images correct, "
        f"{scores.correct_prompts:.2%} of prompts with at least one correct image."
    )
    if scores.missing_tasks:
        console.print(
            f"[yellow]warning:[/] no {', '.join(scores.missing_tasks)} images: the overall score is not comparable "
            "with GenEval's six-task score."
        )
    if report is not None:
        print_verify(report, console)


def print_verify(report: "VerifyReport", console: "Console") -> None:
    status = "[green]all agree[/]" if not report.disagreements else f"[red]{len(report.disagreements)} disagree[/]"
    console.print(
        f"verify: {report.agree} of {report.checked} re-derived verdicts agree ({status}); "
        f"{report.colour_dependent} reach a colour clause, which needs the image, and were not re-derived."
    )
    for disagreement in report.disagreements[:SHOWN_DISAGREEMENTS]:
        recorded, derived = disagreement.recorded, disagreement.derived
        console.print(
            f"  [red]✗[/] {escape(disagreement.filename)}: recorded {recorded.correct} "
            f"({escape(recorded.reason or 'no reason')}), derived {derived.correct} "
            f"({escape(derived.reason or 'no reason')})".replace("\n", "; ")
        )
    hidden = len(report.disagreements) - SHOWN_DISAGREEMENTS
    if hidden > 0:
        console.print(f"  … and {hidden} more")
