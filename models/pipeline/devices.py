"""Which device and dtype a run uses: the one resolver behind `load_pipeline`, `lina generate` and `lina profile`."""

import torch

from models.constants import DTYPE_NAMES
from models.errors import DeviceUnavailableError, InvalidDeviceError, InvalidDtypeError

DTYPES = dict(zip(DTYPE_NAMES, (torch.bfloat16, torch.float16, torch.float32), strict=True))
# torch's own names, which library callers write as naturally as the CLI's short ones
DTYPE_ALIASES = {str(dtype).removeprefix("torch."): name for name, dtype in DTYPES.items()}


def resolve_device(requested: str | torch.device | None, local_rank: int | None = None) -> torch.device:
    """The device of a run: None → CUDA when available, else the CPU.

    Under torchrun (`local_rank` set) a bare `cuda` becomes this process's GPU, `cuda:<local_rank>`.

    Raises:
        InvalidDeviceError: not a device name.
        DeviceUnavailableError: a CUDA device this machine does not have.
    """
    if requested is None:
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(requested)
    except RuntimeError as error:
        raise InvalidDeviceError(f"--device {str(requested)!r} is not a device: use cpu, cuda or cuda:N") from error
    if device.type != "cuda":
        return device
    if not torch.cuda.is_available():
        raise DeviceUnavailableError(f"--device {requested} was asked for, but torch sees no CUDA GPU on this machine")
    if device.index is None and local_rank is not None:
        device = torch.device("cuda", local_rank)
    if (device.index or 0) >= torch.cuda.device_count():
        raise DeviceUnavailableError(f"--device {device} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def dtype_name(dtype: torch.dtype) -> str:
    """The CLI's name of a dtype (bf16, fp16, fp32), else torch's name without the prefix."""
    return next((name for name, value in DTYPES.items() if value == dtype), str(dtype).removeprefix("torch."))


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """None/"auto" → bfloat16 on CUDA (the paper's evaluation dtype), float32 on CPU; "bf16"/"bfloat16" and the
    other short and torch names, or a torch.dtype, as given.

    Raises:
        InvalidDtypeError: a name that is none of these.
    """
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    name = DTYPE_ALIASES.get(dtype, dtype)
    if name not in DTYPES:
        raise InvalidDtypeError(f"dtype {dtype!r} is not one lina computes in: use auto, {', '.join(DTYPES)} "
                                f"(or {', '.join(DTYPE_ALIASES)})")
    return DTYPES[name]
