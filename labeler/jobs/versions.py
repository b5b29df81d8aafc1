"""Which model a job runs: the kinds this project trains, and "given version, else active"."""

from __future__ import annotations

from labeler.context import AppContext
from ml_backend.registry import ModelRegistry, VersionInfo
from ml_backend.registry.kinds import DETECTOR_KIND, NO4_KIND

__all__ = ["DETECTOR_KIND", "NO4_KIND", "resolve"]


def resolve(app: AppContext, version_id: str | None) -> tuple[ModelRegistry, VersionInfo]:
    """The named version, or the active detector; a clear error when there is neither."""
    registry = ModelRegistry.for_settings(app.settings, app.sessions)
    info = registry.get(version_id) if version_id else registry.active(DETECTOR_KIND)
    if info is None:
        raise LookupError("no active detector: train one (`labeler train`) or pass --model")
    return registry, info
