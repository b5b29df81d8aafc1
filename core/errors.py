"""One exception type for the workflow's expected failures, each kind with its own exit code.

A command catches `LabelerError` (and only it) and prints its message as one line; anything
else is a bug and keeps its traceback. The codes are the CLI's contract with cron and scripts.

The kinds below are the hierarchy's base classes, one per exit code. A specific error (no
training data, Label Studio down, a path outside the data root) is defined where it is raised
and derives from its kind, so callers catch what they mean and the CLI needs no list of them.
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


class JobFailedError(LabelerError):
    """The job ran and could not finish (nothing to train on, a diverging loss); exit 1."""

    exit_code = ExitCode.PARTIAL


class BadInputError(LabelerError):
    """A request we refuse: unknown id, bad path, wrong layout, missing prerequisite; exit 2."""

    exit_code = ExitCode.BAD_INPUT


class StudioError(LabelerError):
    """Label Studio is down, not installed, would not start, or refused a request; exit 3."""

    exit_code = ExitCode.STUDIO


class BusyError(LabelerError):
    exit_code = ExitCode.BUSY


class DatabaseUnusableError(LabelerError):
    exit_code = ExitCode.DATABASE


class ModelDamagedError(LabelerError):
    exit_code = ExitCode.MODEL_DAMAGED


class DiskFullError(LabelerError):
    exit_code = ExitCode.DISK_FULL
