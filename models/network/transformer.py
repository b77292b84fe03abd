"""The LINA transformer: context encoder, masked image encoder and diffusion head (docs/architecture.md).

One implementation serves every checkpoint; all geometry comes from `TransformerConfig`.
Shapes: B' rows (2B under CFG), P condition rows, Lv context tokens, L image tokens, n known tokens,
D width, p²C latent values per token.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.constants import CONFIG_NAME
from models.errors import LinaError
from models.files import load_weights, read_json, save_weights, write_json_atomic
from models.network.attention import LinearAttention, SoftmaxAttention
from models.network.config import MLP_RATIO, TransformerConfig
from models.network.diffusion_head import DiffusionHead
from models.network.embeddings import (
    LabelEmbed,
    MaskEmbed,
    PatchEmbed,
    TextEmbed,
    VideoPosEmbed,
    frame_features,
    sincos_2d,
)
from models.ops import REFERENCE_KERNELS, kernels_named

# ----------------------------------------------------------------------------------------------------
# Blocks
# ----------------------------------------------------------------------------------------------------


class MLP(nn.Module):
    """fc1 → exact GELU → fc2."""

    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, MLP_RATIO * dim)
        self.fc2 = nn.Linear(MLP_RATIO * dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(nn.functional.gelu(self.fc1(x)))


class Block(nn.Module):
    """Post-norm block: y = x + norm1(attn(x)); out = y + norm2(mlp(y)). No pre-norm anywhere."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        attention: str = "linear",
        gate_len: int | None = None,
        token_grid: tuple[int, int] | None = None,
    ):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        if attention == "linear":
            self.attn = LinearAttention(dim, num_heads, gate_len=gate_len, token_grid=token_grid)
        else:
            self.attn = SoftmaxAttention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim)
        self.kernels = REFERENCE_KERNELS  # the residual + LayerNorm op (`LinaTransformer.set_kernels`)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernels.fused:  # the same two residuals, each LayerNorm fused with its add
            add_norm = self.kernels.add_layer_norm
            x = add_norm(x, self.attn(x), self.norm1.weight, self.norm1.bias, self.norm1.eps)
            return add_norm(x, self.mlp(x), self.norm2.weight, self.norm2.bias, self.norm2.eps)
        x = x + self.norm1(self.attn(x))
        return x + self.norm2(self.mlp(x))


