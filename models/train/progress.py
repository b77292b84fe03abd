"""What a run reports: the progress of each log interval, the window of steps it averages, and `log.jsonl`."""

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from models.runs.distributed import DistributedContext
from models.train.run import LOG_NAME


@dataclass(frozen=True)
class TrainProgress:
    """One log interval, as written to `log.jsonl` and passed to `on_log`."""

    step: int
    steps: int
    loss: float
    lr: float
    grad_norm: float
    images_per_second: float
    mfu: float | None
    eta_seconds: float




class LossWindow:
    """Losses and time of the steps since the last log line; losses stay on the device until flushed."""

    def __init__(self, device: torch.device):
        self.device = device
        self._reset()

    def _reset(self) -> None:
        self.loss, self.steps, self.start = torch.zeros((), device=self.device), 0, time.perf_counter()

    def add(self, loss: torch.Tensor) -> None:
        self.loss += loss
        self.steps += 1

    def flush(self, context: DistributedContext) -> tuple[float, float]:
        """(mean loss over the window's steps and all processes, steps per second), then start a new window."""
        mean = self.loss / self.steps
        if context.enabled:
            torch.distributed.all_reduce(mean)
            mean /= context.world_size
        loss = mean.item()  # waits for the device, so the time below is the window's real time
        steps_per_second = self.steps / max(time.perf_counter() - self.start, 1e-9)
        self._reset()
        return loss, steps_per_second


class LogWriter:
    """Appends `TrainProgress` lines to `log.jsonl`; on resume, first drops lines past the resumed step."""

    def __init__(self, path: Path, step: int):
        self.path = path
        if path.is_file():
            lines = path.read_text(encoding="utf-8").splitlines()
            kept = [line for line in lines if line and json.loads(line)["step"] <= step]
            path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def write(self, progress: TrainProgress) -> None:
        record = {**asdict(progress), "time": time.time()}
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def read_log(run_dir: Path) -> list[dict]:
    """The lines of a run's `log.jsonl`."""
    path = Path(run_dir) / LOG_NAME
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
