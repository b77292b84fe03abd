"""What an image records about how it was made, and how that is stored in a PNG.

Two text chunks are written : `parameters`, in the AUTOMATIC1111 format that sd.cpp,
A1111's "PNG info" and gallery tools read, and `lina`, the full record as JSON, which `lina info` prints and
`lina generate --from-metadata` replays. PIL writes a chunk as tEXt when its text is Latin-1, else as iTXt.
"""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import MetadataError

PARAMETERS_KEY = "parameters"
METADATA_KEY = "lina"
METADATA_VERSION = 1  # bump when a field changes meaning; readers refuse newer versions
REVISION_SHOWN = 10  # characters of the commit shown as A1111's "Model hash"


@dataclass(frozen=True)
class ImageMetadata:
    """Everything needed to make an image again, plus provenance (versions, device).

    `model` is what `--model` received (alias, repo id, or an absolute folder path); `revision` is the hub
    commit the weights came from (None for a plain folder). `size` is (height, width) in pixels.
    """

    model: str
    repo_id: str | None
    revision: str | None
    task: str
    index: int
    seed: int
    prompt: str | None
    negative_prompt: str | None
    class_label: int | None
    size: tuple[int, int]
    ar_steps: int
    diffusion_steps: int
    cfg: float
    cfg_min: float | None
    dtype: str
    device: str
    lina_version: str
    torch_version: str
    kernels: str = "reference"  # the op set (`models.ops`); records from before it existed used the reference

    # ------------------------------------------------------------------------------- identity ----

    def recipe(self) -> tuple:
        """The fields that decide the pixels, up to the device's arithmetic: equal recipes = the same image.

        The index is left out on purpose: image i of one run and image 0 of `--from-metadata` are the same.
        """
        return (
            self.repo_id or self.model, self.revision, self.task, self.seed, self.prompt, self.negative_prompt,
            self.class_label, tuple(self.size), self.ar_steps, self.diffusion_steps, self.cfg, self.cfg_min, self.dtype,
            self.kernels,
        )

    # --------------------------------------------------------------------------------- encode ----

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["size"] = list(self.size)
        return {"version": METADATA_VERSION, **data}

    @classmethod
    def from_json(cls, data: dict[str, Any], origin: str = "metadata") -> "ImageMetadata":
        version = data.get("version")
        if not isinstance(version, int) or version > METADATA_VERSION:
            raise MetadataError(f"{origin}: lina metadata version {version!r} is not supported (this lina reads ≤ {METADATA_VERSION})")
        fields = {f.name for f in dataclasses.fields(cls)}
        optional = {f.name for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
        missing = sorted(fields - optional - set(data))
        if missing:
            raise MetadataError(f"{origin}: lina metadata lacks {missing}")
        values = {name: data[name] for name in fields if name in data}
        values["size"] = tuple(values["size"])
        return cls(**values)

    def parameters_text(self) -> str:
        """AUTOMATIC1111-style parameters: prompt, optional negative prompt, then `Key: value` pairs."""
        lines = [self.prompt if self.prompt is not None else f"class {self.class_label}"]
        if self.negative_prompt:
            lines.append(f"Negative prompt: {self.negative_prompt}")
        pairs = [
            ("Steps", self.ar_steps),
            ("Diffusion steps", self.diffusion_steps),
            ("Sampler", "LINA autoregressive + flow Euler"),
            ("CFG scale", self.cfg),
            ("CFG min", self.cfg_min if self.cfg_min is not None else self.cfg),
            ("Seed", self.seed),
            ("Size", f"{self.size[1]}x{self.size[0]}"),
            ("Model", self.repo_id or self.model),
        ]
        if self.revision:
            pairs.append(("Model hash", self.revision[:REVISION_SHOWN]))
        pairs += [("Dtype", self.dtype), ("Kernels", self.kernels), ("Version", f"lina {self.lina_version}")]
        lines.append(", ".join(f"{key}: {value}" for key, value in pairs))
        return "\n".join(lines)


def png_info(metadata: ImageMetadata):
    """The PIL `PngInfo` holding both chunks."""
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text(PARAMETERS_KEY, metadata.parameters_text())
    info.add_text(METADATA_KEY, json.dumps(metadata.to_json(), ensure_ascii=False, sort_keys=True))
    return info


def read_png_text(path: Path) -> dict[str, str]:
    """The text chunks of a PNG (tEXt, zTXt, iTXt), read without decoding pixels when they precede them.

    Resuming a 50k-image run reads every finished file's metadata, so skipping the pixel decode matters; PIL
    writes our chunks before the image data, and chunks placed after it are still found (with a decode).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            found = {key: value for key, value in image.info.items() if isinstance(value, str)}
            if METADATA_KEY not in found:
                found = dict(getattr(image, "text", {}) or {})
            return found
    except (UnidentifiedImageError, SyntaxError, ValueError) as error:
        raise MetadataError(f"{path} is not a readable image: {error}") from error


def read_metadata(path: Path) -> ImageMetadata:
    """The lina record of an image written by `lina generate`; MetadataError if it has none."""
    text = read_png_text(Path(path)).get(METADATA_KEY)
    if text is None:
        raise MetadataError(f"{path} has no lina metadata (no '{METADATA_KEY}' text chunk)")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise MetadataError(f"{path}: the lina metadata is not valid JSON ({error.msg})") from error
    if not isinstance(data, dict):
        raise MetadataError(f"{path}: the lina metadata is not a JSON object")
    return ImageMetadata.from_json(data, str(path))
