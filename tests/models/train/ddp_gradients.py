"""Run by test_ddp.py under torchrun: the first step's gradients of an existing run folder, written by rank 0.

Usage: python -m torch.distributed.run --nproc-per-node N tests/models/train/ddp_gradients.py RUN_DIR OUT.safetensors
"""

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from models.runs.distributed import context_from_env, init_process_group, shutdown
from models.train.prepare import prepare_data
from models.train.run import read_run
from models.train.trainer import Trainer


def first_step_gradients(run_dir: Path) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """This process's loss and the (process-averaged) gradients of step 0 of the run in `run_dir`, on the CPU."""
    context = context_from_env()
    spec = read_run(run_dir)
    data = prepare_data(run_dir, spec, torch.device("cpu"), builds=False, compute_dtype=torch.float32)
    init_process_group(context, "cpu")
    trainer = Trainer(run_dir, spec, data, torch.device("cpu"), context)
    loss = trainer.forward_backward()
    return loss, {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.grad is not None}


if __name__ == "__main__":
    _, gradients = first_step_gradients(Path(sys.argv[1]))
    if context_from_env().is_main:
        save_file(gradients, sys.argv[2])
    shutdown(context_from_env())
