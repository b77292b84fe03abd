"""End-to-end timing of the generation pipeline, phase by phase (what `lina profile pipeline` reports).

`benchmark_pipeline` builds a model (`models.perf.profiled_pipelines`: loaded, or a released architecture with
random weights), then runs the real sampler, `models.sampling.sampler.sample_latents`, on a batch of
random conditions and times each phase of it through the sampler's `PhaseTimer` hook: conditioning,
context encoding, and per AR step the image encoder (its encoder half and decoder half apart, through
forward hooks on their first and last blocks) and the diffusion head; then the VAE decode. On CUDA the
phases are bracketed by CUDA events and read after one synchronisation per run; on the CPU by
`time.perf_counter`. FLOPs come from the closed forms of `models.perf.flops`, summed over the real schedule.

Protocol (the paper's latency and memory protocol, as the authors' evaluation scripts run it): the text encoder is excluded, so text-to-image runs take random
precomputed Phi-2 features; the VAE decode is included; `warmup` untimed runs come first (they also
capture the head's CUDA graphs); then `repeats` timed runs, each ending with a synchronisation; peak
memory is read after `reset_peak_memory_stats`. Weights do not change the time, so a released
architecture can be timed with random weights, without downloading anything.

Phases of one run, in ms: CONDITIONING + context + image_encoder + head + VAE_DECODE + OTHER = TOTAL
(OTHER is the rest: generation orders, canvas set-up, Python between phases). ENCODER_HALF and
DECODER_HALF lie inside image_encoder; AR_LOOP = image_encoder + head; SAMPLING = TOTAL − VAE_DECODE.
"""

import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from functools import partial
from typing import Any

import torch

from models.errors import InvalidConfigError
from models.network.config import TransformerConfig
from models.network.embeddings import TIMESTEP_FEATURES
from models.network.transformer import ImageEncoder, LinaTransformer
from models.perf.flops import (
    FLOP_CONVENTION,
    NOT_COUNTED,
    ARStep,
    AttentionShape,
    MacCount,
    ar_step_macs,
    block_macs,
    time_embedding_macs,
)
from models.perf.profiled_pipelines import RANDOM_WEIGHTS_NOTE, BenchmarkModel, PipelineParts, build_pipeline
from models.perf.timing import MIB, TimingSettings, environment, percentiles_ms
from models.pipeline.devices import dtype_name
from models.sampling.cuda_graphs import HeadGraphCache
from models.sampling.sampler import (
    PHASE_CONTEXT,
    PHASE_HEAD,
    PHASE_IMAGE_ENCODER,
    ar_schedule,
    cfg_scales,
    sample_latents,
)
from models.sampling.settings import SamplingSettings

CONDITIONING = "conditioning"
ENCODER_HALF, DECODER_HALF = "encoder_half", "decoder_half"
VAE_DECODE, OTHER, TOTAL = "vae_decode", "other", "total"
AR_LOOP, SAMPLING = "ar_loop", "sampling"
# Phases that tile a run: their times add up to TOTAL.
TILING_PHASES = (CONDITIONING, PHASE_CONTEXT, PHASE_IMAGE_ENCODER, PHASE_HEAD, VAE_DECODE, OTHER)
# Every reported phase, in report order.
PHASES = (
    CONDITIONING, PHASE_CONTEXT, PHASE_IMAGE_ENCODER, ENCODER_HALF, DECODER_HALF, PHASE_HEAD, AR_LOOP,
    VAE_DECODE, OTHER, SAMPLING, TOTAL,
)

CPU_WARNING = "timed on the CPU: these numbers are not representative of GPU performance"


# ----------------------------------------------------------------------------------------------------
# FLOPs of one run
# ----------------------------------------------------------------------------------------------------


