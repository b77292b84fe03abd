"""The per-token diffusion head (`image_decoder`): an AdaLN-zero MLP predicting flow velocity (docs/architecture.md, "Diffusion head").

Shapes: B' rows (2B under CFG), n predicted tokens, p²C values per token, W head width, D transformer width.
"""

import torch
from torch import nn

from models.network.embeddings import TIMESTEP_FEATURES, PatchEmbed, timestep_features
from models.ops import REFERENCE_KERNELS

ADALN_EPS = 1e-6  # LayerNorm without affine inside the AdaLN-zero modulation


class Projector(nn.Module):
    """Linear → SiLU → Linear."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int):
        super().__init__()
        self.fc1 = nn.Linear(in_dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.silu(self.fc1(x)))


class AdaLayerNormZero(nn.Module):
    """LayerNorm(x)·(1 + scale) + shift, with (scale, shift[, gate]) = Linear(SiLU(cond)) chunked.

    The Linear depends on the condition alone, so the head computes it (`project`) apart from the noisy tokens
    it modulates (`forward`), which lets the sampler project every diffusion step's condition at once.
    """

    def __init__(self, dim: int, num_stats: int):
        super().__init__()
        self.num_stats = num_stats
        self.proj = nn.Linear(dim, num_stats * dim)
        self.norm = nn.LayerNorm(dim, eps=ADALN_EPS, elementwise_affine=False)
        self.kernels = REFERENCE_KERNELS  # the modulated-LayerNorm op (`LinaTransformer.set_kernels`)

    def project(self, activated_cond: torch.Tensor) -> torch.Tensor:
        """SiLU(cond) [..., W] → the modulation statistics [..., num_stats·W].

        `activated_cond` is SiLU(cond): every AdaLN of the head applies the same SiLU to the same condition,
        so the head computes it once.
        """
        return self.proj(activated_cond)

    def forward(self, x: torch.Tensor, projection: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [..., W] and `project`'s output → the modulated x and the gate (None with two stats)."""
        stats = projection.chunk(self.num_stats, dim=-1)
        scale, shift, gate = stats[0], stats[1], (stats[2] if self.num_stats == 3 else None)
        if self.kernels.fused:
            return self.kernels.modulated_layer_norm(x, scale, shift, self.norm.eps), gate
        return self.norm(x).mul(1 + scale).add_(shift), gate


