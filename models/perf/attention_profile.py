"""Measured cost of linear vs softmax attention: FlopCounterMode counts, latency and peak memory.

`profile_attention(cases, timing)` returns one JSON-ready record per configuration, with the closed forms
of `models.perf.flops` next to what `torch.utils.flop_counter.FlopCounterMode` counts on the real modules of
this package (attention core, attention module, transformer block, one AR step of the model), and,
when `timing` is given, the latency and peak memory of each attention module (clocks in `models.perf.timing`).
`models.perf.report_files` turns the records into JSON, CSV and a plot. `lina profile attention` is a thin wrapper.

Counting runs on the meta device by default: only shapes flow through the modules, so any size is
counted instantly and without memory, and PyTorch's SDPA takes its math path there (plain bmm ops);
`models.perf.flop_counter` holds the counter and the formulas it lacks.
"""

import dataclasses
import statistics
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from models.errors import InvalidConfigError
from models.network.attention import LinearAttention, SoftmaxAttention, linear_attention
from models.network.config import TransformerConfig
from models.network.transformer import Block, LinaTransformer
from models.ops import fused_kernels
from models.perf.flop_counter import count_flops
from models.perf.flops import (
    FLOP_CONVENTION,
    MAC_CONVENTION,
    NOT_COUNTED,
    ARStep,
    Attention,
    AttentionShape,
    MacCount,
    ar_step_macs,
    block_macs,
    config_for_resolution,
    core_macs,
    crossover_seq_len,
    decoder_shape,
    image_grid_of_layout,
    module_macs,
)
from models.perf.timing import TimingSettings, cpu_times, cuda_peak_memory, cuda_times, environment, percentiles_ms
from models.pipeline.devices import dtype_name
from models.sampling.sampler import gather_tokens

Scope = Literal["core", "module", "block", "ar_step"]
SCOPES: tuple[Scope, ...] = ("core", "module", "block", "ar_step")
ATTENTIONS: tuple[Attention, ...] = ("linear", "softmax")


# ----------------------------------------------------------------------------------------------------
# What to profile
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProfileCase:
    """One configuration: the attention call to profile and, when the model geometry is known, the model."""

    shape: AttentionShape
    task: str | None = None
    resolution: int | None = None
    config: TransformerConfig | None = None  # with ar_step, enables the AR-step scope
    ar_step: ARStep | None = None

    @property
    def has_model(self) -> bool:
        return self.config is not None and self.ar_step is not None


def cases_from_resolutions(
    resolutions: list[int],
    task: Literal["t2i", "c2i"] = "t2i",
    dim: int | None = None,
    heads: int | None = None,
    batch: int = 1,
    ar_step_index: int | None = None,
) -> list[ProfileCase]:
    """Decoder-block attention at each resolution of the task's geometry (t2i 1024 px → N = 5120).

    `dim`/`heads` override the model's width and heads for the layer scopes; the AR step is then left
    out, because the released architecture has no such variant.
    """
    cases = []
    for resolution in resolutions:
        config = config_for_resolution(task, resolution)
        native = decoder_shape(config, batch)
        shape = AttentionShape(native.seq_len, dim or native.dim, heads or native.heads, batch, native.image_grid)
        is_native = (shape.dim, shape.heads) == (native.dim, native.heads)
        step = ARStep.of_schedule(config, ar_step_index) if is_native else None
        cases.append(ProfileCase(shape, task, resolution, config if is_native else None, step))
    return cases


def cases_from_seq_lens(
    seq_lens: list[int], dim: int | None = None, heads: int | None = None, batch: int = 1
) -> list[ProfileCase]:
    """Attention at raw sequence lengths; width and heads default to the released t2i 1024 model's.

    N that fits LINA's decoder layout (s² image + (s/2)² context tokens, e.g. 320, 1280, 5120) gets the
    decoder module (KV gate + depthwise conv); any other N the encoder-block module (neither).
    """
    native = decoder_shape(config_for_resolution("t2i", 1024))
    return [
        ProfileCase(AttentionShape(n, dim or native.dim, heads or native.heads, batch, image_grid_of_layout(n)))
        for n in seq_lens
    ]