def pipeline_flops(config: TransformerConfig, settings: SamplingSettings, batch: int) -> dict[str, int]:
    """FLOPs (2 × MACs, `models.perf.flops`' convention) of each phase of one run on `batch` images.

    Conditioning: the text projection of the condition and null rows (labels cost no multiply-adds).
    Context: the frame embedding once, then the video encoder's blocks on [cond ; uncond] rows when any
    step is guided. The AR loop: `ar_step_macs` of every step of the schedule, and the head's time
    embeddings (once per CFG row count; counted with the head). The VAE is not counted.
    """
    counts = ar_schedule(config.num_image_tokens, settings.ar_steps)
    scales = cfg_scales(len(counts), settings.cfg, settings.cfg_min)
    width, arch = config.width, config.video_encoder_arch
    context_rows = batch * (2 if any(scale > 1 for scale in scales) else 1)
    context_len = config.condition_len + config.num_context_tokens
    context_shape = AttentionShape(context_len, width, arch.num_heads, context_rows)
    frame_embedding = TIMESTEP_FEATURES * width + width * width
    context = block_macs(context_shape, config.attention).times(arch.depth).macs + frame_embedding
    conditioning = 2 * batch * config.condition_len * config.text_token_dim * width if config.is_text_conditioned else 0

    row_counts = {2 if scale > 1 else 1 for scale in scales}
    loop = sum(
        (time_embedding_macs(config, rows * batch, settings.diffusion_steps) for rows in row_counts), MacCount({})
    )
    known = 0
    for count, scale in zip(counts, scales):
        step = ARStep(known, count, settings.diffusion_steps, 2 if scale > 1 else 1)
        loop += ar_step_macs(config, step, config.attention, batch)
        known += count
    terms = loop.terms
    image_encoder = terms["canvas_embed"] + terms["encoder_blocks"] + terms["decoder_blocks"]
    macs = {
        CONDITIONING: conditioning,
        PHASE_CONTEXT: context,
        PHASE_IMAGE_ENCODER: image_encoder,
        ENCODER_HALF: terms["encoder_blocks"],
        DECODER_HALF: terms["decoder_blocks"],
        PHASE_HEAD: terms["head"],
        AR_LOOP: image_encoder + terms["head"],
        SAMPLING: conditioning + context + image_encoder + terms["head"],
    }
    return {name: 2 * value for name, value in macs.items()}


# ----------------------------------------------------------------------------------------------------
# Clocks and runs
# ----------------------------------------------------------------------------------------------------


class PhaseClock:
    """Times named phases of one run; a `models.sampling.sampler.PhaseTimer`.

    On CUDA each span is a pair of events, read after one synchronisation in `read`, so timing adds no
    host-device syncs; on the CPU, `time.perf_counter`. A phase entered repeatedly (once per AR step)
    accumulates.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self._open: dict[str, Any] = {}
        self._spans: dict[str, list[tuple[Any, Any]]] = defaultdict(list)

    def _mark(self) -> Any:
        if not self.cuda:
            return time.perf_counter()
        event = torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def begin(self, name: str) -> None:
        self._open[name] = self._mark()

    def end(self, name: str) -> None:
        self._spans[name].append((self._open.pop(name), self._mark()))

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.begin(name)
        try:
            yield
        finally:
            self.end(name)

    def read(self) -> dict[str, float]:
        """Milliseconds per phase (waits for the device first)."""
        if self.cuda:
            torch.cuda.synchronize()
        elapsed = (lambda a, b: a.elapsed_time(b)) if self.cuda else (lambda a, b: (b - a) * 1000)
        return {name: sum(elapsed(start, end) for start, end in spans) for name, spans in self._spans.items()}


@contextmanager
def timed_halves(image_encoder: ImageEncoder, clock: PhaseClock) -> Iterator[None]:
    """Time the encoder half and the decoder half of the image encoder with forward hooks on the first and
    last block of each: the blocks' computations are untouched, so results are too."""
    depth = image_encoder.encoder_depth
    halves = {ENCODER_HALF: image_encoder.blocks[:depth], DECODER_HALF: image_encoder.blocks[depth:]}
    handles = []
    for name, blocks in halves.items():
        if len(blocks):
            handles.append(blocks[0].register_forward_pre_hook(lambda module, args, name=name: clock.begin(name)))
            handles.append(blocks[-1].register_forward_hook(lambda module, args, out, name=name: clock.end(name)))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def random_conditions(
    transformer: LinaTransformer, batch: int, generator: torch.Generator
) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
    """A call that embeds a batch of random conditions and their null conditions ([B, P, D] each).

    Text-to-image: random precomputed Phi-2 features of a full-length prompt ([P, text_dim] rows), the null
    condition being the checkpoint's null rows (the empty negative prompt); class-conditional: random labels
    and the null class. Both conditions are embedded, as `LinaPipeline` does.
    """
    config = transformer.config
    parameter = next(transformer.parameters())
    device, dtype = parameter.device, parameter.dtype
    if config.is_text_conditioned:
        rows = (config.text_token_len, config.text_token_dim)
        features = [torch.randn(rows, generator=generator, device=device, dtype=dtype) for _ in range(batch)]
        empty = [torch.empty(0, config.text_token_dim, device=device, dtype=dtype) for _ in range(batch)]
        return lambda: (transformer.condition_tokens_from_text(features), transformer.condition_tokens_from_text(empty))
    labels = torch.randint(config.num_classes, (batch,), generator=generator, device=device)
    return lambda: transformer.label_conditions(labels)


