"""What a user sees in a real terminal: the CLI runs on a pseudo-terminal of a fixed size, and a terminal emulator
(pyte) replays the bytes it wrote, so the tests assert on the final screen rather than on the raw stream."""

import fcntl
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios

import pyte
import pytest

from tests.cli.conftest import FAST, REPO_ROOT, image_records

pytestmark = pytest.mark.slow  # the CLI as a child process on a pseudo-terminal

COLUMNS, LINES = 120, 60
BAR = "━"


def run_on_terminal(args, tmp_path, *, stdout_terminal: bool, env: dict[str, str] | None = None):
    """Run `python -m lina_cli ARGS` with stderr (and optionally stdout) on a COLUMNS×LINES pseudo-terminal.

    Returns the raw terminal bytes as text, the final screen's non-blank lines, and the piped stdout.
    """
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", LINES, COLUMNS, 0, 0))
    process = subprocess.Popen(
        [sys.executable, "-m", "lina_cli", *map(str, args)],
        stdin=child, stdout=child if stdout_terminal else subprocess.PIPE, stderr=child,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TERM": "xterm-256color", **(env or {})}, cwd=tmp_path,
    )
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    piped = process.stdout.read().decode() if process.stdout else ""
    raw = b"".join(chunks)
    assert process.wait(timeout=300) == 0, raw.decode(errors="replace")
    os.close(main)
    screen = pyte.Screen(COLUMNS, LINES)
    pyte.ByteStream(screen).feed(raw)
    return raw.decode(errors="replace"), [line.rstrip() for line in screen.display if line.strip()], piped


def test_saved_lines_print_above_one_copy_of_each_bar(tiny_c2i_folder, tmp_path):
    out = tmp_path / "tty"
    args = ["generate", "-m", tiny_c2i_folder, "--class", "0-2", "-n", "2", "-s", "1", "-o", out, "--device", "cpu",
            "--ar-steps", "16", "--diffusion-steps", "3"]
    _, screen, _ = run_on_terminal(args, tmp_path, stdout_terminal=True)
    made = sorted(path.name for path in out.iterdir())
    assert len(made) == 6
    for name in made:
        assert sum(name in line for line in screen) == 1, (name, screen)
    assert not [line for line in screen if BAR in line and "saved" in line], screen
    assert sum(line.lstrip().startswith("images") for line in screen if BAR in line) == 1, screen
    assert sum("AR steps" in line for line in screen if BAR in line) == 1, screen
    # 16 AR steps on 16 tokens leave 3 steps of the cosine schedule empty; the bar says so.
    assert any("AR steps (3 of 16 empty)" in line and "13/13" in line for line in screen), screen
    assert screen[-1].startswith("made 6 image(s)")


def test_json_lines_alone_on_a_piped_stdout_while_bars_draw(tiny_c2i_folder, tmp_path):
    args = ["generate", "-m", tiny_c2i_folder, "--class", "1-2", "-s", "1", "-o", tmp_path / "pipe", "--format", "json", *FAST]
    _, screen, piped = run_on_terminal(args, tmp_path, stdout_terminal=False)
    assert any("AR steps" in line for line in screen) and not any('"seed"' in line for line in screen)
    assert [record["seed"] for record in image_records(piped)] == [1, 2]
    assert "summary" in json.loads(piped.splitlines()[-1])


def test_progress_bars_on_a_terminal_respect_no_color(tiny_c2i_folder, tmp_path):
    """On a terminal, rich progress bars appear; NO_COLOR removes colour codes (not the bars)."""
    args = ["generate", "-m", tiny_c2i_folder, "--class", "1", "-s", "1", "-o", tmp_path / "tty", *FAST]
    raw, screen, _ = run_on_terminal(args, tmp_path, stdout_terminal=True, env={"NO_COLOR": "1"})
    assert any("images" in line and BAR in line for line in screen) and "made 1 image(s)" in screen[-1]
    assert not re.search(r"\x1b\[[0-9;]*3[0-7]m|\x1b\[38;", raw), "colour codes despite NO_COLOR"