# ----------------------------------------------------------------------------------------------------
# The real modules, and FlopCounterMode on them
# ----------------------------------------------------------------------------------------------------


def build_attention(shape: AttentionShape, attention: Attention) -> nn.Module:
    """The package's attention module for `shape` (decoder mode when it has an image grid), on the current device."""
    if attention == "softmax":
        return SoftmaxAttention(shape.dim, shape.heads)
    if shape.image_grid is None:
        return LinearAttention(shape.dim, shape.heads)
    return LinearAttention(shape.dim, shape.heads, gate_len=shape.seq_len, token_grid=shape.image_grid)


def build_fused_attention(shape: AttentionShape, attention: Attention) -> nn.Module:
    """`build_attention` with the fused Triton ops of `models.ops` (attention core and conv branch; CUDA only)."""
    module = build_attention(shape, attention)
    module.kernels = fused_kernels()
    return module


def _build_block(shape: AttentionShape, attention: Attention) -> nn.Module:
    if attention == "linear" and shape.image_grid is not None:
        return Block(shape.dim, shape.heads, attention, gate_len=shape.seq_len, token_grid=shape.image_grid)
    return Block(shape.dim, shape.heads, attention)


def _core_call(shape: AttentionShape, attention: Attention, device: torch.device) -> Callable[[], object]:
    """The attention core alone, on float32 [B, H, N, d] inputs (what both modules hand to it)."""
    q, k, v = (torch.rand(shape.batch, shape.heads, shape.seq_len, shape.head_dim, device=device) for _ in range(3))
    if attention == "softmax":
        return lambda: F.scaled_dot_product_attention(q, k, v)
    gates = (None, None)
    if shape.image_grid is not None:
        gates = tuple(torch.ones(1, shape.heads, shape.seq_len, 1, device=device) for _ in range(2))
    return lambda: linear_attention(q, k, v, *gates)


def _ar_step_flops(model: LinaTransformer, step: ARStep, batch: int, device: torch.device) -> int:
    """Count the calls of one AR step of `models.sampling.sampler.sample_latents`: embed the canvas, run the image
    encoder on [cond ; uncond] rows, project z for the head once, then run the head `diffusion_steps` times
    on the predicted tokens (the time embeddings are computed once per generation, not per step).

    The head calls all have the same shapes, so one is counted and multiplied (FlopCounterMode's
    per-op Python overhead would otherwise dominate the run time).
    """
    config = model.config
    rows, tokens, width = batch * step.rows_per_image, config.num_image_tokens, config.width
    canvas = torch.zeros(batch, config.image_dim, *config.latent_size, device=device)
    mask = torch.ones(batch, tokens, 1, device=device)
    context = torch.zeros(rows, config.num_context_tokens, width, device=device)  # encoded once per image
    order = torch.arange(tokens, device=device).expand(rows, tokens)
    known_ids, pred_ids = order[:, : step.known], order[:, step.known : step.known + step.predicted]
    positions = model.image_positions(device, torch.float32)

    def transformer() -> torch.Tensor:
        embedded = model.embed_canvas(canvas, mask, positions).repeat(step.rows_per_image, 1, 1)  # [rows, L, D]
        return gather_tokens(model.image_encoder(embedded, context, known_ids), pred_ids)  # [rows, m, D]

    head = model.image_decoder
    z = transformer()
    noisy = torch.zeros(rows, step.predicted, config.token_dim, device=device)
    cond = torch.zeros(rows, step.predicted, config.head_arch.width, device=device)
    head_condition = count_flops(lambda: head.time_cond_embed.condition_proj(z))
    head_call = count_flops(lambda: head.velocity(noisy, cond))
    return count_flops(transformer) + head_condition + step.diffusion_steps * head_call


@torch.inference_mode()
def measured_flops(case: ProfileCase, attention: Attention, scope: Scope, device: str | torch.device = "meta") -> int:
    """FlopCounterMode's count (FLOPs) of one scope, run on `device` (float32 inputs).

    Off the meta device the modules keep PyTorch's default initialisation; values do not change counts.
    """
    device = torch.device(device)
    shape = case.shape
    with torch.device(device):
        if scope == "core":
            return count_flops(_core_call(shape, attention, device))
        if scope == "ar_step":
            model = LinaTransformer(_model_config(case).replace(attention=attention))
            return _ar_step_flops(model, case.ar_step, shape.batch, device)
        module = build_attention(shape, attention) if scope == "module" else _build_block(shape, attention)
        x = torch.zeros(shape.batch, shape.seq_len, shape.dim)
        return count_flops(lambda: module(x))


