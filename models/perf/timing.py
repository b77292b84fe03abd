"""Clocks, timing settings and the environment record shared by `lina profile attention` and `lina profile pipeline`.

CUDA work is timed with CUDA events and one synchronisation at the end, CPU work with `time.perf_counter`;
memory is reported in MiB (2²⁰ bytes). `environment` records what a number was measured on.
"""

import platform
import statistics
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from models.errors import InvalidConfigError
from models.pipeline.devices import resolve_device, resolve_dtype

MIB = 2**20  # memory is reported in MB = 2^20 bytes, as torch.cuda.memory_summary does
# Timing defaults per device type: CUDA kernels are short and noisy, so many repeats; CPU runs are
# long, so few, which keeps `lina profile attention` quick on a laptop.
TIMING_DEFAULTS = {"cuda": {"warmup": 10, "repeats": 50}, "cpu": {"warmup": 1, "repeats": 3}}
_PERCENTILES = 10  # spread = the 10th and 90th percentile of the timed calls


@dataclass(frozen=True)
class TimingSettings:
    """Where and how to time: `warmup` untimed calls, then `repeats` timed ones."""

    device: torch.device
    dtype: torch.dtype
    warmup: int
    repeats: int

    @classmethod
    def resolve(
        cls,
        device: str | torch.device | None = None,
        dtype: str | None = None,
        warmup: int | None = None,
        repeats: int | None = None,
    ) -> "TimingSettings":
        """Fill defaults: CUDA when available, bf16 on CUDA / fp32 on CPU, and `TIMING_DEFAULTS`."""
        resolved = resolve_device(device)
        defaults = TIMING_DEFAULTS["cuda" if resolved.type == "cuda" else "cpu"]
        warmup = defaults["warmup"] if warmup is None else warmup
        repeats = defaults["repeats"] if repeats is None else repeats
        if warmup < 0 or repeats < 1:
            raise InvalidConfigError(f"warmup={warmup}, repeats={repeats}: need warmup ≥ 0 and repeats ≥ 1")
        return cls(resolved, resolve_dtype(dtype, resolved), warmup, repeats)


def percentiles_ms(times: list[float]) -> tuple[float, float]:
    """The 10th and 90th percentile of timings (the one value twice when there is only one)."""
    if len(times) < 2:
        return times[0], times[0]
    cuts = statistics.quantiles(times, n=_PERCENTILES, method="inclusive")
    return cuts[0], cuts[-1]



def cuda_times(fn: Callable[[], object], repeats: int) -> list[float]:
    """Milliseconds of `repeats` calls of `fn`, each bracketed by CUDA events, with one synchronisation at the end."""
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(repeats)]
    for start, end in events:
        start.record()
        fn()
        end.record()
    torch.cuda.synchronize()
    return [start.elapsed_time(end) for start, end in events]


def cpu_times(fn: Callable[[], object], repeats: int) -> list[float]:
    """Milliseconds of `repeats` calls of `fn`, each timed with `time.perf_counter`."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def cuda_peak_memory(fn: Callable[[], object], device: torch.device) -> dict[str, float]:
    """MiB allocated at the peak of one call of `fn` (`peak_mem_mb`) and above what was allocated before it."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return {"peak_mem_mb": peak / MIB, "forward_mem_mb": (peak - before) / MIB}


def environment(device: torch.device) -> dict[str, Any]:
    """Versions and hardware the timings were measured on."""
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        info |= {
            "gpu": torch.cuda.get_device_name(index),
            "driver": _nvidia_driver(index),
            "cuda": torch.version.cuda,
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,  # True would make the "fp32" rows TF32
        }
    else:
        info |= {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    return info


def _nvidia_driver(index: int) -> str | None:
    """The NVIDIA driver version from nvidia-smi (torch does not expose it); None when unavailable."""
    query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader", f"--id={index}"]
    try:
        result = subprocess.run(query, capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None