class ContextEncoder(nn.Module):
    """`video_encoder`: encoder blocks over [condition ; context tokens], run once per image."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        arch = config.video_encoder_arch
        # Its patch embedding only ever sees an empty canvas that is then overwritten with `bos_token`
        # (docs/architecture.md, "Conditioning and context"); it is kept so checkpoints load strictly, and never run.
        self.patch_embed = PatchEmbed(config.image_dim, arch.width, config.video_patch_size)
        self.blocks = nn.ModuleList(Block(arch.width, arch.num_heads, config.attention) for _ in range(arch.depth))
        self.norm = nn.LayerNorm(arch.width)

    def forward(self, condition: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """condition [B', P, D], context [B', Lv, D] → encoded context c [B', Lv, D]."""
        x = torch.cat([condition, context], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x[:, condition.shape[1] :])


class ImageEncoder(nn.Module):
    """`image_encoder`: encoder half on [c ; known tokens], decoder half on [c' ; all tokens] (docs/architecture.md, "Image tokens and the image encoder")."""

    def __init__(self, config: TransformerConfig):
        super().__init__()
        arch = config.image_encoder_arch
        self.encoder_depth = config.encoder_depth
        self.patch_embed = PatchEmbed(config.image_dim, arch.width, config.patch_size)
        decoder_kwargs: dict[str, Any] = {}
        if config.attention == "linear":
            decoder_kwargs = {"gate_len": config.decoder_seq_len, "token_grid": config.token_grid}
        self.blocks = nn.ModuleList(
            Block(arch.width, arch.num_heads, config.attention, **(decoder_kwargs if i >= self.encoder_depth else {}))
            for i in range(arch.depth)
        )
        self.norm = nn.LayerNorm(arch.width)

    def forward(self, tokens: torch.Tensor, context: torch.Tensor, known_ids: torch.Tensor) -> torch.Tensor:
        """Transformer output z for every image token.

        Args:
            tokens: embedded canvas (masked, with positions), [B', L, D].
            context: encoded context c, [B', Lv, D].
            known_ids: indices of already generated tokens, [B', n] (n may be 0).

        Returns:
            z, [B', L, D].
        """
        num_context = context.shape[1]
        index = known_ids.unsqueeze(-1).expand(-1, -1, tokens.shape[-1])  # [B', n, D]
        x = torch.cat([context, tokens.gather(1, index)], dim=1)  # [B', Lv + n, D]
        for block in self.blocks[: self.encoder_depth]:
            x = block(x)
        context, known = x[:, :num_context], x[:, num_context:]
        # Under autocast (training) the encoder half returns float32 rows while the tokens are bf16; like the
        # authors' `x_masked.to(dtype=x.dtype)`, the canvas takes the rows' dtype (a no-op at inference).
        x = torch.cat([context, tokens.to(known.dtype).scatter(1, index, known)], dim=1)  # [B', Lv + L, D]
        for block in self.blocks[self.encoder_depth :]:
            x = block(x)
        return self.norm(x[:, num_context:])


# ----------------------------------------------------------------------------------------------------
# The model
# ----------------------------------------------------------------------------------------------------


class LinaTransformer(nn.Module):
    """LINA's transformer with its official state-dict layout (721 keys for c2i, 723 for t2i).

    The sampler drives it through four calls: `condition_tokens_*` once per request, `encode_context`
    once per image, then per AR step `embed_canvas` + `image_encoder`, and `image_decoder` (the
    diffusion head) at every diffusion step.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        self.config = config
        width = config.width
        head = config.head_arch
        # Child order follows the reference so `state_dict()` lists keys in the same order.
        self.video_encoder = ContextEncoder(config)
        self.image_encoder = ImageEncoder(config)
        self.image_decoder = DiffusionHead(head.depth, head.width, width, config.patch_size, config.image_dim)
        self.mask_embed = MaskEmbed(width)
        if config.is_text_conditioned:
            self.text_embed = TextEmbed(config.text_token_dim, width, config.text_token_len)
        else:
            self.label_embed = LabelEmbed(width, config.num_classes)
        self.video_pos_embed = VideoPosEmbed(width)
        self._device_tables: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}

    # ------------------------------------------------------------------------------ conditions ----

    @property
    def null_class(self) -> int:
        """Label row used as the unconditional (CFG) condition of class models."""
        return self.config.num_classes

    def condition_tokens_from_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """labels [B] → [B, 1, D]."""
        return self.label_embed(labels)

    def label_conditions(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Condition tokens of class labels [B] and of the null class CFG pairs them with: [B, 1, D] each."""
        null = torch.full_like(labels, self.null_class)
        return self.condition_tokens_from_labels(labels), self.condition_tokens_from_labels(null)

    def condition_tokens_from_text(self, prompt_features: list[torch.Tensor]) -> torch.Tensor:
        """Per-prompt Phi-2 rows (list of [n_i, text_dim]; [0, text_dim] = empty prompt) → [B, P, D]."""
        return self.text_embed(self.text_embed.build_features(prompt_features))

    # ------------------------------------------------------------------------ per image / step ----

    def encode_context(self, condition: torch.Tensor) -> torch.Tensor:
        """Context tokens c for a batch of conditions [B', P, D] → [B', Lv, D] (docs/architecture.md, "Conditioning and context")."""
        rows, dtype, device = condition.shape[0], condition.dtype, condition.device
        weight = self.video_pos_embed.time_proj[0].weight
        frame = self._device_table("frame 0", lambda: frame_features(0), weight.device, weight.dtype)
        context = self.mask_embed.bos_token + self.video_pos_embed(frame)  # [1, D]
        positions = self._device_table(
            "context positions", lambda: sincos_2d(self.config.context_grid, self.config.width), device, dtype
        )
        context = (context + positions).expand(rows, -1, -1)  # [B', Lv, D]
        return self.video_encoder(condition, context)

    def image_positions(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The image sin-cos table [L, D] in the compute dtype (read-only: it is shared between calls)."""
        return self._device_table(
            "image positions", lambda: sincos_2d(self.config.token_grid, self.config.width), device, dtype
        )

    def _device_table(
        self, name: str, build: Callable[[], torch.Tensor], device: torch.device, dtype: torch.dtype
    ) -> torch.Tensor:
        """A constant table `build()` makes on the host, copied to `device` once and then reused. A host-to-device
        copy makes the host wait for the GPU's queue; made per call, it would stall every training step."""
        key = (name, torch.device(device), dtype)
        if key not in self._device_tables:
            self._device_tables[key] = build().to(device=device, dtype=dtype)
        return self._device_tables[key]

    def embed_canvas(self, canvas: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Embed the latent canvas: patch embedding, mask token on ungenerated rows, then positions.

        Args:
            canvas: generated latents (zeros elsewhere), [B, C, H/s, W/s].
            mask: 1 for tokens not generated yet, [B, L, 1], compute dtype.
            positions: `image_positions(...)`, [L, D].

        Returns:
            [B, L, D].
        """
        tokens = self.mask_embed.apply_mask(self.image_encoder.patch_embed(canvas), mask)
        return tokens.add_(positions)

    # ---------------------------------------------------------------------------- construction ----

    @classmethod
    def from_config(cls, config: TransformerConfig | dict[str, Any]) -> "LinaTransformer":
        """Build with random (PyTorch default) initialisation; KV gates start at ones."""
        return cls(config if isinstance(config, TransformerConfig) else TransformerConfig.from_dict(config))

    @classmethod
    def from_pretrained(
        cls,
        folder: str | Path,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        attention: str | None = None,
    ) -> "LinaTransformer":
        """Load a `transformer/` folder (config.json + weights), strictly.

        Args:
            folder: the component folder.
            device, dtype: where the weights go.
            attention: override the config's attention ("softmax" only fits softmax checkpoints).
        """
        folder = Path(folder)
        config = TransformerConfig.from_dict(read_json(folder / CONFIG_NAME, "transformer"))
        if attention is not None:
            config = config.replace(attention=attention)
        with torch.device("meta"):
            model = cls(config)
        return load_weights(model, folder, device=device, dtype=dtype, expected=f"TransformerConfig{config.to_dict()}")

    def save_pretrained(self, folder: str | Path) -> None:
        """Write `config.json` and `diffusion_pytorch_model.safetensors`."""
        folder = Path(folder)
        write_json_atomic(folder / CONFIG_NAME, {"_class_name": "NOVATransformer3DModel", **self.config.to_dict()})
        save_weights(self, folder)

    def set_kernels(self, name: str) -> None:
        """Choose the implementation of every op the modules call (`models.ops`).

        Args:
            name: "reference" (plain PyTorch, the default: bit-identical to the authors' code) or "fused"
                (the Triton kernels, CUDA only: the same results up to bf16 rounding, about twice as fast).

        Raises:
            ValueError: an unknown name.
            LinaError: "fused" where Triton cannot be imported.
        """
        try:
            kernels = kernels_named(name)
        except ImportError as error:
            raise LinaError(f"the fused kernels need Triton, which cannot be imported: {error}") from error
        for module in self.modules():
            if hasattr(module, "kernels"):
                module.kernels = kernels

    @property
    def kernels_name(self) -> str:
        """"reference" or "fused": the op set `set_kernels` chose."""
        return self.image_encoder.blocks[0].kernels.name

    def num_parameters(self) -> int:
        """Trainable parameters (the `text_embed.weight` buffer is not one)."""
        return sum(p.numel() for p in self.parameters())
