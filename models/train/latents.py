"""Caches computed once per dataset: VAE moments and conditions of every image, and the frozen text encoder's features.

The authors train on cached VAE moments (mean ‖ logvar, fp16) and cached Phi-2 prompt features, drawing a fresh
latent from each posterior at every step (docs/training.md). Each cache is a safetensors file in the run's
`cache/` folder named by a content hash of everything it depends on (the data spec, the VAE's or text
encoder's files), so a changed dataset or component gives a new file and an unchanged one is never re-encoded.
A JSON sidecar holds the spec and the unique captions; the safetensors file is written last, so its presence
means the cache is complete.
Shapes: N images, C latent channels, h × w latent grid, U unique captions, R feature rows in all, P text rows.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models.files import write_atomic, write_json_atomic
from models.network.text_encoder import PhiTextEncoder
from models.network.vae import AutoencoderKL
from models.train.data import ImageSource, iter_batches, to_unit_range

CACHE_DTYPE = torch.float16  # what the authors cache moments and prompt features in
NO_CAPTION = -1
KEY_LENGTH = 16  # hex digits of the content hash in a cache file name


def content_key(spec: dict[str, Any]) -> str:
    """A short hash of a JSON-able spec (keys sorted), for cache file names."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:KEY_LENGTH]


def folder_fingerprint(folder: Path) -> str:
    """SHA-256 of every file of a component folder (names and bytes): the identity of a VAE or text encoder."""
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file() and not p.name.startswith(".")):
        digest.update(f"{path.relative_to(folder)}\0".encode())
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 24), b""):
                digest.update(block)
    return digest.hexdigest()


def _save(path: Path, tensors: dict[str, torch.Tensor], sidecar: dict[str, Any]) -> None:
    write_json_atomic(path.with_suffix(".json"), sidecar)
    state = {name: tensor.contiguous() for name, tensor in tensors.items()}
    write_atomic(path, lambda tmp: save_file(state, str(tmp)))


def _read_sidecar(path: Path) -> dict[str, Any]:
    return json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))


# ----------------------------------------------------------------------------------------------------
# VAE moments and conditions
# ----------------------------------------------------------------------------------------------------


@dataclass
class LatentCache:
    """Every image's posterior and condition.

    Attributes:
        moments: mean ‖ logvar, [N, 2C, h, w] in CACHE_DTYPE.
        class_ids: [N] long, NO_CLASS for images without one.
        caption_ids: [N] long index into `captions`, NO_CAPTION for images without one.
        captions: the unique captions, in order of first appearance.
    """

    moments: torch.Tensor
    class_ids: torch.Tensor
    caption_ids: torch.Tensor
    captions: list[str]

    def __len__(self) -> int:
        return self.moments.shape[0]

    def to(self, device: torch.device) -> "LatentCache":
        moments, class_ids, caption_ids = (t.to(device) for t in (self.moments, self.class_ids, self.caption_ids))
        return LatentCache(moments, class_ids, caption_ids, self.captions)


def latent_cache_path(cache_dir: Path, source: ImageSource, vae_folder: Path) -> Path:
    """Where the moments of `source` under the VAE in `vae_folder` are (or will be) cached."""
    key = content_key({"data": source.spec(), "vae": folder_fingerprint(vae_folder)})
    return Path(cache_dir) / f"latents-{key}.safetensors"


