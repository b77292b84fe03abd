"""On machines without CUDA: every fused-kernel test of tests/models/ops, run in Triton's CPU interpreter.

The interpreter must be on before Triton is first imported (see conftest.py), so the tests run in a child
pytest started with TRITON_INTERPRET=1. There the shapes stay tiny; bf16 and the released sizes need CUDA.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.models.ops.conftest import FUSED_KERNEL_MODE

pytestmark = pytest.mark.slow  # child processes; `pytest -m "not slow"` skips them locally, CI runs them

OPS_TESTS = Path(__file__).resolve().parent
REPO_ROOT = OPS_TESTS.parents[1]
INTERPRETER_RUN_TIMEOUT_S = 600  # the child takes well under a minute; this only stops a hang


@pytest.mark.skipif(
    FUSED_KERNEL_MODE != "subprocess", reason="only for an installed Triton without CUDA or TRITON_INTERPRET=1"
)
def test_fused_kernels_in_triton_interpreter():
    result = subprocess.run(
        [sys.executable, "-m", "pytest", str(OPS_TESTS), "-k", "fused", "-q", "-p", "no:cacheprovider"],
        cwd=REPO_ROOT,
        env={**os.environ, "TRITON_INTERPRET": "1"},
        capture_output=True,
        text=True,
        timeout=INTERPRETER_RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-4000:]
    assert " passed" in result.stdout and " failed" not in result.stdout, result.stdout[-8000:]