def _run(
    parts: PipelineParts,
    conditions: Callable[[], tuple[torch.Tensor, torch.Tensor]],
    settings: SamplingSettings,
    seeds: list[int],
    decode: bool,
    head_graphs: HeadGraphCache | None,
) -> dict[str, float]:
    """One generation of len(seeds) images; milliseconds per phase, derived phases included."""
    device = next(parts.transformer.parameters()).device
    clock = PhaseClock(device)
    generators = [torch.Generator(device).manual_seed(seed) for seed in seeds]
    vae_dtype = next(parts.vae.parameters()).dtype
    with timed_halves(parts.transformer.image_encoder, clock), clock.phase(TOTAL):
        with clock.phase(CONDITIONING):
            condition, null_condition = conditions()
        latents = sample_latents(
            parts.transformer, parts.scheduler, condition, null_condition, generators, settings,
            head_graphs=head_graphs, timer=clock,
        )
        if decode:
            with clock.phase(VAE_DECODE):
                parts.vae.decode_latents(latents.to(vae_dtype))  # what LinaPipeline.decode runs before uint8/PIL
    times = clock.read()
    times[OTHER] = times[TOTAL] - sum(times.get(name, 0.0) for name in TILING_PHASES if name != OTHER)
    times[AR_LOOP] = times[PHASE_IMAGE_ENCODER] + times[PHASE_HEAD]
    times[SAMPLING] = times[TOTAL] - times.get(VAE_DECODE, 0.0)
    return {name: times[name] for name in PHASES if name in times}


def _statistics(values: list[float]) -> dict[str, float]:
    p10, p90 = percentiles_ms(values)
    return {"median": statistics.median(values), "p10": p10, "p90": p90, "min": min(values), "max": max(values)}


# ----------------------------------------------------------------------------------------------------
# The benchmark
# ----------------------------------------------------------------------------------------------------


def _check_options(batch_size: int, peak_tflops: float | None) -> None:
    if batch_size < 1:
        raise InvalidConfigError(f"batch size {batch_size}: must be ≥ 1")
    if peak_tflops is not None and not peak_tflops > 0:
        raise InvalidConfigError(f"peak rate {peak_tflops} TFLOP/s: must be a positive number")


def _measure(
    run: Callable[[], dict[str, float]], timing: TimingSettings, progress: Callable[[str], None]
) -> tuple[list[dict[str, float]], dict[str, float] | None]:
    """Warm-up runs, then the timed runs; on CUDA also the memory (MB) allocated before them and the peaks."""
    cuda = timing.device.type == "cuda"
    # Events, synchronisations and memory statistics all refer to the current CUDA device.
    with torch.cuda.device(timing.device) if cuda else nullcontext():
        for index in range(timing.warmup):
            progress(f"warm-up run {index + 1} of {timing.warmup}")
            run()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            allocated = torch.cuda.memory_allocated()  # weights, inputs, captured graphs
        runs = []
        for index in range(timing.repeats):
            progress(f"timed run {index + 1} of {timing.repeats}")
            runs.append(run())
        if not cuda:
            return runs, None
        memory = {
            "allocated_before_runs": allocated / MIB,
            "peak_allocated": torch.cuda.max_memory_allocated() / MIB,
            "peak_reserved": torch.cuda.max_memory_reserved() / MIB,
        }
    return runs, memory


