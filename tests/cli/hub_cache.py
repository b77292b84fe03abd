"""Write a folder into a Hugging Face hub cache exactly as `huggingface_hub` lays one out.

`models--<owner>--<name>/blobs/<hash>` holds each file once, `snapshots/<commit>/<path>` links to the blob
through a relative symlink, and `refs/<branch>` holds the commit. The real hub client then resolves
names, revisions and offline mode against it, with no network.
"""

import hashlib
import os
import shutil
from pathlib import Path


def add_to_hub_cache(cache: Path, repo_id: str, folder: Path, commit: str, ref: str | None = "main") -> Path:
    """Copy `folder` into `cache` as snapshot `commit` of `repo_id`; returns the snapshot folder."""
    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for file in sorted(Path(folder).rglob("*")):
        if not file.is_file():
            continue
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        blob.parent.mkdir(parents=True, exist_ok=True)
        if not blob.exists():
            shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    if ref is not None:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot
