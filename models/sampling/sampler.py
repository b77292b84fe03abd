"""The set-by-set autoregressive sampler with a per-token flow-matching head (docs/architecture.md, "Sampling").

Randomness contract: image i of a batch owns `generators[i]`, and draws from it in the reference order —
one uniform [1, L, 1] in the compute dtype for its generation order, then one normal draw of the whole
latent canvas [1, C, H, W] per AR step. So an image's random numbers never depend on its batch (only
batched kernels' rounding can), and `seed S` on one image reproduces the authors' pipeline called with
`torch.Generator(device).manual_seed(S)`.
Shapes: B images, L tokens, n tokens predicted this step, p²C values per token, Lv context tokens.
"""

import math
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from functools import partial
from typing import Protocol

import torch

from models.network.diffusion_head import DiffusionHead
from models.network.embeddings import patchify, unpatchify
from models.network.transformer import LinaTransformer
from models.sampling.cuda_graphs import HeadGraphCache
from models.sampling.scheduler import FlowMatchEulerScheduler
from models.sampling.settings import SamplingSettings

# The phases `sample_latents` shows a `PhaseTimer` (`models.perf.pipeline_profile` times them).
PHASE_CONTEXT = "context"  # encode_context, once per call
PHASE_IMAGE_ENCODER = "image_encoder"  # per AR step: canvas embedding, image encoder, gather of z
PHASE_HEAD = "head"  # per AR step: fresh noise, every diffusion step, writing the tokens into the canvas

# On the fused kernels each head call's rows (rows·B·n: CFG rows × images × tokens this step) are padded with zero
# tokens towards a multiple of this, so the AR steps of a 1024-px image share 7 CUDA graphs instead of capturing
# 51 (docs/performance.md, "Time to the first image"). A call reads all the head's weights whatever its row
# count, so fewer than this many extra rows cost next to nothing, and large batches are not padded at all. A
# head token depends on its own row only, so the padding leaves the others' values; the longer matrices may
# still round differently, which the fused path allows and the reference path, bit-identical to the authors'
# code, does not: it never pads.
HEAD_PAD_ROWS = 16
# On the fused kernels, a head loop of at most this many rows per call computes the AdaLN statistics of all its
# diffusion steps before the loop, as one matmul per AdaLN (they depend on the condition and the step's time
# only, not on the noisy tokens): a call then reads the MLP weights alone instead of every AdaLN's as well,
# and the loop launches one matmul per AdaLN instead of one per AdaLN and step. Larger calls keep the per-step
# matmuls, which already run efficiently, and whose statistics for all steps would take memory (steps × rows ×
# (3·depth + 2)·W values: 393 MB in bf16 at 256 rows for the released 1536-wide, 6-block head and 25 steps).
HOIST_MAX_ROWS = 256


class PhaseTimer(Protocol):
    """Instrumentation hook of `sample_latents`: `phase(name)` brackets each PHASE_* phase.

    An implementation must not touch tensors and should not synchronise the device (it can record CUDA
    events instead), so timing never changes results and barely changes the time.
    """

    def phase(self, name: str) -> AbstractContextManager[object]: ...


class _Untimed:
    """The default timer: each phase costs one no-op context manager (three per AR step)."""

    def phase(self, name: str) -> AbstractContextManager[object]:
        return nullcontext()


def ar_schedule(num_tokens: int, ar_steps: int) -> list[int]:
    """Tokens predicted at each AR step: a cosine schedule with empty steps dropped; sums to `num_tokens`.

    Remaining-token counts are round(L·cos(π/2 · k/K)) for k = 0..K (round half to even, as numpy does).
    """
    remaining = [round(num_tokens * math.cos(0.5 * math.pi * k / ar_steps)) for k in range(ar_steps + 1)]
    counts = [remaining[k] - remaining[k + 1] for k in range(ar_steps)]
    return [count for count in counts if count > 0]


def cfg_scales(num_steps: int, cfg: float, cfg_min: float | None) -> list[float]:
    """Guidance at each non-empty AR step: cfg_min + (cfg − cfg_min)·(i+1)/K_eff (constant if cfg_min is None)."""
    start = cfg if cfg_min is None else cfg_min
    return [(cfg - start) * ((i + 1) / num_steps) + start for i in range(num_steps)]


