"""The training loop: data order, steps, EMA, logs, checkpoints, DDP under torchrun, and exact resume.

`train(run_dir, spec)` starts a run (`resume=True` continues one) and returns when it has done `recipe.steps`
steps or when SIGINT/SIGTERM asked it to stop, after writing a checkpoint. Each step takes the next global batch
of a seeded permutation of the cached images (a new one per epoch); under torchrun each process takes its
contiguous share of it and DDP averages the gradients, so every step equals one process on the global batch.
All randomness comes from two generators seeded by the recipe (`models.train.objective.StepNoise`), identical on
every process and saved in each checkpoint, so a resumed run repeats an uninterrupted one step for step.
Weights are float32; on CUDA the forward runs under bf16 autocast, as the authors train.
"""

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from models.errors import TrainingConfigError
from models.files import write_json_atomic
from models.network.transformer import LinaTransformer
from models.pipeline.devices import resolve_device, resolve_dtype
from models.runs.distributed import DistributedContext, context_from_env, init_process_group, shutdown
from models.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from models.train.compile import compile_blocks_
from models.train.init_weights import new_transformer, prepare_for_training_
from models.train.objective import FlowTrainingSchedule, StepNoise, TrainingObjective
from models.train.optim import ModelEMA, build_optimizer, build_scheduler, gradient_norm
from models.train.prepare import BatchOrder, TrainingData, prepare_data
from models.train.progress import LogWriter, LossWindow, TrainProgress
from models.train.run import LOG_NAME, RUN_NAME, RunSpec, read_run, resumed_recipe, start_run
from models.train.signals import StopRequest
from models.train.throughput import model_flops_utilisation, peak_flops, training_flops_per_image

NOISE_SEED_OFFSET = 1  # the device generator's seed is the recipe seed + 1, so the two streams differ
MAX_WORKERS = 8


@dataclass(frozen=True)
class TrainResult:
    """How a `train` call ended: the step reached, the last checkpoint, and the signal that stopped it (if any)."""

    run_dir: Path
    step: int
    steps: int
    checkpoint: Path | None
    interrupted_by: str | None = None


