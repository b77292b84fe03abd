"""GenEval end to end: make the benchmark's images in its folder layout, then score a folder into `results.jsonl`.

Generation goes through the same engine as `lina generate` (`models.runs.generation.generate`): the seed
contract (image j of prompt p uses seed + p·n + j), resume (finished PNGs are skipped), atomic writes, and
torchrun sharding by the caller. Each prompt gets GenEval's folder (`layout.py`), its metadata line written
as is, whatever text the model was conditioned on (the prompt, or the authors' rewritten `dense_prompt`).

Scoring runs a detector (`detector.py`), GenEval's rules (`rules.py`) and the CLIP colour classifier
(`colour.py`) on every image GenEval would score, writes `results.jsonl` in GenEval's format, and beside it
`results.protocol.json`: the prompts used, the detector backend and weights, CLIP's weights, each with its SHA-256.
"""

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.errors import GenEvalFileError, MetadataError
from models.eval.fid.images import sha256_file
from models.eval.geneval.layout import (
    prompt_folders,
    read_prompt_metadata,
    sample_images,
    sample_path,
    write_prompt_metadata,
)
from models.eval.geneval.prompts import metadata_problem
from models.eval.geneval.results import ResultLine, write_results
from models.eval.geneval.rules import DEFAULT_RULES, RuleSettings, evaluate, filter_detections
from models.eval.geneval.summary import Summary, summarize
from models.files import write_atomic
from models.pipeline.requests import Condition, ImageRequest, build_requests
from models.runs.metadata import read_metadata
from models.version import __version__

if TYPE_CHECKING:
    from models.eval.geneval.colour import ColourClassifier
    from models.eval.geneval.detector import Detector
    from models.pipeline.pipeline import LinaPipeline
    from models.runs.distributed import DistributedContext
    from models.runs.generation import GenerationEvents, ImageResult, RunOptions
    from models.sampling.settings import SamplingSettings

GENEVAL_SEED = 1337  # the seed of the LINA authors' GenEval runs (their evaluations/geneval/sample.py)
IMAGES_PER_PROMPT = 4  # GenEval's protocol: 553 prompts x 4 = 2212 images
RESULTS_NAME = "results.jsonl"
PROTOCOL_SUFFIX = ".protocol.json"
ORIGINAL, REWRITTEN = "original", "rewritten"

# What scoring reports while it works: (images done, images in all).
ScoreProgress = Callable[[int, int], None]


@dataclass(frozen=True)
class PromptsUsed:
    """Which prompts a run used: the metadata file it is scored against, and what the model was conditioned on."""

    conditioning: str  # "original", "rewritten", or for a folder made elsewhere what its PNGs record
    metadata: Path | None = None
    rewritten: Path | None = None

    def to_json(self) -> dict[str, Any]:
        def record(path: Path | None) -> dict[str, str] | None:
            return {"path": str(path.resolve()), "sha256": sha256_file(path)} if path is not None else None

        return {"conditioning": self.conditioning, "metadata": record(self.metadata), "rewritten": record(self.rewritten)}


# ----------------------------------------------------------------------------------------------------
# Generation
# ----------------------------------------------------------------------------------------------------


def geneval_conditions(prompts: list[str]) -> list[Condition]:
    """One condition per metadata line, in order: the text line i is generated from."""
    return [Condition(prompt=text) for text in prompts]


