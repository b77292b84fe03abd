"""Stop a training run cleanly on SIGINT (Ctrl-C), SIGTERM (pre-emption) or a time limit: finish the step, checkpoint.

While a `StopRequest` is open its handlers replace the process's own (Ctrl-C no longer raises
KeyboardInterrupt mid-step); the loop asks `agreed` after a step. Under torchrun a signal may reach the
processes at different steps, so they agree with one all-reduce (any process asked → all stop).
"""

import signal
import threading
import time
from types import FrameType

import torch

from models.runs.distributed import DistributedContext

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
TIME_LIMIT = "time limit"  # the `signal_name` of a stop at the deadline


class StopRequest:
    """Records SIGINT/SIGTERM while open (main thread only; elsewhere signals keep their handlers).

    Args:
        seconds: also ask to stop once this much wall time has passed since construction (None: never).
    """

    def __init__(self, seconds: float | None = None) -> None:
        self.signal_name: str | None = None
        self.deadline = None if seconds is None else time.monotonic() + seconds
        self._previous: dict[int, object] = {}

    @property
    def requested(self) -> bool:
        if self.signal_name is None and self.deadline is not None and time.monotonic() >= self.deadline:
            self.signal_name = TIME_LIMIT
        return self.signal_name is not None

    def _handle(self, number: int, frame: FrameType | None) -> None:
        self.signal_name = signal.Signals(number).name

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for number in STOP_SIGNALS:
                self._previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def agreed(self, context: DistributedContext) -> bool:
        """Whether to stop now: this process was signalled, or (under torchrun) any process was; call it at the
        same steps on every process."""
        if not context.enabled:
            return self.requested
        flag = torch.tensor(float(self.requested), device=_collective_device(context))
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        if flag.item() and self.signal_name is None:
            self.signal_name = "a signal to another process"
        return bool(flag.item())


def _collective_device(context: DistributedContext) -> torch.device:
    """NCCL reduces tensors on this process's GPU, Gloo on the CPU."""
    backend = torch.distributed.get_backend()
    return torch.device("cuda", context.local_rank) if backend == "nccl" else torch.device("cpu")
