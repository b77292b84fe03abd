"""Configuration dataclasses of the transformer, VAE and scheduler, parsed from their config.json files.

Field names are the keys of the official hub files, so `XConfig.from_dict(json.load(f))` is the whole
loading step. Unknown or missing keys raise `InvalidConfigError` naming them. Keys that start with `_`
(`_class_name`, `_diffusers_version`, ...) are bookkeeping written by diffusers and are ignored, except
where the VAE needs `_class_name` to tell the SDXL layout from the MAR one.
"""

import dataclasses
import re
from dataclasses import dataclass
from typing import Any, Literal

from models.errors import InvalidClassLabelError, InvalidConfigError, UnknownArchError, UnsupportedSizeError

# Heads of the widths the reference registry names; any other width gets width // HEAD_WIDTH heads.
REGISTRY_HEADS = {768: 12, 1024: 16, 1536: 16}
HEAD_WIDTH = 64
MLP_RATIO = 4
IMAGENET_CLASSES = 1000  # label rows 0..999; row 1000 is the null class used for CFG


def _check_keys(cls_name: str, data: dict[str, Any], known: set[str], required: set[str]) -> dict[str, Any]:
    """Drop `_`-prefixed bookkeeping keys and raise on unknown or missing ones."""
    data = {k: v for k, v in data.items() if not k.startswith("_")}
    unknown = sorted(set(data) - known)
    missing = sorted(required - set(data))
    if unknown or missing:
        parts = [f"unknown keys {unknown}" if unknown else "", f"missing keys {missing}" if missing else ""]
        raise InvalidConfigError(f"{cls_name}: {' and '.join(p for p in parts if p)}; expected keys {sorted(known)}")
    return data


