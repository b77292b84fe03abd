"""`lina profile attention`: MACs, FLOPs, latency and memory of linear vs softmax attention.

A thin command: parse, check that the flags fit together, call `models.perf.attention_profile`, print. torch and
matplotlib are imported inside the command, so `lina --help` stays fast.
"""

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.markup import escape

from lina_cli.commands.profile.attention_report import print_attention_report
from lina_cli.console import Printer, stdout_console
from lina_cli.options import STDOUT, DeviceOpt, DtypeOpt, JsonOpt, at_least, resolve_device_option
from lina_cli.progress import status
from lina_cli.settings import resolve_settings

DEFAULT_RESOLUTIONS = "256,512,1024"

PROFILE_EXAMPLES = [
    "lina profile attention -r 1024 --no-time   # the paper's setting: N = 5120, D = 1536, 16 heads",
    "lina profile attention -r 256,512,1024,2048 --plot attn.png --json attn.json --csv attn.csv",
    "lina profile attention --task c2i -r 256   # class-to-image geometry, N = 320",
    "lina profile attention -n 1024,4096,16384 --dim 1024 --heads 16",
    "lina profile attention -r 512,1024,2048 --device cuda --dtype bf16 --json -",
]


# Options of this command only (shared ones come from lina_cli.options). Help text is rich markup, so the
# literal [default: ...] brackets are escaped.
ResolutionOpt = Annotated[Optional[str], typer.Option(
    "--resolution", "-r",
    help=escape(f"image sides in px, comma-separated, mapped to the decoder sequence N of --task's geometry "
                f"[default: {DEFAULT_RESOLUTIONS}]"),
)]
TaskOpt = Annotated[str, typer.Option(
    metavar="t2i|c2i", help="geometry for --resolution: t2i (1024 px → N = 5120) or c2i (256 px → N = 320)"
)]
SeqLenOpt = Annotated[Optional[str], typer.Option(
    "--seq-len", "-n", help="raw sequence lengths N instead of --resolution, comma-separated"
)]
DimOpt = Annotated[Optional[int], typer.Option(
    callback=at_least(1), help=escape("width D; with --resolution, a width other than the model's drops the AR-step scope "
                       "[default: the model's, 1536]"),
)]
HeadsOpt = Annotated[Optional[int], typer.Option(callback=at_least(1), help=escape("attention heads H [default: the model's, 16]"))]
BatchOpt = Annotated[int, typer.Option("--batch", "-b", callback=at_least(1), help="batch size B")]
TimeOpt = Annotated[bool, typer.Option("--time/--no-time", help="also time each module (on CUDA also peak memory)")]
# These timing defaults mirror models.perf.timing.TIMING_DEFAULTS (tests/cli/test_profile.py keeps them equal).
WarmupOpt = Annotated[Optional[int], typer.Option(
    callback=at_least(0), help=escape("untimed calls first [default: 10 on CUDA, 1 on CPU]")
)]
RepeatsOpt = Annotated[Optional[int], typer.Option(
    callback=at_least(1), help=escape("timed calls; the median and p10-p90 are reported [default: 50 on CUDA, 3 on CPU]")
)]
ARStepOpt = Annotated[Optional[int], typer.Option(
    "--ar-step", help=escape("which step of the default AR schedule to count (-1 = last) [default: the middle one]")
)]
CsvOpt = Annotated[Optional[str], typer.Option(
    "--csv", metavar="FILE", help="write one CSV row per configuration and attention to FILE ('-' = stdout)"
)]
PlotOpt = Annotated[Optional[Path], typer.Option(
    metavar="FILE.png", help="save a PNG of MACs (and latency) against resolution"
)]


def _int_list(text: str | None, option: str) -> list[int] | None:
    if text is None:
        return None
    try:
        values = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        message = f"{text!r}: expected comma-separated integers, e.g. 256,512,1024"
        raise typer.BadParameter(message, param_hint=option) from None
    if not values or min(values) < 1:
        raise typer.BadParameter(f"{text!r}: expected positive integers, e.g. 256,512,1024", param_hint=option)
    return values


def attention(
    resolution: ResolutionOpt = None,
    task: TaskOpt = "t2i",
    seq_len: SeqLenOpt = None,
    dim: DimOpt = None,
    heads: HeadsOpt = None,
    batch: BatchOpt = 1,
    dtype: DtypeOpt = None,
    device: DeviceOpt = None,
    timed: TimeOpt = True,
    warmup: WarmupOpt = None,
    repeats: RepeatsOpt = None,
    ar_step: ARStepOpt = None,
    json_path: JsonOpt = None,
    csv_path: CsvOpt = None,
    plot: PlotOpt = None,
) -> None:
    """Count MACs and FLOPs of linear vs softmax attention (core, module, block, one AR step), and time them.

    Counts come from closed forms, checked against torch.utils.flop_counter on the real modules.
    MACs follow fvcore (one multiply-add = 1, the paper's numbers); FLOPs = 2 x MACs.
    Works on a CPU-only machine without weights.
    """
    if resolution is not None and seq_len is not None:
        raise typer.BadParameter("give --resolution or --seq-len, not both", param_hint="--seq-len")
    if task not in ("t2i", "c2i"):
        raise typer.BadParameter(f"{task!r}: expected t2i or c2i", param_hint="--task")
    if json_path == STDOUT and csv_path == STDOUT:
        raise typer.BadParameter("only one of --json and --csv can write to stdout", param_hint="--csv")
    if ar_step is not None and seq_len is not None:
        message = "the AR step needs the model geometry: use --resolution, not --seq-len"
        raise typer.BadParameter(message, param_hint="--ar-step")
    if plot is not None and plot.suffix.lower() != ".png":
        raise typer.BadParameter(f"{plot}: the plot is a PNG; give a FILE.png", param_hint="--plot")
    seq_lens = _int_list(seq_len, "--seq-len")
    resolutions = None if seq_lens else _int_list(resolution or DEFAULT_RESOLUTIONS, "--resolution")
    settings = resolve_settings({"dtype": dtype, "device": device}, ["dtype", "device"])
    dtype, device = settings["dtype"].value, settings["device"].value


    from models.errors import InvalidConfigError
    from models.perf.attention_profile import cases_from_resolutions, cases_from_seq_lens, profile_attention
    from models.perf.timing import TimingSettings

    machine_output = STDOUT in (json_path, csv_path)
    try:
        if seq_lens is not None:
            cases = cases_from_seq_lens(seq_lens, dim, heads, batch)
        else:
            cases = cases_from_resolutions(resolutions, task, dim, heads, batch, ar_step)
        timing = TimingSettings.resolve(resolve_device_option(device), dtype, warmup, repeats) if timed else None
    except InvalidConfigError as error:
        raise typer.BadParameter(str(error)) from None
    with status(Printer(), "profiling attention") as progress:
        records = profile_attention(cases, timing, progress=progress)
    _write_outputs(records, json_path, csv_path, plot)
    if not machine_output:
        print_attention_report(records, stdout_console())


def _write_outputs(
    records: list[dict[str, Any]], json_path: str | None, csv_path: str | None, plot: Path | None
) -> None:
    from models.perf.report_files import records_to_csv, records_to_json, save_plot, write_csv, write_json

    if json_path == STDOUT:
        typer.echo(records_to_json(records), nl=False)
    elif json_path is not None:
        write_json(records, json_path)
    if csv_path == STDOUT:
        typer.echo(records_to_csv(records), nl=False)
    elif csv_path is not None:
        write_csv(records, csv_path)
    if plot is not None:
        save_plot(records, plot)
