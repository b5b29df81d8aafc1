"""One exception type for the workflow's expected failures, each kind with its own exit code.

A command catches `LabelerError` (and only it) and prints its message as one line; anything
else is a bug and keeps its traceback. The codes are the CLI's contract with cron and scripts.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    PARTIAL = 1  # some of the work failed (files not imported, training failed); the rest is done
    BAD_INPUT = 2  # usage, settings, a path or a file we refuse
    STUDIO = 3  # Label Studio is down or refused a request
    BUSY = 4  # another run holds the lock
    DATABASE = 5  # the database cannot be opened or is corrupt
    MODEL_DAMAGED = 6  # a model version's files are missing or changed
    DISK_FULL = 7  # no space left where we write


class LabelerError(Exception):
    """An expected failure: its message is one line a user can act on."""

    exit_code: ExitCode = ExitCode.PARTIAL

    def __init__(self, message: str, *, exit_code: ExitCode | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return str(self.args[0])


class BadInputError(LabelerError):
    exit_code = ExitCode.BAD_INPUT


class BusyError(LabelerError):
    exit_code = ExitCode.BUSY


class DatabaseUnusableError(LabelerError):
    exit_code = ExitCode.DATABASE


class ModelDamagedError(LabelerError):
    exit_code = ExitCode.MODEL_DAMAGED


class DiskFullError(LabelerError):
    exit_code = ExitCode.DISK_FULL