class Trainer:
    """One process's share of a run: model, optimiser, EMA, generators and the cached data, ready to step."""

    def __init__(
        self,
        run_dir: Path,
        spec: RunSpec,
        data: TrainingData,
        device: torch.device,
        context: DistributedContext | None = None,
        *,
        compile_blocks: bool = False,
    ):
        recipe, config = spec.recipe, spec.transformer
        context = context or DistributedContext()
        if recipe.batch_size % context.world_size:
            raise TrainingConfigError(
                f"--batch-size {recipe.batch_size} is the global batch: it must be divisible by the "
                f"{context.world_size} processes"
            )
        self.run_dir, self.spec, self.recipe, self.data = run_dir, spec, recipe, data
        self.device, self.context = device, context
        self.local_batch = recipe.batch_size // context.world_size
        self.compute_dtype = resolve_dtype(recipe.dtype, device)  # the autocast dtype; float32 = no autocast
        self.order = BatchOrder(len(data), recipe.batch_size, recipe.seed)
        self.step = 0

        checkpoint_folder = latest_checkpoint(run_dir)
        checkpoint = load_checkpoint(checkpoint_folder) if checkpoint_folder else None
        if checkpoint is not None or spec.init_from is None:
            model = new_transformer(config, recipe.seed)
        else:
            model = LinaTransformer.from_pretrained(spec.init_from)
        if checkpoint is not None:
            model.load_state_dict(checkpoint.model)
        self.model = prepare_for_training_(model).to(device)
        self.ema = ModelEMA(self.model, recipe.ema_decay)
        self.optimizer = build_optimizer(self.model, recipe.lr, recipe.weight_decay, recipe.betas)
        self.scheduler = build_scheduler(
            self.optimizer, recipe.warmup, recipe.warmup_factor, recipe.steps, recipe.cooldown
        )
        self.cpu_generator = torch.Generator().manual_seed(recipe.seed)
        self.generator = torch.Generator(device).manual_seed(recipe.seed + NOISE_SEED_OFFSET)
        if checkpoint is not None:
            self._restore(checkpoint.state)
            self.ema.model.load_state_dict(checkpoint.ema)
            self.step = checkpoint.step
        if compile_blocks:  # after the EMA's copy, which stays eager: it is only ever read for its weights
            compile_blocks_(self.model)
        self.step_lr = self.lr  # the learning rate of the last step taken (`train_step`)

        objective = TrainingObjective(
            self.model, scale=data.vae.scale, schedule=FlowTrainingSchedule(spec.scheduler),
            condition_dropout=recipe.condition_dropout, compute_dtype=self.compute_dtype,
        )
        if context.enabled:
            device_ids = [device.index] if device.type == "cuda" else None
            # buffers (the null text rows) never change, so they need no broadcast at every forward
            objective = torch.nn.parallel.DistributedDataParallel(
                objective, device_ids=device_ids, broadcast_buffers=False
            )
        self.objective = objective
        self.flops_per_image = training_flops_per_image(config, recipe.loss_repeat)
        peak = peak_flops(device, self.compute_dtype)
        # images/s counts the whole global batch, so the peak is that of all the processes' GPUs together
        self.peak = None if peak is None else peak * context.world_size

    # ------------------------------------------------------------------------------------- one step ----

    def forward_backward(self) -> torch.Tensor:
        """Loss and gradients of the current step's batch (gradients averaged over processes); the loss is detached."""
        recipe = self.recipe
        indices = self.order.batch(self.step)  # [G]
        start = self.context.rank * self.local_batch
        rows = slice(start, start + self.local_batch)
        local = indices[rows]
        if self.device.type == "cuda":  # a pageable copy would make the host wait for the GPU's queue every step
            local = local.pin_memory()
        local = local.to(self.device, non_blocking=True)
        noise = StepNoise.draw(
            self.spec.transformer, recipe.batch_size, recipe.loss_repeat, self.cpu_generator, self.generator
        ).rows(rows.start, rows.stop)
        with torch.autocast(self.device.type, dtype=self.compute_dtype, enabled=self.compute_dtype != torch.float32):
            loss = self.objective(self.data.latents.moments[local], self.data.conditions(local, self.model), noise)
        loss.backward()
        return loss.detach()

    def train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step; returns the (detached) loss and gradient norm, both on the device."""
        loss = self.forward_backward()
        norm = gradient_norm(self.model.parameters(), self.recipe.grad_clip)
        self.step_lr = self.lr  # what this step used; the scheduler moves on below
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()
        self.step += 1
        if self.step % self.recipe.ema_every == 0:
            self.ema.update(self.model)
        return loss, norm

    @property
    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    # ----------------------------------------------------------------------------------- checkpoints ----

    def state(self) -> dict:
        return {
            "consumed": self.step * self.recipe.batch_size,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generators": {"cpu": self.cpu_generator.get_state(), "device": self.generator.get_state()},
        }

    def _restore(self, state: dict) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        # The checkpoint gives the schedule's position; its shape is the recipe's, which a resumed run may change
        # (a longer --steps, a --cooldown decided late), so the saved copy of the shape is not loaded and the rate
        # of the next step is set from the recipe's schedule.
        shapes_left_out = [None] * len(self.scheduler.lr_lambdas)
        self.scheduler.load_state_dict({**state["scheduler"], "lr_lambdas": shapes_left_out})
        scheduler = self.scheduler
        for group, base_lr, schedule in zip(self.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
            group["lr"] = base_lr * schedule(scheduler.last_epoch)
        self.cpu_generator.set_state(state["generators"]["cpu"])
        self.generator.set_state(state["generators"]["device"])

    def save(self) -> Path | None:
        """Write a checkpoint of the current step (the main process writes; all wait for it)."""
        folder = None
        if self.context.is_main:
            folder = save_checkpoint(self.run_dir, self.step, self.model, self.ema.model, self.state())
        _barrier(self.context)
        return folder

    # ----------------------------------------------------------------------------------------- loop ----

    def run(self, on_log: Callable[[TrainProgress], None] | None = None, time_limit: float | None = None) -> TrainResult:
        """Step until `recipe.steps`, a stop signal or `time_limit` seconds; log every `log_every` steps, checkpoint
        every `checkpoint_every` steps and when stopping.

        A single process checks for a signal after every step; under torchrun the processes agree at each log
        step (one all-reduce), so they all stop, and checkpoint, at the same step.
        """
        recipe, checkpoint = self.recipe, latest_checkpoint(self.run_dir)
        log = LogWriter(self.run_dir / LOG_NAME, self.step) if self.context.is_main else None
        window = LossWindow(self.device)
        with StopRequest(time_limit) as stop:
            while self.step < recipe.steps:
                loss, norm = self.train_step()
                window.add(loss)
                at_log = self.step % recipe.log_every == 0 or self.step == recipe.steps
                stopping = stop.agreed(self.context) if at_log or not self.context.enabled else False
                if at_log or stopping:
                    mean_loss, steps_per_second = window.flush(self.context)
                    progress = self._progress(mean_loss, norm.item(), steps_per_second)
                    if log is not None:
                        log.write(progress)
                    if on_log is not None and self.context.is_main:
                        on_log(progress)
                if stopping or self.step % recipe.checkpoint_every == 0 or self.step == recipe.steps:
                    checkpoint = self.save()
                if stopping:
                    signal_name = stop.signal_name or "a signal"
                    return TrainResult(self.run_dir, self.step, recipe.steps, checkpoint, signal_name)
        return TrainResult(self.run_dir, self.step, recipe.steps, checkpoint)

    def _progress(self, loss: float, grad_norm: float, steps_per_second: float) -> TrainProgress:
        images_per_second = steps_per_second * self.recipe.batch_size
        return TrainProgress(
            step=self.step, steps=self.recipe.steps, loss=loss, lr=self.step_lr, grad_norm=grad_norm,
            images_per_second=images_per_second,
            mfu=model_flops_utilisation(images_per_second, self.flops_per_image, self.peak),
            eta_seconds=(self.recipe.steps - self.step) / steps_per_second,
        )


# ----------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------


def _barrier(context: DistributedContext) -> None:
    if context.enabled:
        torch.distributed.barrier()


def default_workers(device: torch.device) -> int:
    """Processes that render or decode images while a cache is built: several next to a GPU, none on a CPU run."""
    return min(MAX_WORKERS, os.cpu_count() or 1) if device.type == "cuda" else 0


# ----------------------------------------------------------------------------------------------------
# Entry point
# ----------------------------------------------------------------------------------------------------


def train(
    run_dir: str | Path,
    spec: RunSpec | None = None,
    *,
    resume: bool = False,
    changes: dict | None = None,
    device: str | torch.device | None = None,
    workers: int | None = None,
    on_setup: Callable[[str, int, int], None] | None = None,
    on_log: Callable[[TrainProgress], None] | None = None,
    time_limit: float | None = None,
    compile_blocks: bool = False,
) -> TrainResult:
    """Start (`spec`) or resume (`resume=True`) the run in `run_dir` and train it to its step count.

    Under torchrun every process calls this with the same arguments; the process group is joined here.

    Args:
        run_dir: the run folder (`models.train.run`).
        spec: what to train; required to start, ignored when resuming (the folder's `run.json` is used).
        resume: continue the run in `run_dir` from its latest checkpoint.
        changes: recipe fields to change when resuming (only those in `models.train.run.RESUMABLE_CHANGES` may differ).
        device: None → CUDA when available (this process's GPU under torchrun), else the CPU.
        workers: processes rendering or decoding images while caches are built (None: `default_workers`).
        on_setup: called as on_setup(stage, done, total) while caches are built (main process).
        on_log: called with each log interval's `TrainProgress` (main process).
        time_limit: stop (with a checkpoint) after this many seconds of training; the result's `interrupted_by`
            is then `models.train.signals.TIME_LIMIT`.
        compile_blocks: `torch.compile` the transformer and head blocks (`models.train.compile`); not part of the
            recipe, so a run may be resumed with or without it.

    Raises:
        RunFolderError: starting in a folder that holds a run, or resuming one that holds none (no run.json).
        TrainingConfigError, TrainingDataError: a recipe, geometry or dataset that cannot be trained.
    """
    run_dir = Path(run_dir)
    context = context_from_env()
    if resume:
        recorded = read_run(run_dir)
        spec = RunSpec(resumed_recipe(recorded.recipe, changes or {}), recorded.transformer, recorded.components,
                       recorded.scheduler, recorded.init_from)
        if context.is_main:  # the new step count or intervals, for the next resume and for export
            write_json_atomic(run_dir / RUN_NAME, spec.to_dict())
    elif spec is None:
        raise TrainingConfigError("train() needs a RunSpec to start a run (or resume=True to continue one)")
    elif context.is_main:
        start_run(run_dir, spec)
    device = resolve_device(device, context.local_rank if context.enabled else None)
    kind = resolve_dtype(spec.recipe.dtype, device)
    data = prepare_data(
        run_dir, spec, device, builds=context.local_rank == 0, compute_dtype=kind,
        workers=default_workers(device) if workers is None else workers, on_setup=on_setup if context.is_main else None,
    )
    init_process_group(context, device.type)
    try:
        trainer = Trainer(run_dir, spec, data, device, context, compile_blocks=compile_blocks)
        return trainer.run(on_log, time_limit)
    finally:
        shutdown(context)
