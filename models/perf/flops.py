"""Closed-form multiply-add counts of LINA's attention, block and AR step, linear vs softmax (the paper's fvcore count of one attention module; docs/performance.md).

Two conventions, always reported together:
- MACs, as fvcore's `FlopCountAnalysis` counts ("one fused multiply-add = one flop"); the paper's
  49.99 vs 128.85 G at N = 5120, D = 1536, H = 16 are MACs.
- FLOPs = 2 × MACs, as `torch.utils.flop_counter.FlopCounterMode` counts (mm = 2·m·n·k).
Both conventions count the same ops, the ones FlopCounterMode knows: matrix products and convolutions
(linear-layer weights, not biases; batched matmuls; the depthwise conv, padding positions included).
Elementwise work is in neither: the ReLU feature map, the KV gate, the N^-½ scaling, the normaliser's
division, the mean of k, softmax, biases, GELU/SiLU, residual adds, CFG mixing and the Euler update.
fvcore alone also counts normalisation layers (4-5 per element); they are left out here, which changes
the block and AR-step scopes by well under 0.1 % and the attention scopes (which have none) not at all.
The formulas below therefore equal what FlopCounterMode reports (tests/models/perf/test_attention_profile.py checks
this on the real modules); the largest omitted terms are reported separately as `uncounted`.

Letters: B batch, N sequence, D width, H heads, d = D / H, L image tokens (conv rows), Lv context tokens,
n known tokens, m tokens predicted this step, W head width.
"""

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Literal

from models.errors import InvalidConfigError
from models.network.attention import DW_CONV_KERNEL
from models.network.config import MLP_RATIO, TransformerConfig, released_transformer_config
from models.network.embeddings import TIMESTEP_FEATURES
from models.sampling.sampler import ar_schedule, cfg_scales
from models.sampling.settings import SAMPLING_DEFAULTS

Attention = Literal["linear", "softmax"]

MAC_CONVENTION = "MACs: one multiply-add = 1 (fvcore FlopCountAnalysis, the paper's numbers)"
FLOP_CONVENTION = "FLOPs: 2 × MACs (torch.utils.flop_counter.FlopCounterMode)"
NOT_COUNTED = (
    "neither convention counts elementwise work: ReLU feature map, KV gate, N^-½ scaling, normaliser "
    "division, mean of k, softmax, biases, GELU/SiLU, residual adds, CFG mix, Euler update; LayerNorm is "
    "left out too (fvcore would add 4-5 per element, < 0.1 % of a block)"
)


@dataclass(frozen=True)
class MacCount:
    """Named multiply-add terms (counted by both conventions) plus elementwise work neither counts."""

    terms: dict[str, int]
    uncounted: dict[str, int] = field(default_factory=dict)

    @property
    def macs(self) -> int:
        return sum(self.terms.values())

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def __add__(self, other: "MacCount") -> "MacCount":
        return MacCount(_merge(self.terms, other.terms), _merge(self.uncounted, other.uncounted))

    def times(self, factor: int) -> "MacCount":
        return MacCount(_scaled(self.terms, factor), _scaled(self.uncounted, factor))

    def grouped(self, name: str) -> "MacCount":
        """All terms summed under one name (for totals of a sub-network)."""
        return MacCount({name: self.macs}, dict(self.uncounted))


def _scaled(terms: dict[str, int], factor: int) -> dict[str, int]:
    return {key: value * factor for key, value in terms.items()}