@torch.no_grad()
def build_latent_cache(
    path: Path,
    source: ImageSource,
    vae: AutoencoderKL,
    image_size: int,
    *,
    batch_size: int = 64,
    workers: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> LatentCache:
    """Encode every image of `source` with `vae` (on its device and dtype) and write the cache at `path`.

    Args:
        path: from `latent_cache_path`.
        progress: called as progress(images_done, images_total) after each batch.
    """
    parameter = next(vae.parameters())
    moments, class_ids, caption_ids, captions, index_of = [], [], [], [], {}
    done = 0
    for pixels, texts, labels in iter_batches(source, list(range(len(source))), image_size, batch_size, workers):
        mean, logvar = vae.encode(to_unit_range(pixels).to(device=parameter.device, dtype=parameter.dtype))
        moments.append(torch.cat([mean, logvar], dim=1).to(device="cpu", dtype=CACHE_DTYPE))
        class_ids.append(labels.long())
        for text in texts:
            if text and text not in index_of:
                index_of[text] = len(captions)
                captions.append(text)
        caption_ids.append(torch.tensor([index_of[t] if t else NO_CAPTION for t in texts], dtype=torch.long))
        done += len(texts)
        if progress is not None:
            progress(done, len(source))
    cache = LatentCache(torch.cat(moments), torch.cat(class_ids), torch.cat(caption_ids), captions)
    tensors = {"moments": cache.moments, "class_ids": cache.class_ids, "caption_ids": cache.caption_ids}
    _save(Path(path), tensors, {"data": source.spec(), "captions": captions})
    return cache


def load_latent_cache(path: Path) -> LatentCache:
    tensors = load_file(str(path))
    captions = _read_sidecar(Path(path))["captions"]
    return LatentCache(tensors["moments"], tensors["class_ids"], tensors["caption_ids"], captions)


# ----------------------------------------------------------------------------------------------------
# Text features
# ----------------------------------------------------------------------------------------------------


@dataclass
class TextFeatures:
    """The text encoder's rows of every unique caption, concatenated.

    Attributes:
        rows: [R, text_dim] in CACHE_DTYPE; caption u owns rows offsets[u] … offsets[u+1]−1.
        offsets: [U + 1] long.
    """

    rows: torch.Tensor
    offsets: torch.Tensor

    def to(self, device: torch.device) -> "TextFeatures":
        return TextFeatures(self.rows.to(device), self.offsets.to(device))

    def batch(self, caption_ids: torch.Tensor, null_rows: torch.Tensor) -> torch.Tensor:
        """The [B, P, text_dim] feature matrices of captions [B]: each caption's rows, then null rows up to P.

        The same matrix `TextEmbed.build_features` makes at inference (docs/architecture.md, "Conditioning
        and context"), in `null_rows`' dtype ([P, text_dim]).
        """
        num_rows = null_rows.shape[0]
        start = self.offsets[caption_ids]  # [B]
        length = self.offsets[caption_ids + 1] - start
        position = torch.arange(num_rows, device=start.device)  # [P]
        valid = position < length[:, None]  # [B, P]
        if self.rows.shape[0] == 0:
            return null_rows.expand(len(caption_ids), -1, -1).clone()
        index = (start[:, None] + position).clamp_(max=self.rows.shape[0] - 1)
        features = self.rows[index].to(null_rows.dtype)  # [B, P, text_dim]
        return torch.where(valid[..., None], features, null_rows)


def text_cache_path(
    cache_dir: Path, captions: list[str], text_encoder_folder: Path, tokenizer_folder: Path, max_tokens: int
) -> Path:
    """Where the features of `captions` (at most `max_tokens` rows each) under this text encoder are cached."""
    spec = {
        "captions": hashlib.sha256("\n".join(captions).encode()).hexdigest(),
        "text_encoder": folder_fingerprint(text_encoder_folder),
        "tokenizer": folder_fingerprint(tokenizer_folder),
        "max_tokens": max_tokens,
    }
    return Path(cache_dir) / f"text-{content_key(spec)}.safetensors"


@torch.no_grad()
def build_text_features(
    path: Path, captions: list[str], text_encoder: PhiTextEncoder, max_tokens: int, *, batch_size: int = 256
) -> TextFeatures:
    """Encode every unique caption once (`PhiTextEncoder.encode`, at most `max_tokens` rows) and write the cache."""
    rows, lengths = [], [0]
    for start in range(0, len(captions), batch_size):
        for features in text_encoder.encode(captions[start : start + batch_size], max_tokens):
            rows.append(features.to(device="cpu", dtype=CACHE_DTYPE))
            lengths.append(features.shape[0])
    width = text_encoder.hidden_size
    cache = TextFeatures(
        torch.cat(rows) if rows else torch.zeros(0, width, dtype=CACHE_DTYPE),
        torch.tensor(lengths, dtype=torch.long).cumsum(0),
    )
    sidecar = {"captions": len(captions), "max_tokens": max_tokens}
    _save(Path(path), {"rows": cache.rows, "offsets": cache.offsets}, sidecar)
    return cache


def load_text_features(path: Path) -> TextFeatures:
    tensors = load_file(str(path))
    return TextFeatures(tensors["rows"], tensors["offsets"])
