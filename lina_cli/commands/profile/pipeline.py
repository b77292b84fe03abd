"""`lina profile pipeline`: end-to-end generation time, phase by phase, for a released config or a folder.

A thin command over `models.perf.pipeline_profile`; torch is imported inside the command.
"""

from typing import Annotated, Optional

import typer
from rich.markup import escape

from lina_cli.commands.profile.pipeline_report import print_pipeline_report
from lina_cli.console import Printer, stdout_console
from lina_cli.options import (
    STDOUT,
    CacheDirOpt,
    DeviceOpt,
    DtypeOpt,
    JsonOpt,
    KernelsOpt,
    at_least,
    resolve_device_option,
)
from lina_cli.progress import status
from lina_cli.settings import resolve_settings
from models.constants import RELEASED_MODELS
from models.sampling.settings import SAMPLING_DEFAULTS

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
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", "-b", callback=at_least(1), help="images generated together")]
ARStepsOpt = Annotated[Optional[int], typer.Option(
    callback=at_least(1), show_default=False, help=escape(f"autoregressive steps [default: {_task_defaults('ar_steps')}]")
)]
DiffusionStepsOpt = Annotated[Optional[int], typer.Option(
    callback=at_least(1), show_default=False,
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
    "--warmup", callback=at_least(0), help="untimed runs first (they also capture the head's CUDA graphs)"
)]
PipelineRepeatsOpt = Annotated[int, typer.Option(
    "--repeats", callback=at_least(1), help="timed runs; the median, p10-p90 and min-max are reported"
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


    from models.errors import CheckpointMismatchError
    from models.perf.pipeline_profile import CPU_WARNING, benchmark_pipeline
    from models.perf.profiled_pipelines import resolve_model
    from models.perf.report_files import records_to_json, write_json
    from models.perf.timing import TimingSettings
    from models.sampling.settings import sampling_settings_for

    timing = TimingSettings.resolve(resolve_device_option(device), dtype, warmup, repeats)
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
    with status(Printer(), "timing the pipeline") as progress:
        record = benchmark_pipeline(
            target, sampling, timing, batch_size=batch_size, decode=decode, peak_tflops=peak_tflops, kernels=kernels,
            progress=progress,
        )
    if json_path == STDOUT:
        typer.echo(records_to_json([record]), nl=False)
        return
    if json_path is not None:
        write_json([record], json_path)
    print_pipeline_report(record, stdout_console())
