"""Fetch a reference batch into the lina cache: resumable (HTTP Range), SHA-256 checked, renamed into place.

The bytes go to `<name>.part` beside the target; an interrupted download continues from the part's size on
the next call. Only a complete file whose SHA-256 matches (when a hash is known) is renamed to its final
name, so the cache never holds a truncated reference. Offline, or without network, the error says where to
download the file and where to put it.
"""

import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

from models.constants import hub_offline
from models.errors import ReferenceUnavailableError
from models.eval.fid.constants import REFERENCE_FOLDER, BuiltinReference, ProgressCallback, lina_cache_dir
from models.eval.fid.images import sha256_file

logger = logging.getLogger(__name__)

DOWNLOAD_CHUNK = 1 << 20
TIMEOUT_S = 60
PARTIAL_SUFFIX = ".part"
HTTP_PARTIAL, HTTP_RANGE_NOT_SATISFIABLE = 206, 416


def reference_path(reference: BuiltinReference) -> Path:
    """Where the lina cache keeps a built-in reference batch (whether or not it is there)."""
    return lina_cache_dir() / REFERENCE_FOLDER / reference.file_name


def fetch_reference(
    reference: BuiltinReference, *, offline: bool = False, progress: ProgressCallback | None = None
) -> Path:
    """The cached file of a built-in reference, downloaded first when missing (`fetch_to_cache`).

    Raises:
        ReferenceUnavailableError: offline, no network, or a download whose SHA-256 does not match.
    """
    hint = f"or pass the file itself with --ref /path/to/{reference.file_name}"
    return fetch_to_cache(reference.url, reference_path(reference), reference.sha256, hint, offline=offline,
                          progress=progress)


def fetch_to_cache(
    url: str, target: Path, sha256: str | None, alternative: str, *, offline: bool = False,
    progress: ProgressCallback | None = None,
) -> Path:
    """`target` in the lina cache, downloaded from `url` first when missing.

    Args:
        url, target, sha256: where from, where to, and the published hash (None: not checked).
        alternative: the last words of the error that says how to do without the download.
        offline: never use the network (also when `HF_HUB_OFFLINE` is set).
        progress: called as (task, bytes done, bytes total or None) while downloading.

    Raises:
        ReferenceUnavailableError: offline, no network, or a download whose SHA-256 does not match; the
            message names the URL and the path to put the file at.
    """
    if target.is_file():
        return target
    manual = (
        f"Download {url} on a machine with internet access (e.g. `curl -L -O {url}`), then copy it to {target} "
        f"(the lina cache; set LINA_CACHE to move it), {alternative}"
    )
    if offline or hub_offline():
        raise ReferenceUnavailableError(f"{target.name} is not in the lina cache and offline mode is on. {manual}")
    try:
        download_file(url, target, sha256=sha256, progress=progress)
    except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise ReferenceUnavailableError(f"could not download {target.name} ({reason}). {manual}") from error
    return target


def download_file(url: str, target: Path, *, sha256: str | None, progress: ProgressCallback | None = None) -> Path:
    """Download `url` to `target`, resuming a previous `.part` file, checking the SHA-256 when given.

    Returns:
        `target`, complete.

    Raises:
        urllib.error.URLError, TimeoutError: the network failed (the `.part` file is kept for resuming).
        ReferenceUnavailableError: the complete file's SHA-256 differs from `sha256` (the part is deleted).
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + PARTIAL_SUFFIX)
    done = partial.stat().st_size if partial.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except urllib.error.HTTPError as error:
        if error.code != HTTP_RANGE_NOT_SATISFIABLE:
            raise
        # The part already holds every byte: the server has nothing after its end.
        return _finish(partial, target, url, sha256)
    with response:
        if done and response.status != HTTP_PARTIAL:
            logger.info("%s ignored the Range request; downloading from the start", url)
            done = 0
        length = response.headers.get("Content-Length")
        total = done + int(length) if length is not None else None
        with open(partial, "ab" if done else "wb") as handle:
            while chunk := response.read(DOWNLOAD_CHUNK):
                handle.write(chunk)
                done += len(chunk)
                if progress is not None:
                    progress(f"downloading {target.name}", done, total)
            handle.flush()
            os.fsync(handle.fileno())
    return _finish(partial, target, url, sha256)


def _finish(partial: Path, target: Path, url: str, sha256: str | None) -> Path:
    if sha256 is not None:
        actual = sha256_file(partial)
        if actual != sha256:
            partial.unlink()
            raise ReferenceUnavailableError(
                f"{url} downloaded with SHA-256 {actual}, expected {sha256}; the file was deleted, run again to retry"
            )
    os.replace(partial, target)
    return target
