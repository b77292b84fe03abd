"""LINA's training objective: masked set-by-set autoregression with a per-token flow-matching loss (docs/training.md).

As the authors' `Transformer3DModel.train_video` / `get_losses` and `MaskEmbed` compute it
(github.com/techmonsterwang/LINA, `diffnext/models/transformers/transformer_3d.py`, `diffnext/models/embeddings.py`):
a latent x₀ is drawn from each cached VAE posterior; 10 % of conditions are replaced by the null condition; the
context tokens are built as at inference; one mask ratio r ~ TruncNormal(1, 0.25) on [0.7, 1] is drawn per
batch and each image keeps round((1 − r)·L) random tokens as known; the image encoder gives z for every
token; z is repeated `loss_repeat` times, each token gets its own σ (idx = ⌊T·sigmoid(n)⌋, n ~ N(0, 1)), the
head predicts the velocity ε − x₀ of x_σ = σ·ε + (1 − σ)·x₀ for every token, and the per-token MSE is
averaged over the masked tokens only: loss = Σ w·mse / (Σ w + 10⁻⁵).

Every random number of a step comes from `StepNoise.draw`, for the whole global batch from explicit
generators; a process takes its rows with `StepNoise.rows`. So a step's numbers do not depend on how the
batch is split over processes, and saving the generators' states makes a run resumable exactly.
Shapes: G global batch, B this process's rows, R = loss_repeat, L image tokens, n known tokens, C latent
channels on an h × w grid, p²C values per token, P condition rows, D width.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from models.network.config import SchedulerConfig, TransformerConfig
from models.network.embeddings import patchify
from models.network.transformer import LinaTransformer
from models.network.vae import LOGVAR_MAX, LOGVAR_MIN

# The mask ratio's truncated normal (the authors' `MaskEmbed(mask_ratios=(0.7, 1.0))` with std 0.25).
MASK_RATIO_MEAN, MASK_RATIO_STD = 1.0, 0.25
MASK_RATIO_LOW, MASK_RATIO_HIGH = 0.7, 1.0
LOSS_EPS = 1e-5  # keeps the weighted mean finite (the authors' `weight.sum().add_(1e-5)`)


def truncated_normal(u: float, mean: float, std: float, low: float, high: float) -> float:
    """The u-quantile (u in [0, 1)) of N(mean, std²) restricted to [low, high], by inverting its CDF in float64."""

    def cdf(x: float) -> float:
        return 0.5 * (1 + math.erf((x - mean) / (std * math.sqrt(2))))

    p = cdf(low) + u * (cdf(high) - cdf(low))
    x = mean + std * torch.special.ndtri(torch.tensor(p, dtype=torch.float64)).item()
    return min(max(x, low), high)


def known_count(mask_ratio: float, num_tokens: int) -> int:
    """round((1 − r)·L) tokens each image keeps as known (round half to even, as numpy's)."""
    return round((1 - mask_ratio) * num_tokens)


class FlowTrainingSchedule:
    """σ and t of the training table: σ_i = shift((T − i)/T), t_i = σ_i·T, i < T (the authors' training scheduler)."""

    def __init__(self, config: SchedulerConfig):
        steps, shift = config.num_train_timesteps, config.shift
        sigmas = torch.arange(steps, 0, -1, dtype=torch.float32) / steps
        self.sigmas = shift * sigmas / (1 + (shift - 1) * sigmas)
        self.timesteps = self.sigmas * steps
        self.num_steps = steps

    def index(self, normals: torch.Tensor) -> torch.Tensor:
        """The table index ⌊T·sigmoid(n)⌋ of each standard-normal draw n (logit-normal in σ); moves the table to
        the draws' device."""
        index = normals.float().sigmoid().mul(self.num_steps).to(torch.int64)
        # sigmoid rounds to exactly 1.0 only for n > 16.6, beyond any normal draw; keep the index in the table anyway
        index = index.clamp_(max=self.num_steps - 1)
        if self.sigmas.device != index.device:
            self.sigmas, self.timesteps = self.sigmas.to(index.device), self.timesteps.to(index.device)
        return index


@dataclass
class StepNoise:
    """Every random number of one training step, for a batch of images (first axis of each tensor but `timestep`
    and `noise`, whose second axis is the image).

    Attributes:
        mask_ratio: r, shared by the whole batch.
        latent: ε of each posterior sample, [G, C, h, w].
        dropout: uniforms [G]; an image whose value is below the dropout rate trains on the null condition.
        order: uniforms [G, L]; the tokens of the smallest values are the known ones.
        timestep: normals [R, G, L] for each token's σ.
        noise: ε of the flow, [R, G, L, p²C].
    """

    mask_ratio: float
    latent: torch.Tensor
    dropout: torch.Tensor
    order: torch.Tensor
    timestep: torch.Tensor
    noise: torch.Tensor

    @classmethod
    def draw(
        cls,
        config: TransformerConfig,
        batch: int,
        loss_repeat: int,
        cpu_generator: torch.Generator,
        generator: torch.Generator,
    ) -> "StepNoise":
        """Draw a step's numbers in a fixed order: r from `cpu_generator`, tensors from `generator` (on its device)."""
        u = torch.rand((), generator=cpu_generator, dtype=torch.float64).item()
        ratio = truncated_normal(u, MASK_RATIO_MEAN, MASK_RATIO_STD, MASK_RATIO_LOW, MASK_RATIO_HIGH)
        device = generator.device
        tokens = config.num_image_tokens
        options = {"generator": generator, "device": device}
        return cls(
            mask_ratio=ratio,
            latent=torch.randn(batch, config.image_dim, *config.latent_size, **options),
            dropout=torch.rand(batch, **options),
            order=torch.rand(batch, tokens, **options),
            timestep=torch.randn(loss_repeat, batch, tokens, **options),
            noise=torch.randn(loss_repeat, batch, tokens, config.token_dim, **options),
        )

    def rows(self, start: int, stop: int) -> "StepNoise":
        """The numbers of images start … stop−1 of the batch."""
        return StepNoise(
            self.mask_ratio, self.latent[start:stop], self.dropout[start:stop], self.order[start:stop],
            self.timestep[:, start:stop], self.noise[:, start:stop],
        )


def sample_latents(
    moments: torch.Tensor, eps: torch.Tensor, scale: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """x₀ = scale(mean + exp(½·logvar)·ε) from cached moments [B, 2C, h, w]; float32 [B, C, h, w]."""
    mean, logvar = moments.float().chunk(2, dim=1)
    return scale(mean + torch.exp(0.5 * logvar.clamp(LOGVAR_MIN, LOGVAR_MAX)) * eps)


def condition_tokens(
    transformer: LinaTransformer, conditions: torch.Tensor, dropped: torch.Tensor
) -> torch.Tensor:
    """Condition tokens [B, P, D] with the dropped images' conditions replaced by the null one.

    Args:
        conditions: class ids [B] (long) for class models; text feature matrices [B, P, text_dim] otherwise.
        dropped: [B] bool.
    """
    if transformer.config.is_text_conditioned:
        null = transformer.text_embed.weight[: transformer.config.text_token_len].to(conditions.dtype)  # [P, text_dim]
        return transformer.text_embed(torch.where(dropped[:, None, None], null, conditions))
    labels = torch.where(dropped, torch.full_like(conditions, transformer.null_class), conditions)
    return transformer.condition_tokens_from_labels(labels)


def training_loss(
    transformer: LinaTransformer,
    moments: torch.Tensor,
    conditions: torch.Tensor,
    noise: StepNoise,
    *,
    scale: Callable[[torch.Tensor], torch.Tensor],
    schedule: FlowTrainingSchedule,
    condition_dropout: float,
    compute_dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The loss of one batch (a 0-dim float32 tensor); run it under the caller's autocast.

    Args:
        transformer: the model (any device; its inputs follow it).
        moments: cached posteriors [B, 2C, h, w].
        conditions: class ids [B] or text feature matrices [B, P, text_dim] (`condition_tokens`).
        noise: this batch's rows of the step's `StepNoise`.
        scale: VAE-space → model-space latents (`AutoencoderKL.scale`).
        schedule: the training σ table.
        condition_dropout: probability of the null condition.
        compute_dtype: the autocast dtype (float32 without autocast): the mask and positions are made in it,
            as the authors make them from the activations.
    """
    config = transformer.config
    batch, tokens, repeat = moments.shape[0], config.num_image_tokens, noise.timestep.shape[0]
    x0 = sample_latents(moments, noise.latent, scale)  # [B, C, h, w]

    context = transformer.encode_context(condition_tokens(transformer, conditions, noise.dropout < condition_dropout))
    known = noise.order.argsort(dim=1)[:, : known_count(noise.mask_ratio, tokens)]  # [B, n]
    mask = torch.ones(batch, tokens, 1, dtype=compute_dtype, device=x0.device).scatter_(1, known.unsqueeze(-1), 0)
    embedded = transformer.embed_canvas(x0, mask, transformer.image_positions(x0.device, compute_dtype))  # [B, L, D]
    z = transformer.image_encoder(embedded, context, known)  # [B, L, D]

    target = patchify(x0, config.patch_size).repeat(repeat, 1, 1)  # [R·B, L, p²C]
    eps = noise.noise.flatten(0, 1)  # [R·B, L, p²C]
    index = schedule.index(noise.timestep.flatten(0, 1))  # [R·B, L]
    sigma = schedule.sigmas[index].unsqueeze(-1)
    noisy = sigma * eps + (1 - sigma) * target
    head = transformer.image_decoder
    # Each token has its own t, so the time embedding is per token: [R·B, L, W], added to condition_proj(z). Both
    # are computed on fewer rows and then spread: t is one of the table's T values, so the table is embedded once
    # and each token takes its row; condition_proj(z) is the same for every repeat, so it is projected once.
    time = head.time_cond_embed.time_embedding(schedule.timesteps)[index]  # [R·B, L, W]
    cond = head.time_cond_embed.condition_proj(z).repeat(repeat, 1, 1) + time
    velocity = head.velocity(noisy, cond)  # [R·B, L, p²C]
    mse = (velocity.float() - (eps - target).float()).square().mean(dim=-1)  # [R·B, L]
    weight = mask.squeeze(-1).float().repeat(repeat, 1)  # 1 on the tokens to predict
    return (mse * weight).sum() / (weight.sum() + LOSS_EPS)


class TrainingObjective(torch.nn.Module):
    """`training_loss` as a module around the transformer, so DistributedDataParallel can wrap it: DDP synchronises
    the gradients of what its wrapper's forward runs."""

    def __init__(
        self,
        transformer: LinaTransformer,
        *,
        scale: Callable[[torch.Tensor], torch.Tensor],
        schedule: FlowTrainingSchedule,
        condition_dropout: float,
        compute_dtype: torch.dtype = torch.float32,
    ):
        super().__init__()
        self.transformer = transformer
        self.scale, self.schedule = scale, schedule
        self.condition_dropout, self.compute_dtype = condition_dropout, compute_dtype

    def forward(self, moments: torch.Tensor, conditions: torch.Tensor, noise: StepNoise) -> torch.Tensor:
        return training_loss(
            self.transformer, moments, conditions, noise, scale=self.scale, schedule=self.schedule,
            condition_dropout=self.condition_dropout, compute_dtype=self.compute_dtype,
        )
