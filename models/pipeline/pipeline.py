"""The generation pipeline: load a LINA folder, turn prompts or class labels into images.

`load_pipeline("lina-t2i-1024")` resolves a released alias, a hub repo id or a local folder, builds the
components (transformer, VAE, scheduler, and for text-to-image Phi-2 + tokenizer) and returns a
`LinaPipeline`. Which components are loaded is decided by the folder contents and
`transformer/config.json`, never by the module strings in `model_index.json`.
"""

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from models.constants import (
    BUNDLED_MODELS,
    CONFIG_NAME,
    MODEL_INDEX_NAME,
    RELEASED_MODELS,
    SAMPLING_DEFAULTS_KEY,
    SCHEDULER_FOLDER,
    TEXT_ENCODER_FOLDER,
    TOKENIZER_FOLDER,
    TRANSFORMER_FOLDER,
    VAE_FOLDER,
)
from models.errors import (
    CheckpointMismatchError,
    InvalidConfigError,
    InvalidPromptError,
    MissingComponentError,
)
from models.files import read_json, write_json_atomic
from models.network.config import TransformerConfig, VAEConfig, check_class_labels
from models.network.transformer import LinaTransformer
from models.network.vae import AutoencoderKL, vae_compute_dtype
from models.ops import resolve_kernels
from models.pipeline.devices import resolve_device, resolve_dtype
from models.pipeline.hub import repo_id_for, resolve_model_path
from models.pipeline.requests import Condition, ImageRequest, build_requests
from models.sampling.cuda_graphs import HeadGraphCache
from models.sampling.sampler import sample_latents
from models.sampling.scheduler import FlowMatchEulerScheduler
from models.sampling.settings import SamplingSettings, sampling_settings_for

logger = logging.getLogger(__name__)

@dataclass(frozen=True)
class ModelSource:
    """Where a pipeline came from, for metadata and `lina info`."""

    name: str
    path: Path
    repo_id: str | None = None
    revision: str | None = None  # the resolved commit of a hub snapshot


@dataclass
class GenerationOutput:
    images: list
    seeds: list[int]
    latents: torch.Tensor | None = None


