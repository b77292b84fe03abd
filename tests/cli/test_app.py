"""The app itself: start-up cost, help pages with examples, entry points."""

import subprocess
import sys

import pytest

from lina_cli.app import app
from tests.cli.conftest import REPO_ROOT, run_lina_process

COMMANDS = ["download", "models", "generate", "info", "config"]
# Every leaf command, groups included: each help page shows examples and imports no torch.
LEAF_COMMANDS = [
    *COMMANDS, "profile attention", "profile pipeline", "eval fid", "eval shapes", "eval geneval run",
    "eval geneval score", "eval geneval summary", "train model", "train vae", "train text-encoder", "train export",
]


@pytest.mark.slow
def test_importing_the_app_loads_neither_torch_nor_transformers():
    code = (
        "import sys, lina_cli.app; "
        "heavy = [m for m in ('torch', 'transformers', 'diffusers', 'PIL', 'huggingface_hub', 'numpy') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, check=True)
    assert done.stdout.strip() == ""


@pytest.mark.slow
@pytest.mark.parametrize("command", LEAF_COMMANDS)
def test_every_command_help_shows_examples_without_importing_torch(command):
    code = (
        "import sys\nfrom lina_cli.app import app\n"
        f"try:\n    app({command.split() + ['--help']!r}, prog_name='lina')\nexcept SystemExit:\n    pass\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, env={"COLUMNS": "200", "PATH": ""}
    )
    assert done.returncode == 0, done.stderr
    assert "Examples" in done.stdout
    assert f"$ lina {command}" in done.stdout
    assert done.stdout.strip().endswith("NO-TORCH")


def test_bare_lina_prints_help(lina):
    result = lina()
    assert "Usage" in result.output
    for command in [*COMMANDS, "profile"]:
        assert command in result.output


@pytest.mark.parametrize("command", ["download", "generate", "info"])
def test_commands_that_need_input_print_help_when_bare(lina, command):
    result = lina(command)
    assert "Usage: lina " + command in " ".join(result.output.split())
    assert "Examples" in result.output


def test_short_help_flag(lina):
    result = lina("generate", "-h")
    assert result.exit_code == 0
    assert "--prompts-file" in result.output and "--from-metadata" in result.output


@pytest.mark.slow
def test_python_dash_m_entry_point():
    done = run_lina_process("--help")
    assert done.returncode == 0
    assert "generate" in done.stdout


def test_registered_commands():
    names = {command.name or command.callback.__name__ for command in app.registered_commands}
    assert set(COMMANDS) <= names
