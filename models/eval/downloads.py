"""Evaluation files `lina download` fetches into the lina cache by name: ADM's reference batches and GenEval's prompts.

Each is fetched once, resumably, and checked against its SHA-256 where one is known (`models.eval.fid.download`).
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from models.eval.fid.constants import BUILTIN_REFERENCES, lina_cache_dir
from models.eval.fid.download import fetch_reference, fetch_to_cache

# GenEval's prompts at the commit this package was checked against (the LINA authors ship the same file).
GENEVAL_COMMIT = "af4902f24d3ca90ebbb446dd9891a59e0f82725f"
GENEVAL_METADATA_URL = (
    f"https://raw.githubusercontent.com/djghosh13/geneval/{GENEVAL_COMMIT}/prompts/evaluation_metadata.jsonl"
)
GENEVAL_METADATA_SHA256 = "5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13"


def geneval_metadata_path() -> Path:
    """Where the lina cache keeps GenEval's `evaluation_metadata.jsonl` (whether or not it is there)."""
    return lina_cache_dir() / "geneval" / "evaluation_metadata.jsonl"


def fetch_geneval_metadata(*, offline: bool = False, progress=None) -> Path:
    """GenEval's 553 prompts in the lina cache, downloaded first when missing."""
    return fetch_to_cache(
        GENEVAL_METADATA_URL, geneval_metadata_path(), GENEVAL_METADATA_SHA256,
        "or pass the file itself with --metadata /path/to/evaluation_metadata.jsonl", offline=offline,
        progress=progress,
    )


@dataclass(frozen=True)
class EvalDownload:
    """A file `lina download NAME` fetches: what it is, and the call that fetches it (`offline=`, `progress=`)."""

    description: str
    fetch: Callable[..., Path]


EVAL_DOWNLOADS = {
    "imagenet-ref": EvalDownload(
        BUILTIN_REFERENCES["imagenet"].description,
        lambda **kw: fetch_reference(BUILTIN_REFERENCES["imagenet"], **kw),
    ),
    "imagenet-512-ref": EvalDownload(
        BUILTIN_REFERENCES["imagenet-512"].description,
        lambda **kw: fetch_reference(BUILTIN_REFERENCES["imagenet-512"], **kw),
    ),
    "geneval": EvalDownload("GenEval's 553 prompts (prompts/evaluation_metadata.jsonl)", fetch_geneval_metadata),
}
