"""Resolve a model name to a folder, download LINA checkpoints into the Hugging Face cache, list cached revisions.

Everything goes through `huggingface_hub`, so its environment is honoured: `HF_HOME` / `HF_HUB_CACHE` (where),
`HF_TOKEN` (private or gated repos), `HF_HUB_OFFLINE` (no network), `HF_ENDPOINT` (mirror). Interrupted
downloads resume where they stopped, because the hub client keeps `.incomplete` blobs in the cache.
"""

import os
from dataclasses import dataclass
from pathlib import Path

from models.bundled import bundled_model_path
from models.constants import BUNDLED_MODELS, RELEASED_MODELS, hub_offline
from models.errors import ModelNotFoundError, WeightsNotCachedError


@dataclass(frozen=True)
class DownloadedModel:
    """A snapshot in the cache: the name asked for, its repo, the commit it resolved to, and the folder."""

    name: str
    repo_id: str
    revision: str
    path: Path


@dataclass(frozen=True)
class CachedRevision:
    """One cached snapshot of a repo: its commit, the refs (branches/tags) pointing at it, and its size."""

    revision: str
    refs: tuple[str, ...]
    size_on_disk: int
    path: Path


def repo_id_for(name: str) -> str:
    """Map a released alias (`lina-t2i-1024`) to its repo id; any other name is returned unchanged."""
    return RELEASED_MODELS[name]["repo_id"] if name in RELEASED_MODELS else name


def download_command(name: str, revision: str | None = None) -> str:
    """The `lina download …` command that fetches `name` (quoted in error messages)."""
    return f"lina download {name}" + (f" --revision {revision}" if revision else "")


def _checked_repo_id(name: str) -> str:
    repo_id = repo_id_for(name)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ModelNotFoundError(
            f"{name!r} is neither a released alias ({', '.join(RELEASED_MODELS)}) nor a hub repo id (owner/name)"
        )
    return repo_id


def download_model(
    name: str,
    *,
    revision: str | None = None,
    include: list[str] | None = None,
    exclude: list[str] | None = None,
    cache_dir: str | os.PathLike | None = None,
    offline: bool | None = None,
) -> DownloadedModel:
    """Fetch a model snapshot into the Hugging Face cache (a no-op for files already there).

    Args:
        name: released alias (`lina-t2i-1024`) or hub repo id.
        revision: branch, tag or commit; None for the default branch.
        include, exclude: glob patterns of files to fetch or skip (e.g. `transformer/*`).
        cache_dir: the hub cache; None uses `HF_HUB_CACHE` / `HF_HOME`.
        offline: only look in the cache; None reads `HF_HUB_OFFLINE`.

    Returns:
        The resolved commit and the snapshot folder.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id = _checked_repo_id(name)
    offline = hub_offline() if offline is None else offline
    try:
        folder = snapshot_download(
            repo_id,
            revision=revision,
            cache_dir=cache_dir,
            allow_patterns=include or None,
            ignore_patterns=exclude or None,
            local_files_only=offline,
        )
    except LocalEntryNotFoundError as error:
        if offline:
            raise WeightsNotCachedError(
                f"{repo_id} is not in the Hugging Face cache and offline mode is on (--offline or HF_HUB_OFFLINE=1); "
                f"run `{download_command(name, revision)}` with network access"
            ) from error
        raise WeightsNotCachedError(
            f"could not reach the Hugging Face hub to download {repo_id}, and it is not cached "
            f"({type(error.__cause__ or error).__name__}); check the network, HF_ENDPOINT or a proxy, or run "
            f"`{download_command(name, revision)}` where there is network access"
        ) from error
    except RevisionNotFoundError as error:
        raise ModelNotFoundError(f"{repo_id} has no revision {revision!r} (a branch, tag or commit)") from error
    except (RepositoryNotFoundError, GatedRepoError) as error:
        raise ModelNotFoundError(
            f"{repo_id} was not found on the hub, or it is private/gated: check the name, or log in with "
            "`hf auth login` / set HF_TOKEN"
        ) from error
    path = Path(folder)
    return DownloadedModel(name=name, repo_id=repo_id, revision=path.name, path=path)


def cached_revisions(name: str, cache_dir: str | os.PathLike | None = None) -> list[CachedRevision]:
    """The snapshots of a model in the Hugging Face cache, newest first (empty if none or no cache)."""
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    repo_id = _checked_repo_id(name)
    try:
        info = scan_cache_dir(cache_dir)
    except CacheNotFound:
        return []
    revisions = []
    for repo in info.repos:
        if repo.repo_type != "model" or repo.repo_id != repo_id:
            continue
        for cached in sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True):
            revisions.append(
                CachedRevision(
                    revision=cached.commit_hash,
                    refs=tuple(sorted(cached.refs)),
                    size_on_disk=cached.size_on_disk,
                    path=Path(cached.snapshot_path),
                )
            )
    return revisions


def released_alias(task: str, resolution: int | None = None) -> str | None:
    """The released alias for a task ("t2i"/"c2i") and resolution; without a resolution, the largest one."""
    matches = [(card["resolution"], alias) for alias, card in RELEASED_MODELS.items() if card["task"] == task]
    if resolution is None:
        return max(matches)[1] if matches else None
    return next((alias for size, alias in matches if size == resolution), None)


def resolve_model_path(
    name_or_path: str | os.PathLike,
    *,
    revision: str | None = None,
    offline: bool | None = None,
    cache_dir: str | os.PathLike | None = None,
) -> Path:
    """Return the local folder of a model: an existing directory, a model bundled with the package, or a hub
    snapshot in the HF cache (`models.pipeline.hub.download_model`, which fetches what is missing unless offline).

    Args:
        name_or_path: a folder, a bundled alias (`lina-shapes`), a released alias (`lina-t2i-1024`) or a hub
            repo id (`owner/name`).
        revision: branch, tag or commit of a hub repo; None for the default branch.
        offline: only use the local cache; None reads `HF_HUB_OFFLINE`.
        cache_dir: Hugging Face hub cache; None uses `HF_HUB_CACHE` / `HF_HOME`.

    Returns:
        The folder that holds `model_index.json`.
    """
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    name = str(name_or_path)
    if name in BUNDLED_MODELS:
        return bundled_model_path(name)
    repo_id = repo_id_for(name)
    if repo_id.count("/") != 1 or path.exists():
        raise ModelNotFoundError(
            f"model {name!r} is neither a folder nor a hub repo id; use a folder path, an owner/name repo id "
            f"or one of {sorted(RELEASED_MODELS) + sorted(BUNDLED_MODELS)}"
        )
    return download_model(name, revision=revision, cache_dir=cache_dir, offline=offline).path