class DiffusionBlock(nn.Module):
    """x + gate · LayerNorm(MLP(AdaLN(x, cond)))."""

    def __init__(self, dim: int):
        super().__init__()
        self.norm1 = AdaLayerNormZero(dim, num_stats=3)
        self.proj = Projector(dim, dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.kernels = REFERENCE_KERNELS  # the gated residual + LayerNorm op (`LinaTransformer.set_kernels`)

    def forward(self, x: torch.Tensor, projection: torch.Tensor) -> torch.Tensor:
        """x [B', n, W], `norm1.project(SiLU(cond))` [B', n, 3W] → [B', n, W]."""
        h, gate = self.norm1(x, projection)
        if self.kernels.fused:
            return self.kernels.add_layer_norm(x, self.proj(h), self.norm2.weight, self.norm2.bias, self.norm2.eps, gate)
        return x + self.norm2(self.proj(h)).mul(gate)


class TimeCondEmbed(nn.Module):
    """Condition of the head: condition_proj(z) + timestep_proj(features(t))."""

    def __init__(self, cond_dim: int, dim: int):
        super().__init__()
        self.timestep_proj = Projector(TIMESTEP_FEATURES, dim, dim)
        self.condition_proj = Projector(cond_dim, dim, dim)

    def forward(self, timesteps: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """timesteps [B'] (float, 1000·σ), z [B', n, D] → [B', n, W]."""
        return self.condition_proj(z).add_(self.time_embedding(timesteps).unsqueeze(1))

    def time_embedding(self, timesteps: torch.Tensor) -> torch.Tensor:
        """timesteps [B'] → timestep_proj(features) [B', W] in the weights' dtype."""
        return self.timestep_proj(timestep_features(timesteps).to(self.timestep_proj.fc1.weight.dtype))


class DiffusionHead(nn.Module):
    """Predicts the velocity ε − x₀ of each noisy token from its transformer output z."""

    def __init__(self, depth: int, dim: int, cond_dim: int, patch_size: int, latent_channels: int):
        super().__init__()
        token_dim = patch_size**2 * latent_channels
        self.patch_embed = PatchEmbed(latent_channels, dim, patch_size)
        self.time_cond_embed = TimeCondEmbed(cond_dim, dim)
        self.blocks = nn.ModuleList(DiffusionBlock(dim) for _ in range(depth))
        self.norm = AdaLayerNormZero(dim, num_stats=2)
        self.head = nn.Linear(dim, token_dim)
        self.kernels = REFERENCE_KERNELS  # fused: chained norms here, one-kernel steps in the sampler (`set_kernels`)

    def forward(self, noisy: torch.Tensor, timesteps: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Velocity of the given tokens.

        Args:
            noisy: noisy tokens x_σ, [B', n, p²C] in `patchify` order.
            timesteps: [B'] float, t = 1000·σ.
            z: transformer outputs of the same tokens, [B', n, D].

        Returns:
            [B', n, p²C] velocity prediction.
        """
        return self.velocity(noisy, self.time_cond_embed(timesteps, z))

    def velocity(self, noisy: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """Velocity of noisy tokens [B', n, p²C] given their condition `time_cond_embed(t, z)` [B', n, W].

        The sampler builds the condition from parts it computes once per AR step (`condition_proj(z)`) and
        once per generation (`time_embeddings`), which gives the very values `forward` computes.
        """
        return self.velocity_projected(noisy, self.project_condition(nn.functional.silu(cond)))

    def project_condition(self, activated_cond: torch.Tensor) -> list[torch.Tensor]:
        """Every AdaLN's statistics from SiLU(cond) [..., W]: the blocks' [..., 3W] in order, then the final
        norm's [..., 2W]. They do not depend on the noisy tokens, so any leading shape works (the sampler
        passes a diffusion-step axis in front)."""
        return [block.norm1.project(activated_cond) for block in self.blocks] + [self.norm.project(activated_cond)]

    def velocity_projected(self, noisy: torch.Tensor, projections: list[torch.Tensor]) -> torch.Tensor:
        """Velocity of noisy tokens [B', n, p²C] given `project_condition`'s statistics of their condition."""
        x = self.patch_embed.embed_patches(noisy)  # [B', n, W]
        if self.kernels.fused:
            return self.head(self._chained_blocks(x, projections))
        for block, projection in zip(self.blocks, projections):
            x = block(x, projection)
        return self.head(self.norm(x, projections[-1])[0])

    def _chained_blocks(self, x: torch.Tensor, projections: list[torch.Tensor]) -> torch.Tensor:
        """The blocks and the final AdaLN on the fused kernels: the final norm's output [B', n, W].

        The same ops as the blocks' `forward`, regrouped: each block's closing gated residual LayerNorm and the
        AdaLN after it (the next block's, or the final one) both work row by row on the new residual stream,
        so one kernel (`add_layer_norm_modulated`) makes that stream and its modulated copy.
        """
        norms = [block.norm1 for block in self.blocks] + [self.norm]
        stats = [projection.chunk(norm.num_stats, dim=-1) for norm, projection in zip(norms, projections)]
        h = self.kernels.modulated_layer_norm(x, stats[0][0], stats[0][1], norms[0].norm.eps)
        for i, block in enumerate(self.blocks):
            scale, shift = stats[i + 1][0], stats[i + 1][1]
            x, h = self.kernels.add_layer_norm_modulated(
                x, block.proj(h), block.norm2.weight, block.norm2.bias, block.norm2.eps, stats[i][2], scale, shift,
                norms[i + 1].norm.eps,
            )
        return h

    def time_embeddings(self, timesteps: torch.Tensor, rows: int) -> torch.Tensor:
        """The time embedding of every diffusion step for `rows` rows: [S, rows, W].

        Each step is embedded as its own [rows] batch, exactly as `forward` embeds it, so the values match.
        """
        return torch.stack([self.time_cond_embed.time_embedding(t.expand(rows)) for t in timesteps])
