"""The backend's expected failures, each with the HTTP status it is answered with.

Their messages are fixed texts or built from our own values: they never quote a filesystem path,
a caller's URL, or an exception from below (which might), so a response body leaks nothing.
"""

from __future__ import annotations

from core.errors import BadInputError


class BackendError(Exception):
    """An expected failure answered with `status` and the message as `detail`."""

    status: int = 400
    retry_after: int | None = None
    task_id: int | None = None  # the /predict task it is about, named in the message

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        if retry_after is not None:
            self.retry_after = retry_after

    def __str__(self) -> str:
        prefix = f"task {self.task_id}: " if self.task_id is not None else ""
        return prefix + str(self.args[0])


class ImageRefused(BackendError):
    """The reference is not one we may read: a path outside what we own, a host not allowed."""

    status = 400


class ImageTooLarge(BackendError):
    """Too many bytes or pixels; refused before the whole body or bitmap is in memory."""

    status = 413


class ImageUnavailable(BackendError):
    """The reference is fine but the image could not be read, fetched or decoded."""

    status = 422


class ModelUnavailable(BackendError):
    """No active detector, or its files are damaged: cached pre-labels still work."""

    status = 503


class Busy(BackendError):
    """More model work than one request (or the process, now) may do; the rest waits."""

    status = 503


class BackendConfigError(BadInputError):
    """Settings the backend cannot run with (auth on without a secret): refuse to start."""
