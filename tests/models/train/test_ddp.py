"""A two-process Gloo `torchrun` step computes the gradients one process computes on the same global batch."""

import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from models.train.prepare import prepare_data
from models.train.run import plan_run, start_run
from tests.cli.conftest import REPO_ROOT
from tests.models.train.conftest import TINY_RUN
from tests.models.train.ddp_gradients import first_step_gradients

pytestmark = pytest.mark.slow  # child processes; `pytest -m "not slow"` skips them locally, CI runs them


def test_two_processes_average_to_the_single_process_gradients(tiny_parts, tmp_path):
    run_dir = tmp_path / "run"
    spec = plan_run({**TINY_RUN, "batch_size": 4}, parts=tiny_parts, geometry="tiny")
    start_run(run_dir, spec)
    prepare_data(run_dir, spec, torch.device("cpu"), builds=True, compute_dtype=torch.float32)  # the caches, once

    out = tmp_path / "ddp.safetensors"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    script = str(REPO_ROOT / "tests" / "models" / "train" / "ddp_gradients.py")
    done = subprocess.run([*torchrun, script, str(run_dir), str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    _, single = first_step_gradients(run_dir)  # one process, the whole global batch
    ddp = load_file(str(out))
    assert sorted(ddp) == sorted(single) and len(single) > 20
    for name, gradient in single.items():
        torch.testing.assert_close(ddp[name], gradient, rtol=1e-4, atol=1e-7, msg=name)