def geneval_paths(requests: list[ImageRequest], out_dir: Path, images_per_prompt: int) -> dict[int, Path]:
    """Each request's PNG in GenEval's layout: image j of prompt p (request p·n + j) → `<p:05d>/samples/<j:05d>.png`."""
    return {r.index: sample_path(out_dir, r.index // images_per_prompt, r.index % images_per_prompt) for r in requests}


def write_metadata_files(out_dir: Path, metadata_lines: list[dict[str, Any]]) -> None:
    """Write each prompt's `<index:05d>/metadata.jsonl` (its metadata line as is), atomically."""
    for index, line in enumerate(metadata_lines):
        write_prompt_metadata(out_dir, index, line)


def generate_geneval(
    pipe: "LinaPipeline",
    metadata_lines: list[dict[str, Any]],
    out_dir: Path,
    *,
    settings: "SamplingSettings",
    options: "RunOptions",
    events: "GenerationEvents",
    model: str,
    prompts: list[str] | None = None,
    images_per_prompt: int = IMAGES_PER_PROMPT,
    seed: int = GENEVAL_SEED,
    context: "DistributedContext | None" = None,
) -> list["ImageResult"]:
    """Make (or resume) a GenEval image folder; under torchrun each process makes its share.

    Args:
        pipe: a loaded text-to-image `LinaPipeline`.
        metadata_lines: GenEval's metadata, in order (`prompts.read_metadata`); line i goes to folder i.
        out_dir: the folder to fill.
        settings, options, events, model: as `models.runs.generation.generate` takes them.
        prompts: what to condition line i on (`prompts.conditioning_prompts`); None: the metadata's prompts.
        images_per_prompt, seed: 4 images per prompt and the base seed of the seed contract.
        context: torchrun's place of this process; None for a single process.

    Returns:
        This process's images, each written now or found finished.
    """
    from models.runs.generation import generate

    texts = prompts if prompts is not None else [line["prompt"] for line in metadata_lines]
    if len(texts) != len(metadata_lines):
        raise GenEvalFileError(f"{len(texts)} conditioning prompts for {len(metadata_lines)} metadata lines")
    if context is None or context.is_main:
        write_metadata_files(out_dir, metadata_lines)
    requests = build_requests(geneval_conditions(texts), seed=seed, num_images=images_per_prompt)
    paths = geneval_paths(requests, out_dir, images_per_prompt)
    mine = context.shard(requests) if context is not None else requests
    return generate(pipe, mine, paths, settings, model=model, options=options, events=events)


# ----------------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScoringJob:
    """One image to score: its path, its prompt's index and metadata."""

    path: Path
    index: int
    metadata: dict[str, Any]


@dataclass(frozen=True)
class GenEvalScore:
    """A scored folder: the result lines (written to `results`), their summary, and the protocol record."""

    lines: list[ResultLine]
    summary: Summary
    results: Path
    protocol: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {**self.summary.to_json(), "results": str(self.results), "protocol": self.protocol}


def scoring_jobs(folder: Path) -> list[ScoringJob]:
    """Every image GenEval scores under `folder`, by prompt index then sample number.

    Raises:
        GenEvalFileError: no prompt folder or no image; a metadata file the rules cannot judge.
    """
    jobs = []
    for index, prompt_folder in prompt_folders(folder):
        metadata = read_prompt_metadata(prompt_folder)
        problem = metadata_problem(metadata)
        if problem:
            raise GenEvalFileError(f"{prompt_folder / 'metadata.jsonl'}: {problem}")
        jobs.extend(ScoringJob(path, index, metadata) for path in sample_images(prompt_folder))
    if not jobs:
        raise GenEvalFileError(f"{folder}: no images to score; expected <index:05d>/samples/<n>.png files")
    return jobs


def score_images(
    jobs: list[ScoringJob],
    detector: "Detector",
    colour: "ColourClassifier",
    *,
    rules: RuleSettings = DEFAULT_RULES,
    progress: ScoreProgress | None = None,
) -> list[ResultLine]:
    """GenEval's verdict on each image, in job order; the images of one prompt share a detector batch."""
    from PIL import Image, ImageOps

    lines: list[ResultLine] = []
    start = 0
    while start < len(jobs):
        end = start
        while end < len(jobs) and jobs[end].index == jobs[start].index:
            end += 1
        batch = jobs[start:end]
        images = []
        for job in batch:
            with Image.open(job.path) as opened:
                images.append(ImageOps.exif_transpose(opened).convert("RGB"))
        for job, image, raw in zip(batch, images, detector.detect_batch(images), strict=True):
            kept = filter_detections(raw, job.metadata["tag"], settings=rules)
            verdict = evaluate(kept, job.metadata, colour.bind(image), settings=rules)
            lines.append(ResultLine.from_verdict(str(job.path), job.metadata, kept, verdict))
        start = end
        if progress is not None:
            progress(len(lines), len(jobs))
    return lines


def recorded_conditioning(jobs: list[ScoringJob]) -> str:
    """What the images' lina metadata says they were conditioned on: "original", "rewritten", "mixed", or
    "unknown" (images without lina metadata, made by another tool)."""
    kinds = set()
    for job in jobs:
        try:
            prompt = read_metadata(job.path).prompt
        except MetadataError:
            return "unknown"
        kinds.add(ORIGINAL if prompt == job.metadata["prompt"] else REWRITTEN)
    return kinds.pop() if len(kinds) == 1 else "mixed"


def scoring_protocol(
    detector: "Detector",
    colour: "ColourClassifier",
    prompts: PromptsUsed,
    rules: RuleSettings = DEFAULT_RULES,
    generation: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything a GenEval number depends on besides the images, with the SHA-256 of every file."""
    import open_clip
    import torch
    import transformers

    return {
        "benchmark": "GenEval",
        "prompts": prompts.to_json(),
        "detector": detector.info.to_json(),
        "colour": colour.info.to_json(),
        "rules": asdict(rules),
        "generation": generation,
        "versions": {"lina": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
                     "open_clip": open_clip.__version__},
    }


def write_score(results: Path, lines: list[ResultLine], protocol: dict[str, Any]) -> GenEvalScore:
    """Write `results.jsonl` (GenEval's format, sorted by image path) and its protocol file; return the score."""
    ordered = sorted(lines, key=lambda line: line.filename)
    write_results(results, ordered)
    text = json.dumps(protocol, indent=2, ensure_ascii=False) + "\n"
    write_atomic(protocol_path(results), lambda tmp: tmp.write_text(text, encoding="utf-8"))
    return GenEvalScore(ordered, summarize(ordered), results, protocol)


def protocol_path(results: Path) -> Path:
    """`out/results.jsonl` → `out/results.protocol.json`."""
    return results.with_name(results.name.removesuffix(".jsonl") + PROTOCOL_SUFFIX)


def score_geneval_folder(
    folder: Path,
    detector: "Detector",
    colour: "ColourClassifier",
    *,
    results: Path | None = None,
    prompts: PromptsUsed | None = None,
    rules: RuleSettings = DEFAULT_RULES,
    generation: dict[str, Any] | None = None,
    progress: ScoreProgress | None = None,
) -> GenEvalScore:
    """Score a GenEval image folder made by any tool: `results.jsonl` (default: inside the folder), its protocol
    file, and the summary (per-task accuracy, overall = their mean).

    Args:
        folder: `<index:05d>/metadata.jsonl` + `<index:05d>/samples/<n>.png`.
        detector, colour: from `detector.build_detector` and `colour.load_colour_classifier`.
        prompts: the prompts used; None: read from the images' lina metadata where they have it.
        rules: GenEval's thresholds (its defaults unless given).
        generation: how the images were made, recorded in the protocol.
        progress: called with (images done, images in all).
    """
    jobs = scoring_jobs(folder)
    used = prompts if prompts is not None else PromptsUsed(recorded_conditioning(jobs))
    lines = score_images(jobs, detector, colour, rules=rules, progress=progress)
    protocol = scoring_protocol(detector, colour, used, rules, generation)
    return write_score(results if results is not None else folder / RESULTS_NAME, lines, protocol)
