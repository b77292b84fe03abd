"""`.ci/run` runs exactly the README's install and test commands."""

from tests.cli.conftest import REPO_ROOT

INSTALL_PREFIX = "pip install "
TEST_PREFIX = "python -m pytest"


def ci_commands() -> list[str]:
    lines = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    return [line.strip() for line in lines if line.strip().startswith((INSTALL_PREFIX, TEST_PREFIX))]


def test_ci_runs_one_install_and_one_test_command():
    commands = ci_commands()
    assert len(commands) == 2
    assert commands[0].startswith(INSTALL_PREFIX) and commands[1].startswith(TEST_PREFIX)


def test_readme_shows_the_same_commands():
    readme_lines = {line.strip() for line in (REPO_ROOT / "README.md").read_text().splitlines()}
    for command in ci_commands():
        assert command in readme_lines, f"README.md lacks the CI command {command!r}"


def test_ci_script_is_strict_bash_with_a_fresh_venv():
    script = (REPO_ROOT / ".ci" / "run").read_text()
    assert script.startswith("#!/usr/bin/env bash")
    assert "set -euo pipefail" in script
    assert "-m venv" in script