def _merge(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    merged = dict(a)
    for key, value in b.items():
        merged[key] = merged.get(key, 0) + value
    return merged


# ----------------------------------------------------------------------------------------------------
# One attention layer
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttentionShape:
    """Sizes of one attention call: B × N tokens of width D in H heads.

    `image_grid` (h, w) is the decoder-block layout: a KV gate over the N positions and a depthwise conv
    over the last L = h·w rows on that grid. None is an encoder block (no gate, no conv). Softmax
    attention ignores it.
    """

    seq_len: int
    dim: int
    heads: int
    batch: int = 1
    image_grid: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if min(self.seq_len, self.dim, self.heads, self.batch) < 1:
            raise InvalidConfigError(
                f"seq_len={self.seq_len}, dim={self.dim}, heads={self.heads}, batch={self.batch}: all must be ≥ 1"
            )
        if self.dim % self.heads:
            raise InvalidConfigError(
                f"dim={self.dim} is not divisible by heads={self.heads}; pick a number of heads that divides it"
            )
        if self.image_grid is not None and not 0 < self.image_tokens <= self.seq_len:
            raise InvalidConfigError(f"image grid {self.image_grid} must hold 1..seq_len={self.seq_len} tokens")

    @property
    def head_dim(self) -> int:
        """d."""
        return self.dim // self.heads

    @property
    def image_tokens(self) -> int | None:
        """L, the rows of the depthwise conv (None for an encoder block)."""
        return None if self.image_grid is None else self.image_grid[0] * self.image_grid[1]


def projection_macs(s: AttentionShape) -> MacCount:
    """qkv: B·N·D·3D; proj: B·N·D·D (shared by both attentions)."""
    tokens = s.batch * s.seq_len
    return MacCount({"qkv": tokens * s.dim * 3 * s.dim, "proj": tokens * s.dim * s.dim})


def linear_core_macs(s: AttentionShape) -> MacCount:
    """The three matmuls of `linear_attention`: q·k̄ (B·H·N·d), kᵀv (B·H·d·N·d), q·S (B·H·N·d·d).

    The decoder's KV gate (k⊙key_scale, v⊙value_scale: 2·B·N·D multiplies) is elementwise, so uncounted.
    """
    heads_tokens = s.batch * s.heads * s.seq_len
    d = s.head_dim
    uncounted = {"kv_gate": 2 * s.batch * s.seq_len * s.dim} if s.image_grid is not None else {}
    terms = {"normaliser": heads_tokens * d, "kv_state": heads_tokens * d * d, "q_state": heads_tokens * d * d}
    return MacCount(terms, uncounted)


def softmax_core_macs(s: AttentionShape) -> MacCount:
    """QKᵀ and AV, B·H·N·N·d each; the exp of the B·H·N² scores is uncounted."""
    scores = s.batch * s.heads * s.seq_len * s.seq_len
    return MacCount({"scores": scores * s.head_dim, "weighted_sum": scores * s.head_dim}, {"softmax_exp": scores})


def core_macs(s: AttentionShape, attention: Attention) -> MacCount:
    return linear_core_macs(s) if attention == "linear" else softmax_core_macs(s)


def module_macs(s: AttentionShape, attention: Attention) -> MacCount:
    """qkv + core + proj, plus the decoder's depthwise conv (B·L·D·k², k = 5) for linear attention."""
    count = projection_macs(s) + core_macs(s, attention)
    if attention == "linear" and s.image_grid is not None:
        count += MacCount({"dw_conv": s.batch * s.image_tokens * s.dim * DW_CONV_KERNEL**2})
    return count


def mlp_macs(s: AttentionShape) -> MacCount:
    """fc1 (D → rD) and fc2 (rD → D) on B·N tokens, r = MLP_RATIO."""
    per_layer = s.batch * s.seq_len * s.dim * MLP_RATIO * s.dim
    return MacCount({"fc1": per_layer, "fc2": per_layer})


def block_macs(s: AttentionShape, attention: Attention) -> MacCount:
    """Post-norm block = attention module + MLP (its two LayerNorms are not counted, see the module docstring)."""
    return module_macs(s, attention) + mlp_macs(s)


def crossover_seq_len(dim: int, heads: int, image_fraction: Fraction = Fraction(0), scope: str = "module") -> int:
    """Smallest N at which linear attention needs fewer MACs than softmax (B cancels).

    Per token, linear − softmax = D·(2d + 1 + k²·f) − 2·N·D for the module (f = L/N, the conv rows;
    qkv and proj cancel) and D·(2d + 1) − 2·N·D for the core, so linear wins once N > (2d + 1 + k²·f)/2.
    The block has the same crossover as the module (the MLP is the same on both sides).
    """
    d = dim // heads
    conv = DW_CONV_KERNEL**2 * image_fraction if scope == "module" else 0
    return math.floor((2 * d + 1 + conv) / 2) + 1


# ----------------------------------------------------------------------------------------------------
# Model geometry
# ----------------------------------------------------------------------------------------------------


def config_for_resolution(task: Literal["t2i", "c2i"], resolution: int) -> TransformerConfig:
    """The released config of `task` with its image size changed to `resolution` (grids derived from it).

    t2i: 512 → N = 1280, 1024 → N = 5120 (the released models); 256 and 2048 keep the same VAE stride,
    patch and context layout. c2i: 256 → N = 320.
    """
    template = released_transformer_config(task, 1024 if task == "t2i" else 256)
    token = template.image_stride * template.patch_size
    context = template.image_stride * template.video_patch_size
    if resolution < context or resolution % context:
        raise InvalidConfigError(
            f"resolution {resolution}: the {task} geometry needs a positive multiple of {context} px "
            f"(VAE stride {template.image_stride} × context patch {template.video_patch_size})"
        )
    return template.replace(
        image_size=(resolution, resolution),
        image_base_size=(resolution // token, resolution // token),
        video_base_size=(1, resolution // context, resolution // context),
    )


def decoder_shape(config: TransformerConfig, batch: int = 1) -> AttentionShape:
    """The attention call of a decoder block: N = Lv + L tokens, conv over the L image rows."""
    arch = config.image_encoder_arch
    return AttentionShape(config.decoder_seq_len, arch.width, arch.num_heads, batch, config.token_grid)


def image_grid_of_layout(seq_len: int) -> tuple[int, int] | None:
    """(s, s) if N fits LINA's square decoder layout N = s² image + (s/2)² context tokens, else None."""
    side = math.isqrt(seq_len * 4 // 5)
    if side % 2 == 0 and side * side + (side // 2) ** 2 == seq_len:
        return (side, side)
    return None


# ----------------------------------------------------------------------------------------------------
# One AR step of the whole model
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ARStep:
    """One AR step: `known` tokens already generated, `predicted` generated now, by a head run
    `diffusion_steps` times on `rows_per_image` rows per image (2 with CFG: [cond ; uncond])."""

    known: int
    predicted: int
    diffusion_steps: int
    rows_per_image: int
    index: int | None = None
    num_steps: int | None = None

    @classmethod
    def of_schedule(cls, config: TransformerConfig, index: int | None = None) -> "ARStep":
        """Step `index` (default: the middle one) of the task's default schedule (SAMPLING_DEFAULTS)."""
        settings = SAMPLING_DEFAULTS[config.task]
        counts = ar_schedule(config.num_image_tokens, settings.ar_steps)
        index = len(counts) // 2 if index is None else index
        if not -len(counts) <= index < len(counts):
            raise InvalidConfigError(f"AR step {index}: the {config.task} schedule has steps 0..{len(counts) - 1}")
        index %= len(counts)
        guided = cfg_scales(len(counts), settings.cfg, settings.cfg_min)[index] > 1
        return cls(sum(counts[:index]), counts[index], settings.diffusion_steps, 2 if guided else 1, index, len(counts))


def head_call_macs(config: TransformerConfig, rows: int, tokens: int) -> MacCount:
    """One diffusion-head step, `DiffusionHead.velocity`, on `rows` rows of `tokens` tokens (docs/architecture.md, "Diffusion head").

    Its condition is given: `head_condition_macs` (once per AR step) and `time_embedding_macs` (once per
    generation) count what builds it.
    """
    head = config.head_arch
    width, token_dim = head.width, config.token_dim
    per_token = (
        token_dim * width  # patch_embed
        + head.depth * (3 * width * width + 2 * width * width)  # AdaLN (scale, shift, gate) + Projector
        + 2 * width * width  # final AdaLN (scale, shift)
        + width * token_dim  # head
    )
    return MacCount({"head": rows * tokens * per_token})


def head_condition_macs(config: TransformerConfig, rows: int, tokens: int) -> MacCount:
    """condition_proj(z) of the predicted tokens: once per AR step, shared by its diffusion steps."""
    width = config.head_arch.width
    return MacCount({"head": rows * tokens * (config.width * width + width * width)})


def time_embedding_macs(config: TransformerConfig, rows: int, diffusion_steps: int) -> MacCount:
    """timestep_proj of every diffusion step for `rows` rows: once per generation and CFG row count."""
    width = config.head_arch.width
    return MacCount({"head": rows * diffusion_steps * (TIMESTEP_FEATURES * width + width * width)})


def ar_step_macs(config: TransformerConfig, step: ARStep, attention: Attention, batch: int = 1) -> MacCount:
    """One AR step of `batch` images: canvas embedding, image encoder, the head's condition and its
    `diffusion_steps` calls.

    The context encoder and the head's time embeddings run once per generation, not per step, so they are
    not part of a step. The encoder half
    sees Lv + n tokens (no KV gate or conv), the decoder half Lv + L; both on batch · rows_per_image rows.
    """
    arch = config.image_encoder_arch
    rows = batch * step.rows_per_image
    encoder = AttentionShape(config.num_context_tokens + step.known, arch.width, arch.num_heads, rows)
    decoder = decoder_shape(config, rows)
    embed = MacCount({"canvas_embed": batch * config.num_image_tokens * config.token_dim * config.width})
    encoder_blocks = block_macs(encoder, attention).times(config.encoder_depth).grouped("encoder_blocks")
    decoder_blocks = block_macs(decoder, attention).times(arch.depth - config.encoder_depth).grouped("decoder_blocks")
    head = head_condition_macs(config, rows, step.predicted) + head_call_macs(config, rows, step.predicted).times(
        step.diffusion_steps
    )
    return embed + encoder_blocks + decoder_blocks + head
