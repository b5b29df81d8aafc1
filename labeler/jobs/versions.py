"""Which model a job runs: the kinds this project trains, and "given version, else active"."""

from __future__ import annotations

from pathlib import Path

from core.errors import BadInputError
from labeler.context import AppContext
from ml_backend.registry import ModelRegistry, VersionInfo
from ml_backend.registry.kinds import DETECTOR_KIND, NO4_KIND

__all__ = ["DETECTOR_KIND", "NO4_KIND", "NoActiveDetectorError", "intact_path", "resolve"]


class NoActiveDetectorError(BadInputError):
    """No version was named and no detector is active yet."""


def resolve(app: AppContext, version_id: str | None) -> tuple[ModelRegistry, VersionInfo]:
    """The named version, or the active detector; a clear error when there is neither."""
    registry = ModelRegistry.for_settings(app.settings, app.sessions)
    info = registry.get(version_id) if version_id else registry.active(DETECTOR_KIND)
    if info is None:
        raise NoActiveDetectorError(
            "no active detector: train one (`labeler train`) or pass --model"
        )
    return registry, info


def intact_path(registry: ModelRegistry, version_id: str) -> Path:
    """The folder to load a version from, only if its files are as sealed (exit code 6 if not).

    Every job that loads weights goes through here, so a deleted or changed file is one clear
    line instead of a torch traceback or, worse, a model that is not the one registered.
    """
    return registry.intact_path(version_id)  # DamagedVersionError is a ModelDamagedError
