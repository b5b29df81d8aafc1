"""Model registry: immutable version folders plus rows, an active pointer per kind, rollback."""

from ml_backend.registry.registry import (
    ModelRegistry,
    NothingToRollBackError,
    RegistryError,
    UnknownVersionError,
    VersionInfo,
    installed_package_version,
)

__all__ = [
    "ModelRegistry",
    "NothingToRollBackError",
    "RegistryError",
    "UnknownVersionError",
    "VersionInfo",
    "installed_package_version",
]
