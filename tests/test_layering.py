"""The package's layers (docs/architecture.md): a module imports only from its own layer or the layers below it.

Read from the source with `ast`, so imports inside functions count too.
"""

import ast
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

# Lowest first. A module of layer i may import modules of layers 0..i.
LAYERS = [
    ("models.constants", "models.errors", "models.files", "models.version", "models.bundled"),
    ("models.ops",),
    ("models.network",),
    ("models.sampling",),
    ("models.pipeline",),
    ("models.runs",),
    ("models.perf", "models.eval", "models.data", "models.train"),
    ("lina_cli",),
]


def layer_of(module: str) -> int | None:
    """The layer index of a dotted module name of this repository, None for third-party modules and `models`."""
    for index, prefixes in enumerate(LAYERS):
        if any(module == prefix or module.startswith(prefix + ".") for prefix in prefixes):
            return index
    return None


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO_ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


SOURCES = sorted(p for package in ("models", "lina_cli") for p in (REPO_ROOT / package).rglob("*.py"))


def test_every_module_has_a_layer():
    unplaced = [module_name(path) for path in SOURCES if module_name(path) != "models" and layer_of(module_name(path)) is None]
    assert unplaced == [], f"modules outside every layer of tests/test_layering.py: {unplaced}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: module_name(path))
def test_imports_go_down_the_layers(path):
    importer = module_name(path)
    own = layer_of(importer)
    if own is None:  # `models/__init__.py` re-exports the public API lazily, by name
        return
    upward = sorted(
        name for name in imported_modules(path) if (layer := layer_of(name)) is not None and layer > own
    )
    assert upward == [], f"{importer} (layer {own}) imports from higher layers: {upward}"


def test_the_model_package_never_imports_the_cli_framework():
    offenders = [
        module_name(path)
        for path in SOURCES
        if module_name(path).startswith("models") and {"typer", "rich"} & {n.split(".")[0] for n in imported_modules(path)}
    ]
    assert offenders == []