class LinaPipeline:
    """Transformer + VAE + scheduler (+ Phi-2 text encoder for t2i), on one device and dtype."""

    def __init__(
        self,
        transformer: LinaTransformer,
        vae: AutoencoderKL,
        scheduler: FlowMatchEulerScheduler,
        text_encoder=None,
        source: ModelSource | None = None,
        sampling_defaults: SamplingSettings | None = None,
    ):
        self.transformer, self.vae, self.scheduler, self.text_encoder = transformer, vae, scheduler, text_encoder
        self.source = source
        # The sampler settings this model was made for; None: the paper's for its task (`SAMPLING_DEFAULTS`).
        self.sampling_defaults = sampling_defaults
        parameter = next(transformer.parameters())
        self.device, self.dtype = parameter.device, parameter.dtype
        # The head loop is replayed from CUDA graphs on CUDA (bit-identical, far less launch overhead);
        # set `head_graphs = None` to run it eagerly.
        self.head_graphs = HeadGraphCache() if self.device.type == "cuda" else None
        if self.config.is_text_conditioned and text_encoder is None:
            raise MissingComponentError("a text-to-image pipeline needs a text encoder (text_encoder/ and tokenizer/)")

    # ---------------------------------------------------------------------------------- facts ----

    @property
    def config(self) -> TransformerConfig:
        return self.transformer.config

    @property
    def task(self) -> str:
        return self.config.task

    @property
    def image_size(self) -> tuple[int, int]:
        return self.config.image_size

    @property
    def num_classes(self) -> int | None:
        return None if self.config.is_text_conditioned else self.config.num_classes

    def check_size(self, size: int | tuple[int, int]) -> None:
        """Raise UnsupportedSizeError unless `size` (pixels; int = square) is the checkpoint's resolution."""
        self.config.check_size(size)

    def default_settings(self) -> SamplingSettings:
        """The model folder's own sampler settings, else the paper's for its task (`SAMPLING_DEFAULTS`)."""
        return self.sampling_settings()

    def sampling_settings(
        self,
        ar_steps: int | None = None,
        diffusion_steps: int | None = None,
        cfg: float | None = None,
        cfg_min: float | None = None,
    ) -> SamplingSettings:
        """Unset sampler options filled with this model's defaults (`models.sampling.settings.sampling_settings_for`)."""
        return sampling_settings_for(self.task, ar_steps, diffusion_steps, cfg, cfg_min, defaults=self.sampling_defaults)

    # ----------------------------------------------------------------------------- generation ----

    def _conditions(self, requests: list[ImageRequest]) -> tuple[torch.Tensor, torch.Tensor]:
        """Condition and null-condition tokens [B, P, D] of a batch of requests."""
        if self.config.is_text_conditioned:
            if any(r.prompt is None for r in requests):
                raise InvalidPromptError("this is a text-to-image model: every request needs a prompt")
            max_tokens = self.config.text_token_len
            positives = self.text_encoder.encode([r.prompt for r in requests], max_tokens)
            negatives = self.text_encoder.encode([r.negative_prompt or "" for r in requests], max_tokens)
            return (
                self.transformer.condition_tokens_from_text(positives),
                self.transformer.condition_tokens_from_text(negatives),
            )
        labels = [r.class_label for r in requests]
        check_class_labels(labels, self.config.num_classes)
        return self.transformer.label_conditions(torch.tensor(labels, device=self.device))

    @torch.inference_mode()
    def sample_latents(
        self,
        requests: list[ImageRequest],
        settings: SamplingSettings | None = None,
        *,
        progress: Callable[[int, int], None] | None = None,
    ) -> torch.Tensor:
        """Latents [B, C, H/s, W/s] (model space, compute dtype) for a batch of requests.

        Image i draws all its noise from `torch.Generator(device).manual_seed(requests[i].seed)`, so batching
        never changes its random numbers; batched matrix kernels may still round differently than B = 1.
        """
        if not requests:
            raise InvalidPromptError("nothing to generate: the request list is empty")
        condition, null_condition = self._conditions(requests)
        generators = [torch.Generator(self.device).manual_seed(r.seed) for r in requests]
        return sample_latents(
            self.transformer, self.scheduler, condition, null_condition, generators,
            settings or self.default_settings(), progress, self.head_graphs,
        )

    @torch.inference_mode()
    def decode(self, latents: torch.Tensor, *, vae_batch_size: int = 1) -> list:
        """Decode model latents to PIL images; pixels are truncated to uint8 like the reference."""
        from PIL import Image

        vae_dtype = next(self.vae.parameters()).dtype
        images = self.vae.decode_latents(latents.to(vae_dtype), batch_size=vae_batch_size)  # [B, 3, H, W]
        pixels = images.permute(0, 2, 3, 1).mul(127.5).add_(127.5).clamp(0, 255).byte().cpu().numpy()
        return [Image.fromarray(array) for array in pixels]

    def __call__(
        self,
        prompts: list[str] | str | None = None,
        class_labels: list[int] | int | None = None,
        *,
        seed: int = 0,
        num_images_per_prompt: int = 1,
        ar_steps: int | None = None,
        diffusion_steps: int | None = None,
        cfg: float | None = None,
        cfg_min: float | None = None,
        negative_prompt: str | None = None,
        batch_size: int | None = None,
        return_latents: bool = False,
        progress: Callable[[int, int], None] | None = None,
    ) -> GenerationOutput:
        """Generate `num_images_per_prompt` images per prompt (t2i) or class label (c2i).

        Image i = prompt_index · num_images_per_prompt + j uses seed + i. Unset sampler options are
        filled by `sampling_settings`.
        """
        requests = self.build_requests(
            prompts, class_labels, seed=seed, num_images_per_prompt=num_images_per_prompt, negative_prompt=negative_prompt
        )
        settings = self.sampling_settings(ar_steps, diffusion_steps, cfg, cfg_min)
        step = batch_size or len(requests)
        latents = torch.cat(
            [self.sample_latents(requests[i : i + step], settings, progress=progress) for i in range(0, len(requests), step)]
        )
        images = self.decode(latents)
        return GenerationOutput(images=images, seeds=[r.seed for r in requests], latents=latents if return_latents else None)

    def build_requests(
        self,
        prompts: list[str] | str | None,
        class_labels: list[int] | int | None,
        *,
        seed: int,
        num_images_per_prompt: int = 1,
        negative_prompt: str | None = None,
    ) -> list[ImageRequest]:
        """One request per image, seeds seed, seed+1, … in prompt-major order (`models.pipeline.requests`)."""
        text = self.config.is_text_conditioned
        if text and (class_labels is not None or prompts is None):
            raise InvalidPromptError("this text-to-image model takes prompts, not class labels")
        if not text and (prompts is not None or class_labels is None):
            raise InvalidPromptError("this class-conditional model takes class labels, not prompts")
        items = prompts if text else class_labels
        items = [items] if isinstance(items, (str, int)) else list(items)
        if not items:
            raise InvalidPromptError("nothing to generate: the prompt / class list is empty")
        conditions = [Condition(prompt=item) if text else Condition(class_label=item) for item in items]
        return build_requests(conditions, seed=seed, num_images=num_images_per_prompt, negative_prompt=negative_prompt)

    # ----------------------------------------------------------------------------- save / load ----

    def save_pretrained(self, folder: str | Path) -> None:
        """Write the folder layout `load_pipeline` reads (safetensors weights, diffusers' file names)."""
        folder = Path(folder)
        self.transformer.save_pretrained(folder / TRANSFORMER_FOLDER)
        self.vae.save_pretrained(folder / VAE_FOLDER)
        self.scheduler.save_pretrained(folder / SCHEDULER_FOLDER)
        index = {
            "_class_name": "NOVAPipeline" if self.config.is_text_conditioned else "NOVAC2IPipeline",
            TRANSFORMER_FOLDER: ["lina", "LinaTransformer"],
            VAE_FOLDER: ["lina", "AutoencoderKL"],
            SCHEDULER_FOLDER: ["lina", "FlowMatchEulerScheduler"],
        }
        if self.text_encoder is not None:
            self.text_encoder.save_pretrained(folder / TEXT_ENCODER_FOLDER, folder / TOKENIZER_FOLDER)
            index |= {TEXT_ENCODER_FOLDER: ["lina", "PhiTextEncoder"], TOKENIZER_FOLDER: ["transformers", "CodeGenTokenizerFast"]}
        if self.sampling_defaults is not None:
            index[SAMPLING_DEFAULTS_KEY] = dataclasses.asdict(self.sampling_defaults)
        write_json_atomic(folder / MODEL_INDEX_NAME, index)


