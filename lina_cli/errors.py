"""Errors the CLI raises, and the map that turns any error into one line plus a hint.

Library code (`models/`, and the typer-free modules of `lina_cli/`) raises specific `LinaError` subclasses;
only `format_error` decides what the user reads. `LINA_DEBUG=1` shows the full traceback instead.
"""

import errno
import sys
from collections.abc import Callable
from dataclasses import dataclass

from models.constants import BUNDLED_MODELS
from models.errors import (
    CheckpointMismatchError,
    DetectorConversionError,
    DeviceUnavailableError,
    EvalInputError,
    GenEvalFileError,
    GenEvalWeightsError,
    InceptionWeightsError,
    InvalidClassLabelError,
    InvalidConfigError,
    InvalidPromptError,
    LinaError,
    MetadataError,
    MissingComponentError,
    ModelNotFoundError,
    OutputError,
    PromptsFileError,
    ReferenceUnavailableError,
    RunFolderError,
    ShapesSceneError,
    TrainingConfigError,
    TrainingDataError,
    UnsupportedSizeError,
    WeightsNotCachedError,
)

DEBUG_HINT = "set LINA_DEBUG=1 to see the full traceback"


class SettingsError(LinaError, ValueError):
    """A value from the command line, a `LINA_<OPTION>` variable or a config file that does not parse."""


@dataclass(frozen=True)
class ErrorMessage:
    """What the user reads: one line saying what went wrong, one saying what to do."""

    message: str
    hint: str


def _is_disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _is_not_writable(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM, errno.EROFS)


def _is_out_of_memory(error: BaseException) -> bool:
    # torch is only consulted when a command already imported it; --help never pays for it.
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "can't allocate memory" in str(error)  # CPU allocator


def _os_target(error: BaseException) -> str:
    name = getattr(error, "filename", None)
    return f" {name}" if name else ""


# (what matches, how to word it, hint); the first match wins, so subclasses precede their parents.
# A match is an exception class or a predicate; the wording is `str(error)` unless a function is given.
Rule = type | tuple[type, ...] | Callable[[BaseException], bool]
CLI_ERROR_MAPPINGS: list[tuple[Rule, Callable[[BaseException], str], str]] = [
    (
        WeightsNotCachedError,
        str,
        "run that command while online, or point HF_HUB_CACHE at a cache that has the model; "
        f"offline, -m {', -m '.join(BUNDLED_MODELS)} is bundled with lina",
    ),
    (ModelNotFoundError, str, "check the name with `lina models`, or pass a folder path"),
    (UnsupportedSizeError, str, "drop --size, or pick the model made for that size (see `lina models`)"),
    (InvalidClassLabelError, str, "class ids are integers like 207, or ranges like 0-999"),
    (PromptsFileError, str, 'a .txt prompts file has one prompt per line; a .jsonl file one {"prompt": ...} per line'),
    (InvalidPromptError, str, "give prompts to a text-to-image model and --class ids to a class-conditional one"),
    (OutputError, str, "choose another output (-o/--output, --samples-dir), or pass --overwrite where the command has it"),
    (EvalInputError, str, "fix or remove the file named above; `lina eval fid -h` lists what --samples and --ref accept"),
    (ReferenceUnavailableError, str, "download the file named above, or pass one with --ref FILE / --inception-weights FILE"),
    (InceptionWeightsError, str, "pass torch-fidelity's weights-inception-2015-12-05-6726825d.pth with --inception-weights"),
    (GenEvalFileError, str, "metadata files hold one JSON object per line; results.jsonl is what GenEval's evaluate_images.py writes"),
    (ShapesSceneError, str, "the shapes set knows circle, square and triangle in its 8 colours, 1 to 4 objects"),
    (DetectorConversionError, str, "--detector-weights must be GenEval's mmdetection Mask2Former .pth (…-743b7d99.pth)"),
    (GenEvalWeightsError, str, "pass the files with --detector-weights / --clip-weights (see `lina eval geneval score -h`)"),
    ((TrainingConfigError, TrainingDataError), str, "`lina train model -h` lists the options and presets"),
    (RunFolderError, str, "a run folder holds one training run: --resume continues it, a new --out starts another"),
    (SettingsError, str, "`lina config` shows every setting and where its value comes from"),
    (DeviceUnavailableError, str, "drop --device to run on the CPU, or install a CUDA build of torch"),
    (MetadataError, str, "only PNGs written by `lina generate` carry lina metadata"),
    (
        (CheckpointMismatchError, MissingComponentError, InvalidConfigError),
        str,
        "the model folder is incomplete or not a LINA pipeline; for hub models re-run `lina download`",
    ),
    (LinaError, str, DEBUG_HINT),
    (
        _is_out_of_memory,
        lambda e: f"out of memory: {str(e).splitlines()[0] if str(e) else type(e).__name__}",
        "lower --batch-size, use --dtype bf16 (or fp16), or add --save-latents so a decode failure keeps the run",
    ),
    (
        _is_disk_full,
        lambda e: f"disk full: could not write{_os_target(e)} ({e.strerror})",
        "free some space or write elsewhere with -o/--output; finished images are kept, so re-running resumes",
    ),
    (_is_not_writable, lambda e: f"cannot write{_os_target(e)}: {e.strerror}", "choose a writable -o/--output folder"),
]


def _matches(rule: Rule, error: BaseException) -> bool:
    return isinstance(error, rule) if isinstance(rule, (type, tuple)) else rule(error)


def format_error(error: BaseException) -> ErrorMessage:
    """The one-line message and hint for any exception (unknown types get a generic line and the debug hint)."""
    for rule, message, hint in CLI_ERROR_MAPPINGS:
        if _matches(rule, error):
            return ErrorMessage(message(error), hint)
    return ErrorMessage(f"unexpected error: {type(error).__name__}: {error}", DEBUG_HINT)
