"""The public Python API and the CLI command names are pinned: changing them is a deliberate act."""

import models

PUBLIC_MODELS_API = [
    "GenerationOutput",
    "ImageRequest",
    "LinaError",
    "LinaPipeline",
    "LinaTransformer",
    "ModelSource",
    "SamplingSettings",
    "SchedulerConfig",
    "TransformerConfig",
    "VAEConfig",
    "load_pipeline",
]


def test_models_exports_exactly_the_public_api():
    assert models.__all__ == PUBLIC_MODELS_API
    for name in PUBLIC_MODELS_API:
        exported = getattr(models, name)  # resolved lazily from the module named in models._EXPORTS
        assert exported.__name__ == name and exported.__module__ == models._EXPORTS[name], name


def test_cli_commands():
    from typer.main import get_command

    from lina_cli.app import app

    group = get_command(app)
    assert sorted(group.commands) == ["config", "download", "eval", "generate", "info", "models", "profile", "train"]
    assert sorted(group.commands["profile"].commands) == ["attention", "pipeline"]
    assert sorted(group.commands["eval"].commands) == ["fid", "geneval", "shapes"]
    assert sorted(group.commands["eval"].commands["geneval"].commands) == ["run", "score", "summary"]
    assert sorted(group.commands["train"].commands) == ["export", "model", "text-encoder", "vae"]