@torch.inference_mode()
def time_pipeline(
    parts: PipelineParts,
    settings: SamplingSettings,
    timing: TimingSettings,
    *,
    batch_size: int = 1,
    decode: bool = True,
    peak_tflops: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Time `timing.warmup` + `timing.repeats` generations of `batch_size` images with `parts`.

    Returns the JSON-ready record of `benchmark_pipeline`, without `model` and `weights`.
    """
    _check_options(batch_size, peak_tflops)
    config, device = parts.transformer.config, timing.device
    conditions = random_conditions(parts.transformer, batch_size, torch.Generator(device).manual_seed(0))
    # The fast path `LinaPipeline` takes on CUDA: the head loop replayed from CUDA graphs.
    head_graphs = HeadGraphCache() if device.type == "cuda" else None
    run = partial(_run, parts, conditions, settings, list(range(batch_size)), decode, head_graphs)
    runs, memory = _measure(run, timing, progress or (lambda text: None))

    phases = {name: _statistics([r[name] for r in runs]) for name in runs[0]}
    median_s = {name: stats["median"] / 1000 for name, stats in phases.items()}
    flops = pipeline_flops(config, settings, batch_size)
    achieved = {name: flops[name] / median_s[name] / 1e12 for name in flops if median_s[name] > 0}
    mfu = achieved[SAMPLING] / peak_tflops if peak_tflops is not None and SAMPLING in achieved else None
    return {
        "task": config.task,
        "image_size": list(config.image_size),
        "attention": config.attention,
        "batch_size": batch_size,
        "sampling": {
            "ar_steps": settings.ar_steps,
            "ar_steps_run": len(ar_schedule(config.num_image_tokens, settings.ar_steps)),
            "diffusion_steps": settings.diffusion_steps,
            "cfg": settings.cfg,
            "cfg_min": settings.cfg_min,
        },
        "decode": decode,
        "timing": {
            "device": str(device),
            "dtype": dtype_name(timing.dtype),
            "vae_dtype": dtype_name(next(parts.vae.parameters()).dtype),
            "warmup": timing.warmup,
            "repeats": timing.repeats,
            "clock": "CUDA events" if device.type == "cuda" else "time.perf_counter",
            "head_cuda_graphs": head_graphs is not None,
            "kernels": parts.transformer.kernels_name,
        },
        "environment": environment(device),
        "phases_ms": phases,
        "runs_ms": runs,
        "per_image_ms": phases[TOTAL]["median"] / batch_size,
        "images_per_s": batch_size / median_s[TOTAL],
        "memory_mb": memory,
        "flops": flops,
        "achieved_tflops": achieved,
        "peak_tflops": peak_tflops,
        "mfu": mfu,
        "conventions": {"flops": FLOP_CONVENTION, "not_counted": f"{NOT_COUNTED}; the VAE decode is not counted"},
        "notes": _notes(config, decode),
        "warnings": [CPU_WARNING] if device.type == "cpu" else [],
    }


def benchmark_pipeline(
    model: BenchmarkModel,
    settings: SamplingSettings,
    timing: TimingSettings,
    *,
    batch_size: int = 1,
    decode: bool = True,
    peak_tflops: float | None = None,
    kernels: str = "auto",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Build `model` on `timing.device` in `timing.dtype` with the `kernels` op set and time it (`time_pipeline`).

    The record: `model`, `weights` ("random" or "loaded"), `task`, `image_size`, `attention`, `batch_size`,
    `sampling`, `decode`, `timing`, `environment`; `phases_ms` {phase: median, p10, p90, min, max} over
    the timed runs and `runs_ms` (each run's phases, see the module docstring); `per_image_ms` and
    `images_per_s` from the median total; `memory_mb` (CUDA: allocated before the runs, peak allocated
    and reserved over them; None on the CPU); `flops` per phase (`pipeline_flops`), `achieved_tflops`
    per phase from the medians, `peak_tflops` and `mfu` (achieved sampling rate / peak, None without a
    peak); `notes` and `warnings` (lines for the user).
    """
    _check_options(batch_size, peak_tflops)
    if progress is not None:
        progress("building the model with random weights" if model.random_init else "loading the model")
    parts = build_pipeline(model, timing.device, timing.dtype, kernels)
    if timing.device.type == "cuda":
        torch.cuda.empty_cache()  # a dropped text encoder's memory goes back before anything is measured
    record = time_pipeline(
        parts, settings, timing, batch_size=batch_size, decode=decode, peak_tflops=peak_tflops, progress=progress
    )
    if model.random_init:
        record["notes"].append(RANDOM_WEIGHTS_NOTE)
    return {"model": model.name, "weights": "random" if model.random_init else "loaded", **record}


def _notes(config: TransformerConfig, decode: bool) -> list[str]:
    notes = []
    if config.is_text_conditioned:
        notes.append(
            "text encoder excluded (the paper's latency protocol): random precomputed Phi-2 features "
            f"[{config.text_token_len}, {config.text_token_dim}] per image stand in for it"
        )
    if decode:
        notes.append("VAE decode: vae.decode_latents one image at a time, as LinaPipeline.decode runs it before "
                     "its uint8/PIL step")
    return notes
