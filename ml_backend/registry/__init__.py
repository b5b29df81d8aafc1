"""Model registry: immutable version folders plus rows, an active pointer per kind, rollback."""

from ml_backend.registry.registry import (
    DamagedVersionError,
    ModelRegistry,
    NothingToRollBackError,
    RegistryError,
    UnknownVersionError,
    VersionInfo,
    installed_package_version,
)

__all__ = [
    "DamagedVersionError",
    "ModelRegistry",
    "NothingToRollBackError",
    "RegistryError",
    "UnknownVersionError",
    "VersionInfo",
    "installed_package_version",
]