def _model_config(case: ProfileCase) -> TransformerConfig:
    if not case.has_model:
        raise InvalidConfigError(
            "the AR-step scope needs the model geometry: profile by --resolution with the model's own dim and heads"
        )
    return case.config


def closed_form(case: ProfileCase, attention: Attention, scope: Scope) -> MacCount:
    """The `models.perf.flops` closed form of one scope."""
    if scope == "core":
        return core_macs(case.shape, attention)
    if scope == "module":
        return module_macs(case.shape, attention)
    if scope == "block":
        return block_macs(case.shape, attention)
    return ar_step_macs(_model_config(case), case.ar_step, attention, case.shape.batch)


# ----------------------------------------------------------------------------------------------------
# Latency and memory
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TimedVariant:
    """One attention implementation to time (one entry of TIMED_VARIANTS)."""

    key: str  # the record key ("linear" and "softmax" also hold the FLOP counts)
    label: str
    attention: Attention
    build: Callable[[AttentionShape, Attention], nn.Module]
    fp32: bool  # weights and inputs in float32 whatever the requested dtype
    cuda_only: bool = False


TIMED_VARIANTS = (
    TimedVariant("softmax", "softmax (PyTorch SDPA)", "softmax", build_attention, fp32=False),
    TimedVariant("linear_fp32", "linear, reference style (all fp32 matmuls)", "linear", build_attention, fp32=True),
    # The model's reference ops (the CPU path): projections in the requested dtype, plain fp32 core.
    TimedVariant("linear", "linear, ours (reference kernels)", "linear", build_attention, fp32=False),
    # The model's CUDA default: the fused Triton attention core and conv branch.
    TimedVariant(
        "linear_fused", "linear, ours (fused kernels)", "linear", build_fused_attention, fp32=False, cuda_only=True
    ),
)


def _ready_module(
    variant: TimedVariant, shape: AttentionShape, device: torch.device, dtype: torch.dtype, generator: torch.Generator
) -> nn.Module:
    """Build on the meta device, materialise on `device` and fill with seeded noise (values do not
    matter for timing; this keeps the global RNG untouched)."""
    with torch.device("meta"):
        module = variant.build(shape, variant.attention)
    module = module.to_empty(device=device).to(dtype)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.normal_(0, shape.dim**-0.5, generator=generator)
    return module.eval()


@torch.inference_mode()
def time_variant(variant: TimedVariant, shape: AttentionShape, timing: TimingSettings) -> dict[str, Any]:
    """Median and p10/p90 latency of one forward call, and on CUDA its peak memory.

    CUDA calls are timed with CUDA events and one synchronisation at the end; CPU calls with
    `time.perf_counter`. Peak memory: `max_memory_allocated` over one call after
    `reset_peak_memory_stats` (weights and input included), and `forward_mem_mb` above what was
    allocated before the call. Running out of memory is recorded, not raised, so a sweep goes on.
    """
    device = timing.device
    dtype = torch.float32 if variant.fp32 else timing.dtype
    generator = torch.Generator(device).manual_seed(0)
    record: dict[str, Any] = {"dtype": dtype_name(dtype), "implementation": variant.label}
    try:
        module = _ready_module(variant, shape, device, dtype, generator)
        x = torch.randn(shape.batch, shape.seq_len, shape.dim, device=device, dtype=dtype, generator=generator)
        for _ in range(timing.warmup):
            module(x)
        if device.type == "cuda":
            with torch.cuda.device(device):  # events and syncs must be on the module's device
                record |= cuda_peak_memory(lambda: module(x), device)
                times = cuda_times(lambda: module(x), timing.repeats)
        else:
            times = cpu_times(lambda: module(x), timing.repeats)
    except torch.cuda.OutOfMemoryError:
        return record | {"error": "out of memory"}
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()
    p10, p90 = percentiles_ms(times)
    latency = {"latency_ms": statistics.median(times), "latency_p10_ms": p10, "latency_p90_ms": p90}
    return record | latency | {"repeats": len(times)}


