"""A real two-process `torchrun` makes exactly the images one process makes: Gloo on the CPU, and NCCL on two
GPUs where there are two (there each rank runs the fused kernels and head graphs on its own GPU)."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from models.runs.metadata import read_metadata
from tests.cli.conftest import REPO_ROOT, SHORT_SAMPLING, image_records, run_lina_process

pytestmark = pytest.mark.slow  # child processes; `pytest -m "not slow"` skips them locally, CI runs them

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two GPUs")),
]


@pytest.mark.parametrize("device", DEVICES)
def test_two_ranks_make_the_same_images_as_one_process(device, tiny_c2i_folder, tmp_path):
    # No -s: rank 0 draws the random seed and must share it, or the ranks' halves would not fit together.
    # Both runs sample one image at a time with one CPU thread per process (torchrun's own default): batch
    # shape and thread count change the order of float sums in CPU kernels, and a last-bit difference can flip
    # a pixel's uint8 truncation (see test_batch_size_does_not_change_the_images).
    run = ["generate", "-m", str(tiny_c2i_folder), "--class", "1-3", "-n", "2", "-b", "1", "--device", device]
    run += SHORT_SAMPLING
    run += ["--format", "json"]
    threads = {"OMP_NUM_THREADS": "1"}
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **threads}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", "-m", "lina_cli"]
    multi = subprocess.run(
        [*torchrun, *run, "-o", str(tmp_path / "multi")], capture_output=True, text=True, env=env, timeout=300
    )
    assert multi.returncode == 0, multi.stderr
    records = image_records(multi.stdout)
    assert [record["index"] for record in records] == list(range(6))  # rank 0 reports every image, once
    assert {record["device"] for record in records} == ({"cpu"} if device == "cpu" else {"cuda:0", "cuda:1"})

    written = sorted((tmp_path / "multi").iterdir())
    base_seed = read_metadata(written[0]).seed
    assert [read_metadata(path).seed for path in written] == [base_seed + i for i in range(6)]

    single = run_lina_process(*run, "-s", str(base_seed), "-o", tmp_path / "single", env=threads)
    assert single.returncode == 0, single.stderr
    assert [path.name for path in written] == sorted(path.name for path in (tmp_path / "single").iterdir())
    for path in written:
        with Image.open(path) as a, Image.open(tmp_path / "single" / path.name) as b:
            assert np.array_equal(np.asarray(a), np.asarray(b)), path.name
