"""Errors a user can act on.

Library code raises these with what went wrong, which file, and how to fix it; only the CLI
turns them into exit codes, so library users get ordinary exceptions.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path


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
    """The host or the GPU ran out of memory; the message says what would fit."""

    exit_code = 5


def library_says(e: BaseException) -> str:
    """What a library's exception says, as words for a skip reason: its message's first line
    (its class name, e.g. UnidentifiedImageError, is for programmers), or the class name where
    it has no message."""
    lines = str(e).strip().splitlines()
    return lines[0] if lines else type(e).__name__


def as_out_of_memory(
    e: BaseException, command: str = "train", path: Path | str | None = None
) -> OutOfMemory | None:
    """An OutOfMemory saying what helps `command` (train, augment, eval; `path`: the file
    augment was on), if `e` is an allocation failure (Python's MemoryError, CUDA's
    OutOfMemoryError, the CPU allocator's RuntimeError); else None. The options named are
    the command's own: augment was told to use a smaller --batch-size, which it has not."""
    text = str(e)
    first = (text.splitlines() or [""])[0][:200]
    cuda = type(e).__name__ == "OutOfMemoryError"
    cpu = isinstance(e, RuntimeError) and (
        "can't allocate memory" in text or "DefaultCPUAllocator" in text
    )
    if not (isinstance(e, MemoryError) or cuda or cpu):
        return None
    where = "the GPU" if cuda else "memory"
    gpu_help = "run with --device cpu (the machine's memory is usually larger), or " if cuda else ""
    if command == "augment":
        what = f"{path} is" if path is not None else "a file is"
        advice = (
            f"{what} too large for {'the GPU' if cuda else 'this machine'}'s memory (views "
            "are made one file at a time, at its full size, so fewer --views-per-input does "
            f"not help): {gpu_help}downscale or split the file, or move it out of the input "
            "folder; nothing was written to --out"
        )
    elif command == "eval":
        advice = (
            f"{gpu_help}evaluate on a smaller labelled folder (--data); evaluation holds the "
            "folder's samples in memory at the run's sample size"
        )
    else:
        advice = (
            "use a smaller --batch-size, or smaller samples (--image-size, --clip-seconds, "
            "--window); nothing was exported"
        )
    return OutOfMemory(f"ran out of {where} ({first or type(e).__name__}): {advice}")


class StorageError(VmError):
    """A write failed for the machine's reasons: a full disk or quota, a read-only or failing
    device. Nothing half-written is left behind; freeing space and running again fixes it."""

    exit_code = 6


# errors of the device written to, not of vm or its input
STORAGE_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO}
NEARLY_FULL_BYTES = 1 << 20


def as_storage_error(e: BaseException, target: Path) -> StorageError | None:
    """A StorageError naming `target`, if writing it failed because of its device: an OSError
    with a storage errno, or any error while that device has under 1 MiB free (torch.save and
    libsndfile report a full disk as a RuntimeError that says nothing of it). Call it before
    removing the partial output, which would free the space again."""
    if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
        reason = e.strerror or str(e)
    else:
        try:
            full = shutil.disk_usage(Path(target).parent).free < NEARLY_FULL_BYTES
        except OSError:
            full = False
        if not full or not isinstance(e, Exception):
            return None
        reason = "No space left on device"
    return StorageError(
        f"cannot write {target}: {reason}; free some space or choose another place "
        "(--out), and run again (nothing half-written was left)"
    )