# ----------------------------------------------------------------------------------------------------
# Architecture strings
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ArchSpec:
    """One entry of the `arch` triple, e.g. `vit_d32w1536` = ViT of depth 32, width 1536, 16 heads."""

    kind: Literal["vit", "mlp"]
    depth: int
    width: int

    @property
    def num_heads(self) -> int:
        return REGISTRY_HEADS.get(self.width, self.width // HEAD_WIDTH)

    @classmethod
    def parse(cls, name: str, kind: str) -> "ArchSpec":
        match = re.fullmatch(r"(vit|mlp)_d(\d+)w(\d+)", str(name))
        if match is None or match.group(1) != kind or int(match.group(2)) < 1 or int(match.group(3)) < 1:
            raise UnknownArchError(
                f"unknown arch {name!r}: expected '{kind}_d<depth>w<width>' (e.g. '{kind}_d16w1536')"
            )
        depth, width = int(match.group(2)), int(match.group(3))
        if kind == "vit" and width % cls(kind, depth, width).num_heads:
            raise UnknownArchError(f"arch {name!r}: width {width} is not divisible into heads")
        return cls(kind, depth, width)  # type: ignore[arg-type]

    def __str__(self) -> str:
        return f"{self.kind}_d{self.depth}w{self.width}"


# ----------------------------------------------------------------------------------------------------
# Transformer
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransformerConfig:
    """Everything that shapes a LINA transformer; the keys of `transformer/config.json`.

    Attributes:
        image_dim: latent channels C of the VAE (16 for MAR KL-16, 4 for SDXL).
        image_size: output image (height, width) in pixels; each checkpoint supports exactly one.
        image_stride: VAE downsampling factor s (16 or 8); the patch size is `15 // s + 1`.
        text_token_dim: width of the text features (2560 for Phi-2); None for class-conditional models.
        text_token_len: number of text rows P fed to the video encoder (256); None for class models.
        image_base_size: grid of the image sin-cos table; must equal the token grid.
        video_base_size: (frames, rows, cols) of the context table; rows/cols must equal the context grid.
        video_mixer_rank, rotary_pos_embed: reference options unused by every released checkpoint;
            only their released values (None, False) are accepted.
        arch: (video encoder, image encoder, diffusion head), e.g. ("vit_d16w1536", "vit_d32w1536", "mlp_d6w1536").
        attention: "linear" (LINA) or "softmax" (the same network with scaled-dot-product attention,
            the paper's full-attention baseline). Not in the official files; defaults to "linear".
        num_classes: classes of a class-conditional model; the label table has one more (null) row.
    """

    image_dim: int
    image_size: tuple[int, int]
    image_stride: int
    image_base_size: tuple[int, int]
    video_base_size: tuple[int, int, int]
    arch: tuple[str, str, str]
    text_token_dim: int | None = None
    text_token_len: int | None = None
    video_mixer_rank: int | None = None
    rotary_pos_embed: bool = False
    attention: Literal["linear", "softmax"] = "linear"
    num_classes: int = IMAGENET_CLASSES

    def __post_init__(self) -> None:
        size = self.image_size
        object.__setattr__(self, "image_size", tuple(size) if isinstance(size, (list, tuple)) else (size, size))
        for name in ("image_base_size", "video_base_size", "arch"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        self._validate()

    # -------------------------------------------------------------- derived geometry (docs/architecture.md, "Geometry") ----

    @property
    def video_encoder_arch(self) -> ArchSpec:
        return ArchSpec.parse(self.arch[0], "vit")

    @property
    def image_encoder_arch(self) -> ArchSpec:
        return ArchSpec.parse(self.arch[1], "vit")

    @property
    def head_arch(self) -> ArchSpec:
        return ArchSpec.parse(self.arch[2], "mlp")

    @property
    def width(self) -> int:
        """Transformer width D (shared by the video and image encoders)."""
        return self.image_encoder_arch.width

    @property
    def encoder_depth(self) -> int:
        """Blocks of the image encoder that see only [context ; known tokens]; the rest are decoder blocks."""
        return self.image_encoder_arch.depth // 2

    @property
    def patch_size(self) -> int:
        """Image patch size p in latent pixels (1 for stride 16, 2 for stride 8)."""
        return 15 // self.image_stride + 1

    @property
    def video_patch_size(self) -> int:
        return 2 * self.patch_size

    @property
    def latent_size(self) -> tuple[int, int]:
        """Latent (H, W) = image size / stride."""
        return (self.image_size[0] // self.image_stride, self.image_size[1] // self.image_stride)

    @property
    def token_grid(self) -> tuple[int, int]:
        """Image-token grid (h, w) = latent size / p."""
        return (self.latent_size[0] // self.patch_size, self.latent_size[1] // self.patch_size)

    @property
    def num_image_tokens(self) -> int:
        """L."""
        return self.token_grid[0] * self.token_grid[1]

    @property
    def context_grid(self) -> tuple[int, int]:
        """Context-token grid = latent size / 2p."""
        return (self.latent_size[0] // self.video_patch_size, self.latent_size[1] // self.video_patch_size)

    @property
    def num_context_tokens(self) -> int:
        """Lv."""
        return self.context_grid[0] * self.context_grid[1]

    @property
    def decoder_seq_len(self) -> int:
        """Lv + L: the sequence of every decoder block, and the length of its KV gates."""
        return self.num_context_tokens + self.num_image_tokens

    @property
    def token_dim(self) -> int:
        """p²·C: the latent values one image token carries."""
        return self.patch_size**2 * self.image_dim

    @property
    def is_text_conditioned(self) -> bool:
        return self.text_token_dim is not None

    @property
    def task(self) -> Literal["t2i", "c2i"]:
        return "t2i" if self.is_text_conditioned else "c2i"

    @property
    def condition_len(self) -> int:
        """P: conditioning rows in front of the context tokens (text rows, or 1 class row)."""
        return self.text_token_len if self.text_token_len else 1

    # ---------------------------------------------------------------------------- (de)serialising ----

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TransformerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING}
        return cls(**_check_keys(cls.__name__, data, known, required))

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    def check_size(self, size: int | tuple[int, int]) -> None:
        """Raise UnsupportedSizeError unless `size` (pixels; int = square) is this checkpoint's resolution.

        A checkpoint's KV gates and position tables are tied to one token grid (docs/architecture.md, "Geometry"),
        so no other size can be generated with weight-compatible behaviour.
        """
        height, width = (size, size) if isinstance(size, int) else tuple(size)
        if (height, width) != tuple(self.image_size):
            supported = "x".join(str(side) for side in self.image_size)
            raise UnsupportedSizeError(
                f"size {height}x{width} is not supported by this checkpoint: it generates {supported} images only "
                "(its KV gates and position tables fit one token grid)"
            )

    def replace(self, **changes: Any) -> "TransformerConfig":
        return dataclasses.replace(self, **changes)

    def _validate(self) -> None:
        for spec in (self.video_encoder_arch, self.image_encoder_arch, self.head_arch):
            _ = spec  # parsing raises UnknownArchError on a bad name
        if self.video_encoder_arch.width != self.image_encoder_arch.width:
            raise InvalidConfigError(
                f"arch {list(self.arch)}: the video and image encoders must have the same width"
            )
        if self.attention not in ("linear", "softmax"):
            raise InvalidConfigError(f"attention={self.attention!r}: expected 'linear' or 'softmax'")
        if self.rotary_pos_embed or self.video_mixer_rank or self.video_base_size[0] != 1:
            raise InvalidConfigError(
                "rotary_pos_embed, video_mixer_rank and multi-frame video_base_size are reference options no "
                "released LINA checkpoint uses; this package supports rotary_pos_embed=false, "
                "video_mixer_rank=null, video_base_size[0]=1"
            )
        if (self.text_token_dim is None) != (self.text_token_len is None):
            raise InvalidConfigError("text_token_dim and text_token_len must both be set (t2i) or both null (c2i)")
        if self.image_stride < 1 or self.image_stride > 16:
            raise InvalidConfigError(f"image_stride={self.image_stride}: expected a VAE stride between 1 and 16")
        unit = self.image_stride * self.video_patch_size
        if any(side % unit for side in self.image_size):
            raise InvalidConfigError(
                f"image_size={list(self.image_size)} must be a multiple of stride × video patch = {unit}"
            )
        if self.image_base_size != self.token_grid:
            raise InvalidConfigError(
                f"image_base_size={list(self.image_base_size)} must equal the token grid {list(self.token_grid)} "
                f"of image_size={list(self.image_size)}"
            )
        if self.video_base_size[1:] != self.context_grid:
            raise InvalidConfigError(
                f"video_base_size[1:]={list(self.video_base_size[1:])} must equal the context grid "
                f"{list(self.context_grid)} of image_size={list(self.image_size)}"
            )


def check_class_labels(labels: list[int], num_classes: int) -> None:
    """Raise InvalidClassLabelError naming every id outside 0..num_classes-1 (the null row is not a class)."""
    bad = sorted({label for label in labels if not isinstance(label, int) or not 0 <= label < num_classes})
    if bad:
        shown = ", ".join(str(label) for label in bad[:10]) + (", …" if len(bad) > 10 else "")
        raise InvalidClassLabelError(f"class id(s) {shown} out of range: this model knows classes 0-{num_classes - 1}")


# ----------------------------------------------------------------------------------------------------
# VAE
# ----------------------------------------------------------------------------------------------------

SDXL_VAE_CLASS = "AutoencoderKL"
MAR_VAE_CLASS = "AutoencoderKLMAR"


@dataclass(frozen=True)
class VAEConfig:
    """Keys of `vae/config.json` (diffusers' AutoencoderKL layout).

    `variant` comes from `_class_name`: "sdxl" for AutoencoderKL, "mar" for AutoencoderKLMAR, whose last
    encoder down block carries `layers_per_block` extra attention layers (docs/architecture.md, "VAE, text encoder, scheduler").
    `scaling_factor` and `shift_factor` map VAE latents to model latents: z = (latent − shift) · scaling.
    """

    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512)
    layers_per_block: int = 2
    latent_channels: int = 4
    norm_num_groups: int = 32
    scaling_factor: float = 0.13025  # SDXL's value; the MAR VAE uses 0.2325
    shift_factor: float | None = None
    sample_size: int = 1024
    down_block_types: tuple[str, ...] | None = None
    up_block_types: tuple[str, ...] | None = None
    act_fn: str = "silu"
    force_upcast: bool = True
    double_z: bool = True  # written by the authors' VAE classes; the encoder outputs mean ‖ logvar
    latents_mean: Any = None
    latents_std: Any = None
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    mid_block_add_attention: bool = True
    variant: Literal["sdxl", "mar"] = "sdxl"

    def __post_init__(self) -> None:
        for name in ("block_out_channels", "down_block_types", "up_block_types"):
            value = getattr(self, name)
            object.__setattr__(self, name, tuple(value) if value is not None else None)
        if self.act_fn != "silu" or not (self.use_quant_conv and self.use_post_quant_conv):
            raise InvalidConfigError(
                "vae/config.json: only act_fn='silu' with quant_conv and post_quant_conv is supported"
            )
        if not self.mid_block_add_attention or not self.double_z:
            raise InvalidConfigError("vae/config.json: mid_block_add_attention=false and double_z=false are not supported")

    @property
    def stride(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "VAEConfig":
        class_name = data.get("_class_name", SDXL_VAE_CLASS)
        known = {f.name for f in dataclasses.fields(cls)} - {"variant"}
        data = _check_keys(cls.__name__, data, known, set())
        return cls(**data, variant="mar" if class_name == MAR_VAE_CLASS else "sdxl")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in data.items() if k != "variant"}
        return {"_class_name": MAR_VAE_CLASS if self.variant == "mar" else SDXL_VAE_CLASS, **data}


# ----------------------------------------------------------------------------------------------------
# Scheduler
# ----------------------------------------------------------------------------------------------------

# diffusers FlowMatchEulerDiscreteScheduler options and the values that make it the plain shifted Euler
# sampler LINA uses; any other value would change the sigmas, so it is refused rather than ignored.
_NEUTRAL_SCHEDULER_OPTIONS: dict[str, Any] = {
    "use_dynamic_shifting": False,
    "base_shift": None,
    "max_shift": None,
    "base_image_seq_len": None,
    "max_image_seq_len": None,
    "invert_sigmas": False,
    "shift_terminal": None,
    "use_karras_sigmas": False,
    "use_exponential_sigmas": False,
    "use_beta_sigmas": False,
    "time_shift_type": None,
    "stochastic_sampling": False,
}


@dataclass(frozen=True)
class SchedulerConfig:
    """Keys of `scheduler/scheduler_config.json` (flow-matching Euler)."""

    num_train_timesteps: int = 1000
    shift: float = 1.0

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SchedulerConfig":
        known = {"num_train_timesteps", "shift"} | set(_NEUTRAL_SCHEDULER_OPTIONS)
        data = _check_keys(cls.__name__, data, known, set())
        for key, neutral in _NEUTRAL_SCHEDULER_OPTIONS.items():
            value = data.pop(key, neutral)
            # base/max shift values are only read when dynamic shifting is on
            if key in ("base_shift", "max_shift", "base_image_seq_len", "max_image_seq_len", "time_shift_type"):
                continue
            if value != neutral:
                raise InvalidConfigError(f"scheduler_config.json: {key}={value!r} is not supported (expected {neutral!r})")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        return {"_class_name": "FlowMatchEulerDiscreteScheduler", **dataclasses.asdict(self)}


# ----------------------------------------------------------------------------------------------------
# Released configurations (the three hub repos)
# ----------------------------------------------------------------------------------------------------

_RELEASED_ARCH = ("vit_d16w1536", "vit_d32w1536", "mlp_d6w1536")


def released_transformer_config(task: Literal["t2i", "c2i"], resolution: int) -> TransformerConfig:
    """The transformer config of a released checkpoint: ("c2i", 256), ("t2i", 512) or ("t2i", 1024)."""
    if (task, resolution) == ("c2i", 256):
        return TransformerConfig(
            image_dim=16, image_size=(256, 256), image_stride=16, image_base_size=(16, 16),
            video_base_size=(1, 8, 8), arch=_RELEASED_ARCH,
        )
    if task == "t2i" and resolution in (512, 1024):
        grid = resolution // 16
        return TransformerConfig(
            image_dim=4, image_size=(resolution, resolution), image_stride=8, image_base_size=(grid, grid),
            video_base_size=(1, grid // 2, grid // 2), arch=_RELEASED_ARCH, text_token_dim=2560, text_token_len=256,
        )
    raise InvalidConfigError(f"no released LINA model for task={task!r} at {resolution}px")