def generation_orders(generators: list[torch.Generator], num_tokens: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Per-image random token order [B, L] (long), from a uniform draw in the compute dtype like the reference.

    Ties in low-precision uniforms are broken by `argsort` on the same [1, L, 1] shape the reference sorts.
    """
    orders = []
    for generator in generators:
        uniform = torch.empty(1, num_tokens, 1, dtype=dtype, device=device).uniform_(generator=generator)
        orders.append(uniform.argsort(dim=1)[:, :, 0])
    return torch.cat(orders)


def canvas_noise(generators: list[torch.Generator], latent_shape: tuple[int, ...], patch_size: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Fresh noise of every image's whole latent canvas, as tokens [B, L, p²C]."""
    noise = [torch.empty(1, *latent_shape, dtype=dtype, device=device).normal_(generator=g) for g in generators]
    return patchify(torch.cat(noise), patch_size)


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Rows `ids` [B, n] of x [B, L, K] → [B, n, K]."""
    return x.gather(1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def pad_tokens(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """x [R, n, K] with zero tokens appended up to the next multiple of `multiple` tokens (x itself when n is one)."""
    extra = -x.shape[1] % multiple
    return torch.nn.functional.pad(x, (0, 0, 0, extra)) if extra else x


def denoise_tokens(
    head: DiffusionHead,
    scheduler: FlowMatchEulerScheduler,
    sigmas: torch.Tensor,
    time_embeddings: torch.Tensor,
    scale: float | None,
    noise: torch.Tensor,
    z: torch.Tensor,
    hoist: bool = False,
) -> torch.Tensor:
    """Integrate the head's flow ODE for the tokens predicted at one AR step (docs/architecture.md, "Sampling").

    Args:
        head: the diffusion head.
        scheduler: its Euler scheduler; `sigmas` [S + 1] (CPU) from it.
        time_embeddings: `head.time_embeddings(timesteps, rows·B)` [S, rows·B, W] for the scheduler's
            timesteps, computed once per generation.
        scale: CFG scale, or None without guidance. With guidance z holds [cond ; uncond] rows and the
            velocity is v_u + s·(v_c − v_u), mixed in the compute dtype like the reference.
        noise: starting noise of the predicted tokens, [B, n, p²C].
        z: transformer outputs of the same tokens, [rows·B, n, D].
        hoist: compute every step's AdaLN statistics before the loop (`HOIST_MAX_ROWS`), from the same
            conditions; the matmuls are longer, so they may round differently.

    Returns:
        The denoised tokens [B, n, p²C].
    """
    rows = z.shape[0] // noise.shape[0]
    # The head's condition is condition_proj(z) + time embedding; z is fixed during the loop, so its
    # projection is computed once here rather than at every step (the same values either way).
    projected_z = head.time_cond_embed.condition_proj(z)  # [rows·B, n, W]
    if hoist:
        conditions = projected_z.unsqueeze(0) + time_embeddings.unsqueeze(2)  # [S, rows·B, n, W]
        projections = head.project_condition(torch.nn.functional.silu(conditions))  # each [S, rows·B, n, k·W]
    x = noise
    for j in range(len(time_embeddings)):
        if hoist:
            velocity = head.velocity_projected(x.repeat(rows, 1, 1), [p[j] for p in projections])
        else:
            velocity = head.velocity(x.repeat(rows, 1, 1), projected_z + time_embeddings[j].unsqueeze(1))
        if head.kernels.fused:  # the mix and the step as one kernel, rounding as they do
            x = head.kernels.guided_euler_step(velocity, sigmas[j], sigmas[j + 1], x, scale)
            continue
        if scale is not None:
            cond, uncond = velocity.chunk(2)
            velocity = uncond + (cond - uncond) * scale
        x = scheduler.step(velocity, sigmas[j], sigmas[j + 1], x)
    return x


@torch.inference_mode()
def sample_latents(
    transformer: LinaTransformer,
    scheduler: FlowMatchEulerScheduler,
    condition: torch.Tensor,
    null_condition: torch.Tensor,
    generators: list[torch.Generator],
    settings: SamplingSettings,
    progress: Callable[[int, int], None] | None = None,
    head_graphs: HeadGraphCache | None = None,
    timer: PhaseTimer | None = None,
    head_pad_rows: int | None = None,
    hoist_max_rows: int | None = None,
) -> torch.Tensor:
    """Generate latents for a batch of conditions.

    Args:
        transformer: the LINA transformer (its parameters set device and dtype).
        scheduler: the head's Euler scheduler.
        condition: condition tokens [B, P, D].
        null_condition: unconditional tokens [B, P, D] for CFG (null class or null text rows).
        generators: one generator per image, on the transformer's device.
        settings: AR steps, diffusion steps and guidance.
        progress: called as progress(steps_done, total_steps) after each AR step.
        head_graphs: on CUDA, replay the diffusion-head loop from CUDA graphs (identical results, no
            per-kernel launch overhead); None runs it eagerly.
        timer: sees the PHASE_* phases (`lina profile pipeline`); None times nothing.
        head_pad_rows: pad each head call's tokens with zeros to a multiple of max(1, head_pad_rows // (rows·B))
            (1: never); None takes `HEAD_PAD_ROWS` on the fused kernels and 1 on the reference kernels.
        hoist_max_rows: compute a head loop's AdaLN statistics for all its diffusion steps at once when a call has
            at most this many rows (0: never); None takes `HOIST_MAX_ROWS` on the fused kernels and 0 on the
            reference kernels, which stay bit-identical to the authors' code.

    Returns:
        Model-space latents [B, C, H/s, W/s] in the compute dtype.
    """
    config = transformer.config
    timer = timer or _Untimed()
    if head_pad_rows is None:
        head_pad_rows = HEAD_PAD_ROWS if transformer.kernels_name == "fused" else 1
    if hoist_max_rows is None:
        hoist_max_rows = HOIST_MAX_ROWS if transformer.kernels_name == "fused" else 0
    batch, dtype, device = condition.shape[0], condition.dtype, condition.device
    latent_shape = (config.image_dim, *config.latent_size)
    counts = ar_schedule(config.num_image_tokens, settings.ar_steps)
    scales = cfg_scales(len(counts), settings.cfg, settings.cfg_min)
    sigmas, timesteps = scheduler.sigmas(settings.diffusion_steps)
    timesteps = timesteps.to(device)
    head = transformer.image_decoder
    row_counts = {2 if scale > 1 else 1 for scale in scales}  # 2 = [cond ; uncond] under guidance
    time_embeddings = {rows: head.time_embeddings(timesteps, rows * batch) for rows in row_counts}

    # Conditional rows first, unconditional rows second, as in the reference's CFG batch.
    any_guidance = 2 in row_counts
    with timer.phase(PHASE_CONTEXT):
        context = transformer.encode_context(torch.cat([condition, null_condition]) if any_guidance else condition)
    positions = transformer.image_positions(device, dtype)

    orders = generation_orders(generators, config.num_image_tokens, dtype, device)  # [B, L]
    canvas = torch.zeros(batch, config.num_image_tokens, config.token_dim, dtype=dtype, device=device)
    mask = torch.ones(batch, config.num_image_tokens, 1, dtype=dtype, device=device)
    done = 0
    for step, (count, scale) in enumerate(zip(counts, scales)):
        guided = scale > 1
        known_ids, pred_ids = orders[:, :done], orders[:, done : done + count]  # [B, n], [B, count]
        rows = 2 if guided else 1
        with timer.phase(PHASE_IMAGE_ENCODER):
            tokens = transformer.embed_canvas(unpatchify(canvas, config.token_grid, config.patch_size), mask, positions)  # [B, L, D]
            z = transformer.image_encoder(
                tokens.repeat(rows, 1, 1), context[: rows * batch], known_ids.repeat(rows, 1)
            )  # [rows·B, L, D]
            z = gather_tokens(z, pred_ids.repeat(rows, 1))  # [rows·B, count, D]

        with timer.phase(PHASE_HEAD):
            noise = gather_tokens(canvas_noise(generators, latent_shape, config.patch_size, dtype, device), pred_ids)
            multiple = max(1, head_pad_rows // (rows * batch))  # so fewer than `head_pad_rows` rows are added
            noise, z = pad_tokens(noise, multiple), pad_tokens(z, multiple)
            solve = partial(
                denoise_tokens, head, scheduler, sigmas, time_embeddings[rows], scale if guided else None,
                hoist=z.shape[0] * z.shape[1] <= hoist_max_rows,
            )
            x = (solve(noise, z) if head_graphs is None else head_graphs.run(solve, noise, z))[:, :count]
            index = pred_ids.unsqueeze(-1)
            canvas.scatter_(1, index.expand(-1, -1, config.token_dim), x)
            mask.scatter_(1, index, 0)
        done += count
        if progress is not None:
            progress(step + 1, len(counts))
    return unpatchify(canvas, config.token_grid, config.patch_size)