def _snapshot_revision(path: Path) -> str | None:
    """The commit of a hub snapshot folder (…/snapshots/<commit>), or None for a plain folder."""
    return path.name if path.parent.name == "snapshots" else None


def load_pipeline(
    name_or_path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    offline: bool | None = None,
    cache_dir: str | Path | None = None,
    attention: str | None = None,
    kernels: str = "auto",
    check_config: Callable[[TransformerConfig], None] | None = None,
    offload_text_encoder: bool = False,
) -> LinaPipeline:
    """Load a LINA pipeline from a folder, a released alias or a hub repo id.

    Args:
        name_or_path: folder, alias (`lina-t2i-1024`, `lina-t2i-512`, `lina-c2i-256`, the bundled `lina-shapes`) or
            `owner/name`.
        device: None → CUDA if available, else CPU.
        dtype: torch dtype, "auto", "bf16"/"fp16"/"fp32" or torch's names ("bfloat16", ...); auto = bf16 on CUDA,
            fp32 on CPU.
        revision: hub branch, tag or commit.
        offline: use only the local Hugging Face cache (None reads HF_HUB_OFFLINE).
        cache_dir: Hugging Face hub cache (None: HF_HUB_CACHE / HF_HOME).
        attention: override the transformer's attention type ("linear" or "softmax").
        kernels: "auto" (fused on a CUDA GPU of compute capability ≥ 8.0 when Triton imports, else
            reference), "fused" (Triton kernels, CUDA only: the same images up to bf16 rounding, about twice as
            fast) or "reference" (plain PyTorch: bit-identical to the authors' code).
        check_config: called with the folder's transformer config before any weight is read, so a run the model
            cannot do (another task, size or class) fails at once; it raises to refuse.
        offload_text_encoder: on a GPU, keep the text encoder's weights in CPU memory and stream them to the GPU
            a layer at a time only while prompts are encoded, so sampling and decoding run without them (Phi-2 is
            5 GiB in bf16); it costs a copy of them per batch (docs/performance.md, "Memory").
    """
    path = resolve_model_path(name_or_path, revision=revision, offline=offline, cache_dir=cache_dir)
    # Proves this is a pipeline folder; its module strings are not used, only lina's own sampler entry.
    sampling_defaults = _sampling_defaults(read_json(path / MODEL_INDEX_NAME, "pipeline"), path)
    if check_config is not None:
        check_config(TransformerConfig.from_dict(read_json(path / TRANSFORMER_FOLDER / CONFIG_NAME, "transformer")))
    device = resolve_device(device)
    dtype = resolve_dtype(dtype, device)

    transformer = LinaTransformer.from_pretrained(path / TRANSFORMER_FOLDER, device=device, dtype=dtype, attention=attention)
    transformer.set_kernels(resolve_kernels(kernels, device))
    vae_folder = path / VAE_FOLDER
    vae_config = VAEConfig.from_dict(read_json(vae_folder / CONFIG_NAME, "vae"))
    vae = AutoencoderKL.from_pretrained(vae_folder, device=device, dtype=vae_compute_dtype(dtype, vae_config))
    if (vae.config.stride, vae.config.latent_channels) != (transformer.config.image_stride, transformer.config.image_dim):
        raise CheckpointMismatchError(
            f"{vae_folder} has stride {vae.config.stride} and {vae.config.latent_channels} latent channels, but the "
            f"transformer expects image_stride={transformer.config.image_stride}, image_dim={transformer.config.image_dim}"
        )

    scheduler_folder = path / SCHEDULER_FOLDER
    if scheduler_folder.is_dir():
        scheduler = FlowMatchEulerScheduler.from_pretrained(scheduler_folder)
    else:
        logger.warning("%s has no scheduler/ folder; using the NOVA flow scheduler (1000 steps, shift 1)", path)
        scheduler = FlowMatchEulerScheduler()

    text_encoder = None
    if transformer.config.is_text_conditioned:
        from models.network.text_encoder import PhiTextEncoder

        for folder in (TEXT_ENCODER_FOLDER, TOKENIZER_FOLDER):
            if not (path / folder).is_dir():
                raise MissingComponentError(f"{path} is a text-to-image model but has no {folder}/ folder")
        text_encoder = PhiTextEncoder.from_pretrained(
            path / TEXT_ENCODER_FOLDER, path / TOKENIZER_FOLDER, device=device, dtype=dtype,
            offload=offload_text_encoder and device.type != "cpu",
        )

    name = str(name_or_path)
    local = name in BUNDLED_MODELS or Path(name).expanduser().is_dir()
    repo_id = repo_id_for(name) if (name in RELEASED_MODELS or not local) else None
    source = ModelSource(name=name, path=path, repo_id=repo_id, revision=_snapshot_revision(path))
    return LinaPipeline(transformer, vae, scheduler, text_encoder, source, sampling_defaults)


def _sampling_defaults(index: dict, path: Path) -> SamplingSettings | None:
    """The folder's own sampler settings (`SAMPLING_DEFAULTS_KEY` in model_index.json), or None."""
    entry = index.get(SAMPLING_DEFAULTS_KEY)
    if entry is None:
        return None
    try:
        return SamplingSettings(**entry)
    except (TypeError, ValueError) as error:
        raise InvalidConfigError(
            f"{path / MODEL_INDEX_NAME}: {SAMPLING_DEFAULTS_KEY} {entry!r} is not a set of sampler settings "
            f"(ar_steps, diffusion_steps, cfg, cfg_min): {error}"
        ) from error
