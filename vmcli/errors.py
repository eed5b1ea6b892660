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
