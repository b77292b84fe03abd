"""`lina download`: fetch a LINA checkpoint into the Hugging Face cache and print its commit and folder, or an
evaluation file (`imagenet-ref`, `imagenet-512-ref`, `geneval`) into the lina cache and print its path."""

from typing import Annotated, Optional

import typer
from rich.markup import escape

from lina_cli.console import Printer
from lina_cli.options import CacheDirOpt, FormatOpt, OfflineOpt, RevisionOpt
from lina_cli.settings import resolve_settings

DOWNLOAD_EXAMPLES = [
    "lina download lina-t2i-1024",
    "lina download lina-c2i-256 --revision main",
    "lina download lina-t2i-512 --include 'transformer/*' --include model_index.json",
    "HF_HOME=/data/hf lina download techmonsterwang/LINA-c2i-d48w1536-marvae --format json",
    "lina download imagenet-ref   # ADM's ImageNet 256 reference batch for `lina eval fid`, into the lina cache",
    "lina download geneval        # GenEval's prompts for `lina eval geneval run`",
]


def download(
    model: Annotated[str, typer.Argument(
        help="Released alias (lina-t2i-1024, lina-t2i-512, lina-c2i-256), hub repo id, or an evaluation file: "
             "imagenet-ref, imagenet-512-ref, geneval. lina-shapes ships with lina and needs no download."
    )],
    revision: RevisionOpt = None,
    include: Annotated[
        Optional[list[str]], typer.Option("--include", help="Only files matching this glob (repeatable).")
    ] = None,
    exclude: Annotated[
        Optional[list[str]], typer.Option("--exclude", help="Skip files matching this glob (repeatable).")
    ] = None,
    cache_dir: CacheDirOpt = None,
    offline: OfflineOpt = None,
    format: FormatOpt = None,
) -> None:
    """Download a model into the Hugging Face cache (resumable), then print the commit and local folder.

    Evaluation files (ADM's reference batches, GenEval's prompts) go into the lina cache (LINA_CACHE, else
    ~/.cache/lina), resumable and SHA-256 checked where a hash is published; the evaluations fetch them on first use too.
    """
    from models.bundled import bundled_model_path
    from models.constants import BUNDLED_MODELS
    from models.eval.downloads import EVAL_DOWNLOADS
    from models.pipeline.hub import download_model

    settings = resolve_settings(
        {"revision": revision, "cache_dir": cache_dir, "offline": offline, "format": format},
        ["revision", "cache_dir", "offline", "format"],
    )
    printer = Printer(settings["format"].value)
    if model in BUNDLED_MODELS:
        path = bundled_model_path(model)
        printer.json({"model": model, "bundled": True, "path": str(path)})
        printer.line(f"[bold]{escape(model)}[/] ships with lina: nothing to download")
        printer.line(escape(str(path)))
        return
    if model in EVAL_DOWNLOADS:
        path = EVAL_DOWNLOADS[model].fetch(offline=bool(settings["offline"].value))
        printer.json({"name": model, "path": str(path)})
        printer.line(f"[bold]{escape(model)}[/]: {escape(EVAL_DOWNLOADS[model].description)}")
        printer.line(escape(str(path)))
        return
    if not printer.human:  # the hub client's per-file bars would mix with JSON lines or break quiet
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    result = download_model(
        model,
        revision=settings["revision"].value,
        include=include,
        exclude=exclude,
        cache_dir=settings["cache_dir"].value,
        offline=settings["offline"].value or None,
    )
    printer.json({"model": result.name, "repo_id": result.repo_id, "revision": result.revision, "path": str(result.path)})
    printer.line(f"[bold]{escape(result.repo_id)}[/] at commit [cyan]{result.revision}[/]")
    printer.line(escape(str(result.path)))
    if settings["cache_dir"].value:
        printer.note(f"pass --cache-dir {settings['cache_dir'].value} to `lina generate` (or set HF_HUB_CACHE) to use this cache")
