"""`lina profile attention` (MACs, FLOPs, latency and memory of linear vs softmax attention) and
`lina profile pipeline` (end-to-end generation time, phase by phase).

Thin commands: parse, check that the flags fit together, call `models.perf.attention_profile` or `models.perf.pipeline_profile`,
print. torch and matplotlib are imported inside the commands, so `lina --help` stays fast.
"""

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.markup import escape

from lina_cli.console import Printer, stderr_console, stdout_console
from lina_cli.framework import typer_factory
from lina_cli.options import CacheDirOpt, DeviceOpt, DtypeOpt, KernelsOpt
from lina_cli.settings import resolve_settings
from models.constants import RELEASED_MODELS
from models.errors import DeviceUnavailableError
from models.network.config import SAMPLING_DEFAULTS

if TYPE_CHECKING:
    from rich.console import Console

STDOUT = "-"  # `--json -` / `--csv -` write to stdout instead of a file (and skip the table)
DEFAULT_RESOLUTIONS = "256,512,1024"

PROFILE_EXAMPLES = [
    "lina profile attention -r 1024 --no-time   # the paper's setting: N = 5120, D = 1536, 16 heads",
    "lina profile attention -r 256,512,1024,2048 --plot attn.png --json attn.json --csv attn.csv",
    "lina profile attention --task c2i -r 256   # class-to-image geometry, N = 320",
    "lina profile attention -n 1024,4096,16384 --dim 1024 --heads 16",
    "lina profile attention -r 512,1024,2048 --device cuda --dtype bf16 --json -",
]


def _epilog(examples: list[str]) -> str:
    lines = "\n\n".join(f"  $ {escape(example)}" for example in examples)
    note = "--dtype and --device can also be set with LINA_DTYPE / LINA_DEVICE or the config files (see `lina config`)."
    return f"[bold]Examples[/bold]\n\n{lines}\n\n{note}"


