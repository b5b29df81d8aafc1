"""Which model a job runs: the kinds this project trains, and "given version, else active"."""

from __future__ import annotations

from labeler.context import AppContext
from ml_backend.registry import ModelRegistry, VersionInfo

DETECTOR_KIND = "detector"
NO4_KIND = "detector_no4"


def resolve(app: AppContext, version_id: str | None) -> tuple[ModelRegistry, VersionInfo]:
    """The named version, or the active detector; a clear error when there is neither."""
    registry = ModelRegistry.for_settings(app.settings, app.sessions)
    info = registry.get(version_id) if version_id else registry.active(DETECTOR_KIND)
    if info is None:
        raise LookupError("no active detector: train one (`labeler train`) or pass --model")
    return registry, info