# ----------------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------------


def _scope_record(case: ProfileCase, attention: Attention, scope: Scope, count_device: str) -> dict[str, Any]:
    count = closed_form(case, attention, scope)
    measured = measured_flops(case, attention, scope, count_device)
    return {
        "macs": count.macs,
        "flops": count.flops,
        "measured_flops": measured,
        "counter_agrees": measured == count.flops,
        "breakdown_macs": count.terms,
        "uncounted": count.uncounted,
    }


def profile_case(
    case: ProfileCase,
    timing: TimingSettings | None = None,
    count_device: str = "meta",
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """The record of one configuration (the `--json` schema of `lina profile attention`).

    `linear` and `softmax` hold the module scope at top level (`macs`, `flops` = 2 × MACs,
    `measured_flops` from FlopCounterMode) and the other scopes under `core`, `block`, `ar_step`;
    with `timing`, also `latency_ms` (median), `latency_p10_ms`, `latency_p90_ms` and on CUDA
    `peak_mem_mb`. `linear_fp32` holds the reference-style timing when the dtype is not fp32.
    """
    shape = case.shape
    scopes = SCOPES if case.has_model else SCOPES[:-1]
    record: dict[str, Any] = {
        "task": case.task,
        "resolution": case.resolution,
        "seq_len": shape.seq_len,
        "dim": shape.dim,
        "heads": shape.heads,
        "head_dim": shape.head_dim,
        "batch": shape.batch,
        "image_tokens": shape.image_tokens,
        "layout": "decoder" if shape.image_grid is not None else "encoder",
        "conventions": {"macs": MAC_CONVENTION, "flops": FLOP_CONVENTION, "not_counted": NOT_COUNTED},
        "flop_counter_device": count_device,
    }
    for attention in ATTENTIONS:
        if progress is not None:
            progress(f"counting {attention} attention at N={shape.seq_len}")
        by_scope = {scope: _scope_record(case, attention, scope, count_device) for scope in scopes}
        record[attention] = by_scope.pop("module") | by_scope
    record["ratio_macs"] = {
        scope: scope_macs(record, "linear", scope) / scope_macs(record, "softmax", scope) for scope in scopes
    }
    image_fraction = Fraction(shape.image_tokens or 0, shape.seq_len)
    record["crossover_seq_len"] = {
        "core": crossover_seq_len(shape.dim, shape.heads, scope="core"),
        "module": crossover_seq_len(shape.dim, shape.heads, image_fraction, scope="module"),
    }
    if case.has_model:
        record["ar_step"] = dataclasses.asdict(case.ar_step)  # which step the `ar_step` scopes count
    if timing is not None:
        record["timing"] = {
            "device": str(timing.device), "dtype": dtype_name(timing.dtype),
            "warmup": timing.warmup, "repeats": timing.repeats,
        }
        record["environment"] = environment(timing.device)
        for variant in TIMED_VARIANTS:
            if variant.fp32 and timing.dtype == torch.float32:
                continue  # identical to the plain linear row
            if variant.cuda_only and timing.device.type != "cuda":
                continue
            if progress is not None:
                progress(f"timing {variant.label} at N={shape.seq_len}")
            record.setdefault(variant.key, {}).update(time_variant(variant, shape, timing))
    return record


def scope_counts(record: dict[str, Any], attention: Attention, scope: Scope) -> dict[str, Any] | None:
    """The counts of one scope in a record (the module scope sits at the top of `record[attention]`), or None."""
    counts = record[attention]
    if scope == "module":
        return counts
    return counts.get(scope)


def scope_macs(record: dict[str, Any], attention: Attention, scope: Scope) -> int | None:
    """MACs of one scope in a record, or None where the record has no such scope."""
    counts = scope_counts(record, attention, scope)
    return None if counts is None else counts["macs"]


def profile_attention(
    cases: list[ProfileCase],
    timing: TimingSettings | None = None,
    count_device: str = "meta",
    progress: Callable[[str], None] | None = None,
) -> list[dict[str, Any]]:
    """`profile_case` for each case, in order."""
    return [profile_case(case, timing, count_device, progress) for case in cases]