app = typer_factory("Measure what LINA costs: linear vs softmax attention, and the whole generation pipeline.")


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
    min=1, help=escape("width D; with --resolution, a width other than the model's drops the AR-step scope "
                       "[default: the model's, 1536]"),
)]
HeadsOpt = Annotated[Optional[int], typer.Option(min=1, help=escape("attention heads H [default: the model's, 16]"))]
BatchOpt = Annotated[int, typer.Option("--batch", "-b", min=1, help="batch size B")]
TimeOpt = Annotated[bool, typer.Option("--time/--no-time", help="also time each module (on CUDA also peak memory)")]
# These timing defaults mirror models.perf.timing.TIMING_DEFAULTS (tests/cli/test_profile.py keeps them equal).
WarmupOpt = Annotated[Optional[int], typer.Option(
    min=0, help=escape("untimed calls first [default: 10 on CUDA, 1 on CPU]")
)]
RepeatsOpt = Annotated[Optional[int], typer.Option(
    min=1, help=escape("timed calls; the median and p10-p90 are reported [default: 50 on CUDA, 3 on CPU]")
)]
ARStepOpt = Annotated[Optional[int], typer.Option(
    "--ar-step", help=escape("which step of the default AR schedule to count (-1 = last) [default: the middle one]")
)]
JsonOpt = Annotated[Optional[str], typer.Option(
    "--json", metavar="FILE", help="write the results as JSON to FILE ('-' = stdout, no table)"
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

    import torch

    from models.errors import InvalidConfigError
    from models.perf.attention_profile import cases_from_resolutions, cases_from_seq_lens, profile_attention
    from models.perf.timing import TimingSettings

    if device is not None and torch.device(device).type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(f"--device {device}: this torch build sees no CUDA GPU")
    machine_output = STDOUT in (json_path, csv_path)
    try:
        if seq_lens is not None:
            cases = cases_from_seq_lens(seq_lens, dim, heads, batch)
        else:
            cases = cases_from_resolutions(resolutions, task, dim, heads, batch, ar_step)
        timing = TimingSettings.resolve(device, dtype, warmup, repeats) if timed else None
    except InvalidConfigError as error:
        raise typer.BadParameter(str(error)) from None
    with _spinner() as progress:
        records = profile_attention(cases, timing, progress=progress)
    _write_outputs(records, json_path, csv_path, plot)
    if not machine_output:
        _print_report(records, stdout_console())


app.command(epilog=_epilog(PROFILE_EXAMPLES))(attention)


@contextmanager
def _spinner(label: str = "profiling attention") -> Iterator[Callable[[str], None]]:
    """A status line on stderr while counting and timing, drawn only on a terminal; yields its updater."""
    console = stderr_console()
    if not console.is_terminal:
        yield lambda text: None
        return
    with console.status(f"{label}…") as status:
        yield lambda text: status.update(escape(text) + "…")


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


# ----------------------------------------------------------------------------------------------------
# The human report
# ----------------------------------------------------------------------------------------------------

_SCOPE_LABELS = {
    "core": "attention core", "module": "attention module", "block": "transformer block", "ar_step": "one AR step"
}
_LINEAR_TERMS = {
    "qkv": "qkv", "proj": "proj", "normaliser": "q·k̄", "kv_state": "kᵀv", "q_state": "q·S", "dw_conv": "dw conv"
}
_UNCOUNTED_LABELS = {"kv_gate": "KV-gate multiplies", "softmax_exp": "softmax exps"}


def _si(value: float, unit: str) -> str:
    """4 significant digits with an SI prefix and the unit: 36238786560, 'MAC' → '36.24 GMAC'."""
    for prefix, scale in (("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}".rstrip()
    return f"{value:.4g} {unit}".rstrip()


def _size(record: dict[str, Any]) -> str:
    return f"{record['resolution']} px" if record["resolution"] is not None else "—"


def _print_report(records: list[dict[str, Any]], console: "Console") -> None:
    from models.perf.flops import FLOP_CONVENTION, MAC_CONVENTION, NOT_COUNTED

    console.print(_counts_table(records))
    console.print(_breakdown_table(records))
    for record in records:
        uncounted = {**record["linear"]["uncounted"], **record["softmax"]["uncounted"]}
        parts = "; ".join(f"{_UNCOUNTED_LABELS[key]} {_si(value, '')}" for key, value in uncounted.items())
        console.print(f"[dim]Elementwise work outside both counts at N = {record['seq_len']}: {parts}.[/dim]")
    latency = _latency_table(records)
    if latency is not None:
        console.print(latency)
        env = records[0]["environment"]
        gpu = f", driver {env['driver']}, CUDA {env['cuda']}" if "gpu" in env else ""
        console.print(f"[dim]measured with torch {escape(env['torch'])}{escape(gpu)}[/dim]")
    for module, core in sorted({(r["crossover_seq_len"]["module"], r["crossover_seq_len"]["core"]) for r in records}):
        console.print(f"Linear attention needs fewer MACs than softmax from N = {module} (module), N = {core} (core).")
    for record in records:
        if "ar_step" in record:
            step = record["ar_step"]
            console.print(
                f"[dim]AR step at {_size(record)}: step {step['index']} of {step['num_steps']} of the default "
                f"{record['task']} schedule, {step['known']} known + {step['predicted']} predicted tokens, "
                f"{step['diffusion_steps']} head calls on {step['rows_per_image']} rows per image (CFG); "
                "the context encoder runs once per image and is not in it.[/dim]"
            )
    console.print(f"[dim]{MAC_CONVENTION}. {FLOP_CONVENTION}. {NOT_COUNTED[0].upper() + NOT_COUNTED[1:]}.[/dim]")


def _counts_table(records: list[dict[str, Any]]):
    from rich.table import Table

    from models.perf.attention_profile import SCOPES, scope_macs

    first = records[0]
    table = Table(title=f"Linear vs softmax attention, D = {first['dim']}, H = {first['heads']}, B = {first['batch']}")
    headers = (
        "size", "N", "scope", "linear (MACs)", "softmax (MACs)", "ratio", "linear (FLOPs)", "softmax (FLOPs)",
        "flop_counter",
    )
    for header in headers:
        table.add_column(header, justify="left" if header in ("size", "scope") else "right")
    for record in records:
        for scope in SCOPES:
            linear, softmax = scope_macs(record, "linear", scope), scope_macs(record, "softmax", scope)
            if linear is None:
                continue
            agrees = all(_scope(record, attention, scope)["counter_agrees"] for attention in ("linear", "softmax"))
            table.add_row(
                _size(record), str(record["seq_len"]), _SCOPE_LABELS[scope],
                _si(linear, "MAC"), _si(softmax, "MAC"), f"{linear / softmax:.3f}",
                _si(2 * linear, "FLOP"), _si(2 * softmax, "FLOP"),
                "[green]matches[/green]" if agrees else "[red]differs (see --json)[/red]",
            )
        table.add_section()
    return table


def _breakdown_table(records: list[dict[str, Any]]):
    from rich.table import Table

    table = Table(title="Attention module breakdown (MACs, fvcore convention)")
    for header in ("N", *_LINEAR_TERMS.values(), "linear core", "softmax core (QKᵀ + AV)"):
        table.add_column(header, justify="right")
    for record in records:
        linear = record["linear"]["breakdown_macs"]
        terms = (_si(linear[key], "MAC") if key in linear else "—" for key in _LINEAR_TERMS)
        cores = (_si(record[attention]["core"]["macs"], "MAC") for attention in ("linear", "softmax"))
        table.add_row(str(record["seq_len"]), *terms, *cores)
    return table


def _latency_table(records: list[dict[str, Any]]):
    """The timing table, or None when nothing was timed (--no-time)."""
    from rich.table import Table

    from models.perf.attention_profile import TIMED_VARIANTS

    if "timing" not in records[0]:
        return None
    timing = records[0]["timing"]
    where = escape(records[0]["environment"].get("gpu", timing["device"]))
    runs = f"median of {timing['repeats']} after {timing['warmup']} warm-up"
    table = Table(title=f"Latency per module call on {where} ({runs})")
    for header in ("N", "implementation", "dtype", "median ms", "p10–p90 ms", "peak MB"):
        table.add_column(header, justify="left" if header == "implementation" else "right")
    for record in records:
        for variant in TIMED_VARIANTS:
            row = record.get(variant.key, {})
            if "error" in row:
                table.add_row(str(record["seq_len"]), variant.label, row["dtype"], f"[red]{row['error']}[/red]", "", "")
            elif "latency_ms" in row:
                peak = f"{row['peak_mem_mb']:.1f}" if "peak_mem_mb" in row else "—"
                spread = f"{row['latency_p10_ms']:.3f}–{row['latency_p90_ms']:.3f}"
                median = f"{row['latency_ms']:.3f}"
                table.add_row(str(record["seq_len"]), variant.label, row["dtype"], median, spread, peak)
        table.add_section()
    return table


def _scope(record: dict[str, Any], attention: str, scope: str) -> dict[str, Any]:
    return record[attention] if scope == "module" else record[attention][scope]


# ----------------------------------------------------------------------------------------------------
# lina profile pipeline
# ----------------------------------------------------------------------------------------------------

PIPELINE_EXAMPLES = [
    "lina profile pipeline -m lina-t2i-1024 --random-init   # the paper's latency setting: 128 AR / 25 steps / CFG 7",
    "lina profile pipeline -m lina-t2i-1024 --random-init --attention softmax   # the same network, softmax attention",
    "lina profile pipeline -m lina-c2i-256 --random-init --batch-size 64 --peak-tflops 800 --json c2i.json",
    "lina profile pipeline -m ./tiny-folder --device cpu --ar-steps 4 --diffusion-steps 2 --repeats 1",
]


def _task_defaults(field: str) -> str:
    """'t2i 128, c2i 64' for a field of SAMPLING_DEFAULTS (the help cannot drift from the library)."""
    return ", ".join(f"{task} {getattr(defaults, field):g}" for task, defaults in SAMPLING_DEFAULTS.items())


PipelineModelOpt = Annotated[str, typer.Option(
    "--model", "-m", metavar="CONFIG", show_default=False,
    help=f"released alias ({', '.join(RELEASED_MODELS)}) or a pipeline folder",
)]
RandomInitOpt = Annotated[bool, typer.Option(
    "--random-init", help="build the architecture with random weights: nothing is loaded or downloaded "
                          "(weights do not change the time)",
)]
AttentionOpt = Annotated[Optional[str], typer.Option(
    metavar="linear|softmax",
    help=escape("time the same architecture with this attention (a change needs --random-init) [default: the model's]"),
)]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", "-b", min=1, help="images generated together")]
ARStepsOpt = Annotated[Optional[int], typer.Option(
    min=1, show_default=False, help=escape(f"autoregressive steps [default: {_task_defaults('ar_steps')}]")
)]
DiffusionStepsOpt = Annotated[Optional[int], typer.Option(
    min=1, show_default=False,
    help=escape(f"flow-matching steps per AR step [default: {_task_defaults('diffusion_steps')}]"),
)]
CfgOpt = Annotated[Optional[float], typer.Option(
    show_default=False, help=escape(f"guidance scale [default: {_task_defaults('cfg')}]")
)]
CfgMinOpt = Annotated[Optional[float], typer.Option(
    "--cfg-min", show_default=False,
    help=escape(f"guidance at the first AR step, ramping to --cfg [default: c2i {SAMPLING_DEFAULTS['c2i'].cfg_min:g} "
                "when --cfg is unset, else constant]"),
)]
PipelineWarmupOpt = Annotated[int, typer.Option(
    "--warmup", min=0, help="untimed runs first (they also capture the head's CUDA graphs)"
)]
PipelineRepeatsOpt = Annotated[int, typer.Option(
    "--repeats", min=1, help="timed runs; the median, p10-p90 and min-max are reported"
)]
DecodeOpt = Annotated[bool, typer.Option("--decode/--no-decode", help="include the VAE decode")]
PeakTflopsOpt = Annotated[Optional[float], typer.Option(
    "--peak-tflops", metavar="TFLOP/S", show_default=False,
    help="the device's peak dense bf16 rate; given, model-FLOPs utilisation (MFU) is reported too",
)]


def pipeline(
    model: PipelineModelOpt,
    random_init: RandomInitOpt = False,
    attention: AttentionOpt = None,
    batch_size: BatchSizeOpt = 1,
    ar_steps: ARStepsOpt = None,
    diffusion_steps: DiffusionStepsOpt = None,
    cfg: CfgOpt = None,
    cfg_min: CfgMinOpt = None,
    dtype: DtypeOpt = None,
    device: DeviceOpt = None,
    kernels: KernelsOpt = None,
    warmup: PipelineWarmupOpt = 1,
    repeats: PipelineRepeatsOpt = 3,
    decode: DecodeOpt = True,
    peak_tflops: PeakTflopsOpt = None,
    cache_dir: CacheDirOpt = None,
    json_path: JsonOpt = None,
) -> None:
    """Time the whole generation pipeline, phase by phase, for a released config or a pipeline folder.

    Conditioning and context encoding, the AR loop (image encoder, split into its encoder and decoder
    halves, and the diffusion head), the VAE decode: median and spread over the timed runs, images/s,
    peak memory on CUDA, and the achieved TFLOP/s from the closed-form FLOP counts. The text encoder is
    excluded, as in the paper's latency protocol. This is a benchmark: run it on the GPU you care about.
    """
    if attention not in (None, "linear", "softmax"):
        raise typer.BadParameter(f"{attention!r}: expected linear or softmax", param_hint="--attention")
    if peak_tflops is not None and not peak_tflops > 0:
        raise typer.BadParameter(f"{peak_tflops}: expected a positive rate in TFLOP/s", param_hint="--peak-tflops")
    given = {"dtype": dtype, "device": device, "kernels": kernels, "cache_dir": cache_dir}
    settings = resolve_settings(given, list(given))
    dtype, device, kernels, cache_dir = (settings[name].value for name in given)

    import torch

    from models.errors import CheckpointMismatchError
    from models.perf.pipeline_profile import CPU_WARNING, benchmark_pipeline
    from models.perf.profiled_pipelines import resolve_model
    from models.perf.report_files import records_to_json, write_json
    from models.perf.timing import TimingSettings
    from models.sampling.sampler import sampling_settings_for

    try:
        timing = TimingSettings.resolve(device, dtype, warmup, repeats)
    except RuntimeError:  # torch.device's parse error
        message = f"{device!r} is not a device: use cpu, cuda or cuda:N"
        raise typer.BadParameter(message, param_hint="--device") from None
    if timing.device.type == "cuda" and not torch.cuda.is_available():
        raise DeviceUnavailableError(f"--device {device}: this torch build sees no CUDA GPU")
    try:
        target = resolve_model(model, random_init=random_init, attention=attention, cache_dir=cache_dir)
    except CheckpointMismatchError as error:  # trained weights of the other attention: a flag combination problem
        raise typer.BadParameter(str(error), param_hint="--attention") from None
    try:
        sampling = sampling_settings_for(target.config.task, ar_steps, diffusion_steps, cfg, cfg_min)
    except ValueError as error:
        raise typer.BadParameter(str(error)) from None
    if timing.device.type == "cpu":
        Printer().warn(CPU_WARNING)
    if target.path is not None and target.config.is_text_conditioned:
        # load_pipeline loads Phi-2 (dropped before timing); transformers would draw a bar under the spinner.
        from transformers.utils import logging as transformers_logging

        transformers_logging.disable_progress_bar()
    with _spinner("timing the pipeline") as progress:
        record = benchmark_pipeline(
            target, sampling, timing, batch_size=batch_size, decode=decode, peak_tflops=peak_tflops, kernels=kernels,
            progress=progress,
        )
    if json_path == STDOUT:
        typer.echo(records_to_json([record]), nl=False)
        return
    if json_path is not None:
        write_json([record], json_path)
    _print_pipeline_report(record, stdout_console())


app.command(epilog=_epilog(PIPELINE_EXAMPLES), no_args_is_help=True)(pipeline)


_PHASE_LABELS = {
    "conditioning": "conditioning",
    "context": "context encoding",
    "image_encoder": "AR loop: image encoder",
    "encoder_half": "  encoder half",
    "decoder_half": "  decoder half",
    "head": "AR loop: diffusion head",
    "vae_decode": "VAE decode",
    "other": "other (orders, set-up, Python)",
    "ar_loop": "AR loop",
    "sampling": "sampling (all but the decode)",
    "total": "total",
}
_SUMMARY_PHASES = ("ar_loop", "sampling", "total")  # below the line: sums of the rows above


def _print_pipeline_report(record: dict[str, Any], console: "Console") -> None:
    console.print(_pipeline_table(record))
    per_image = record["per_image_ms"]
    per_image_text = f"{per_image / 1000:.3f} s" if per_image >= 1000 else f"{per_image:.1f} ms"
    parts = [f"{per_image_text} per image", f"{record['images_per_s']:.3g} images/s"]
    memory = record["memory_mb"]
    if memory is not None:
        parts.append(
            f"peak memory {memory['peak_allocated']:,.0f} MB allocated, {memory['peak_reserved']:,.0f} MB reserved "
            f"({memory['allocated_before_runs']:,.0f} MB before the runs)"
        )
    console.print("[bold]" + escape(" · ".join(parts)) + "[/bold]")
    achieved = record["achieved_tflops"].get("sampling")
    if achieved is not None:
        line = f"sampling at {achieved:.3g} TFLOP/s (closed-form FLOPs / median time)"
        if record["mfu"] is not None:
            line += f": MFU {100 * record['mfu']:.1f} % of {record['peak_tflops']:g} TFLOP/s"
        else:
            line += "; pass --peak-tflops for the model-FLOPs utilisation"
        console.print(escape(line))
    for note in record["notes"]:
        console.print(f"[dim]{escape(note)}[/dim]")
    env = record["environment"]
    gpu = f", driver {env['driver']}, CUDA {env['cuda']}" if "gpu" in env else ""
    console.print(f"[dim]measured with torch {escape(env['torch'])}{escape(gpu)}[/dim]")


def _pipeline_table(record: dict[str, Any]):
    from rich.table import Table

    timing, sampling = record["timing"], record["sampling"]
    where = record["environment"].get("gpu", timing["device"])
    height, width = record["image_size"]
    guidance = f"CFG {sampling['cfg']:g}" + (
        f" ramping from {sampling['cfg_min']:g}" if sampling["cfg_min"] is not None else " constant"
    )
    title = (
        f"{record['model']} ({record['task']} {height}×{width}, {record['attention']} attention, {record['weights']} "
        f"weights) on {where}, batch {record['batch_size']}, {timing['dtype']}, {timing['kernels']} kernels\n"
        f"{sampling['ar_steps']} AR steps ({sampling['ar_steps_run']} non-empty), {sampling['diffusion_steps']} "
        f"diffusion steps, {guidance}; median of {timing['repeats']} runs after {timing['warmup']} warm-up "
        f"({timing['clock']})"
    )
    table = Table(title=escape(title))
    for header in ("phase", "median ms", "p10–p90 ms", "min–max ms", "share", "ms / image", "FLOPs", "achieved"):
        table.add_column(header, justify="left" if header == "phase" else "right")
    phases, total = record["phases_ms"], record["phases_ms"]["total"]["median"]
    for name, label in _PHASE_LABELS.items():
        if name not in phases:
            continue
        if name == _SUMMARY_PHASES[0]:
            table.add_section()
        stats = phases[name]
        flops = record["flops"].get(name)
        rate = record["achieved_tflops"].get(name)
        table.add_row(
            label,
            f"{stats['median']:.2f}",
            f"{stats['p10']:.2f}–{stats['p90']:.2f}",
            f"{stats['min']:.2f}–{stats['max']:.2f}",
            f"{100 * stats['median'] / total:.1f} %",
            f"{stats['median'] / record['batch_size']:.2f}",
            _si(flops, "FLOP") if flops else "—",
            _si(rate * 1e12, "FLOP/s") if rate else "—",
        )
    return table
