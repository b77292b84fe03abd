"""The exception → message map, and how the app prints errors (one line + hint, exit 1, LINA_DEBUG)."""

import errno
import os

import pytest
import torch

from lina_cli.errors import CLI_ERROR_MAPPINGS, DEBUG_HINT, format_error
from models.errors import InvalidClassLabelError, LinaError, WeightsNotCachedError


def _allocate_beyond_the_gpu(nbytes: int) -> None:
    """A stand-in for a CUDA allocation that fails: raises the real exception type torch raises."""
    raise torch.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {nbytes / 2**30:.2f} GiB")


def test_cuda_out_of_memory_suggests_batch_size_and_dtype():
    with pytest.raises(torch.OutOfMemoryError) as caught:
        _allocate_beyond_the_gpu(2**33)
    message = format_error(caught.value)
    assert message.message == "out of memory: CUDA out of memory. Tried to allocate 8.00 GiB"
    assert "--batch-size" in message.hint and "--dtype" in message.hint


def test_cpu_allocator_failure_counts_as_out_of_memory():
    with pytest.raises(RuntimeError) as caught:
        torch.empty(2**62, dtype=torch.uint8)
    assert format_error(caught.value).message.startswith("out of memory")


def test_disk_full_is_named_with_the_file():
    with pytest.raises(OSError) as caught, open("/dev/full", "wb", buffering=0) as handle:
        handle.write(b"x")
    message = format_error(caught.value)
    assert message.message.startswith("disk full")
    assert "re-running resumes" in message.hint
    synthetic = format_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "out/00000.png"))
    assert synthetic.message == f"disk full: could not write out/00000.png ({os.strerror(errno.ENOSPC)})"


def test_permission_denied_points_at_output():
    message = format_error(PermissionError(errno.EACCES, "Permission denied", "/ro/x.png"))
    assert message.message == "cannot write /ro/x.png: Permission denied"
    assert "-o/--output" in message.hint


def test_weights_not_cached_keeps_the_library_message():
    error = WeightsNotCachedError("x/y is not cached; run `lina download lina-c2i-256`")
    assert format_error(error).message == str(error)
    assert "-m lina-shapes" in format_error(error).hint  # what works offline, for a newcomer without network


def test_unknown_errors_get_the_debug_hint():
    message = format_error(ZeroDivisionError("division by zero"))
    assert message.message == "unexpected error: ZeroDivisionError: division by zero"
    assert message.hint == DEBUG_HINT


def test_subclasses_come_before_their_parents():
    classes = [rule for rule, _, _ in CLI_ERROR_MAPPINGS if isinstance(rule, type)]
    for position, cls in enumerate(classes):
        for earlier in classes[:position]:
            assert not issubclass(cls, earlier), f"{cls.__name__} is shadowed by {earlier.__name__}"


def test_lina_error_base_is_mapped():
    assert format_error(LinaError("something specific")).message == "something specific"


def test_app_prints_one_line_and_hint_and_exits_1(lina, tiny_c2i_folder):
    result = lina("generate", "--class", "3-", "-m", tiny_c2i_folder)
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error: --class '3-'") and lines[1].startswith("hint:")
    assert "Traceback" not in result.output


def test_lina_debug_lets_the_traceback_through(lina, tiny_c2i_folder):
    result = lina("generate", "--class", "3-", "-m", tiny_c2i_folder, env={"LINA_DEBUG": "1"})
    assert result.exit_code == 1
    assert isinstance(result.exception, InvalidClassLabelError)
