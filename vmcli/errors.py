"""Errors a user can act on.

Library code raises these with what went wrong, which file, and how to fix it; only the CLI
turns them into exit codes, so library users get ordinary exceptions.
"""

from __future__ import annotations


class VmError(Exception):
    """Base class: a problem the user can fix. `exit_code` is what the CLI exits with."""

    exit_code = 1


class ConfigError(VmError):
    """A setting or command-line option that cannot work (bad value, impossible combination)."""

    exit_code = 2


class DataError(VmError):
    """The input data cannot be used: missing folder, no usable files, mixed modalities..."""

    exit_code = 3


class CheckpointError(VmError):
    """A run folder or weights file is missing, incomplete, or from an incompatible version."""

    exit_code = 4


class TrainingInterrupted(VmError):
    """Raised after Ctrl-C once a resumable checkpoint has been written."""

    exit_code = 130


class OutOfMemory(VmError):
    """The host or the GPU ran out of memory: a smaller batch or smaller samples would fit."""

    exit_code = 5


def as_out_of_memory(e: BaseException) -> OutOfMemory | None:
    """An OutOfMemory saying what to shrink, if `e` is an allocation failure (Python's
    MemoryError, CUDA's OutOfMemoryError, the CPU allocator's RuntimeError); else None."""
    text = str(e)
    first = (text.splitlines() or [""])[0][:200]
    cuda = type(e).__name__ == "OutOfMemoryError"
    cpu = isinstance(e, RuntimeError) and (
        "can't allocate memory" in text or "DefaultCPUAllocator" in text
    )
    if not (isinstance(e, MemoryError) or cuda or cpu):
        return None
    where = "the GPU" if cuda else "memory"
    return OutOfMemory(
        f"ran out of {where} ({first or type(e).__name__}): use a smaller --batch-size, or "
        "smaller samples (--image-size, --clip-seconds, --window); nothing was exported"
    )
