"""CLI test helpers: an isolated working directory and config home, the real app in-process and as a process."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lina_cli.app import app

REPO_ROOT = Path(__file__).resolve().parents[2]
# Few steps keep each tiny generation well under a second on two CPU cores.
SHORT_SAMPLING = ["--ar-steps", "4", "--diffusion-steps", "3"]
FAST = [*SHORT_SAMPLING, "--device", "cpu"]


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """Run every CLI test in its own folder, with no user config and no LINA_* variables leaking in."""
    for name in list(os.environ):
        if name.startswith("LINA_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config-home"))
    monkeypatch.setenv("COLUMNS", "200")  # stable help and table layout
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def lina():
    """`lina(*args, env=...)` runs the real app in-process with Typer's runner and returns the result."""
    runner = CliRunner()

    def invoke(*args: str, env: dict[str, str] | None = None):
        return runner.invoke(app, [str(arg) for arg in args], env=env, catch_exceptions=True, prog_name="lina")

    return invoke


def image_records(stdout: str) -> list[dict]:
    """The image records of a `--format json` run's stdout; its last line, `{"summary": ...}`, left out."""
    records = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    return [record for record in records if "summary" not in record]


def run_lina_process(*args: str, env: dict[str, str] | None = None, module: str = "lina_cli", timeout: float = 300):
    """Run `python -m lina_cli ARGS` in a fresh interpreter (env vars read at import time then apply)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *[str(arg) for arg in args]],
        capture_output=True, text=True, env=full_env, timeout=timeout,
    )
