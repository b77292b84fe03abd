"""`lina models`: the released checkpoints and the bundled models, their task and resolution, and what is local."""

from typing import TYPE_CHECKING

from rich.markup import escape
from rich.table import Table

from lina_cli.console import Printer
from lina_cli.options import CacheDirOpt, FormatOpt
from lina_cli.settings import resolve_settings
from models.constants import BUNDLED_MODELS, CONFIG_NAME, RELEASED_MODELS, TRANSFORMER_FOLDER
from models.runs.metadata import REVISION_SHOWN

if TYPE_CHECKING:
    from models.network.config import TransformerConfig

MODELS_EXAMPLES = ["lina models", "lina models --format json", "HF_HUB_CACHE=/data/hub lina models"]
BILLION = 1e9  # parameters and bytes are shown in billions (B, GB)


def _transformer_parameters(config: "TransformerConfig") -> int:
    """Exact parameter count of a transformer config, built on the meta device (no memory, no download)."""
    import torch

    from models.network.transformer import LinaTransformer

    with torch.device("meta"):
        transformer = LinaTransformer(config)
    return sum(parameter.numel() for parameter in transformer.parameters())


def _parameters_shown(parameters: int) -> str:
    return f"{parameters / BILLION:.2f}B params" if parameters >= BILLION / 100 else f"{parameters / 1e6:.1f}M params"


def models(cache_dir: CacheDirOpt = None, format: FormatOpt = None) -> None:
    """List the model aliases with task, resolution, transformer size and the revisions in the local cache.

    Released text-to-image models also load the Phi-2 text encoder (2.7B parameters) from the same repo.
    Bundled models ship inside the package and run offline.
    """
    from models.bundled import bundled_model_path
    from models.files import read_json
    from models.network.config import TransformerConfig, released_transformer_config
    from models.pipeline.hub import cached_revisions

    settings = resolve_settings({"cache_dir": cache_dir, "format": format}, ["cache_dir", "format"])
    printer = Printer(settings["format"].value)
    table = Table("alias", "task", "resolution", "transformer", "repo", "cached", box=None, pad_edge=False)
    for alias, card in RELEASED_MODELS.items():
        revisions = cached_revisions(alias, settings["cache_dir"].value)
        parameters = _transformer_parameters(released_transformer_config(card["task"], card["resolution"]))
        printer.json(
            {
                "alias": alias,
                "repo_id": card["repo_id"],
                "task": card["task"],
                "resolution": card["resolution"],
                "parameters": parameters,
                "cached": [
                    {"revision": r.revision, "refs": list(r.refs), "size_on_disk": r.size_on_disk, "path": str(r.path)}
                    for r in revisions
                ],
            }
        )
        cached = ", ".join(
            f"{r.revision[:REVISION_SHOWN]}{' (' + ', '.join(r.refs) + ')' if r.refs else ''} "
            f"{r.size_on_disk / BILLION:.2f} GB"
            for r in revisions
        )
        table.add_row(
            alias, card["task"], f"{card['resolution']}px", _parameters_shown(parameters), escape(card["repo_id"]),
            escape(cached) if cached else "[dim]not cached[/]",
        )
    for alias, card in BUNDLED_MODELS.items():
        folder = bundled_model_path(alias)
        config = TransformerConfig.from_dict(read_json(folder / TRANSFORMER_FOLDER / CONFIG_NAME, "transformer"))
        parameters = _transformer_parameters(config)
        printer.json(
            {"alias": alias, "task": card["task"], "resolution": card["resolution"], "parameters": parameters,
             "bundled": True, "path": str(folder)}
        )
        table.add_row(
            alias, card["task"], f"{card['resolution']}px", _parameters_shown(parameters), "bundled with lina",
            "[green]in the package (offline)[/]",
        )
    if printer.human:
        printer.out.print(table)
