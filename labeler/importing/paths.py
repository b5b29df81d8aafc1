"""The data-root guard: nothing is read from outside LABELER_DATA_ROOT."""

from __future__ import annotations

from pathlib import Path


class OutsideDataRootError(ValueError):
    pass


def ensure_inside(path: Path, root: Path) -> Path:
    """Resolve symlinks and `..`, then refuse anything that lands outside `root`."""
    resolved = path.expanduser().resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise OutsideDataRootError(
            f"{path} is outside LABELER_DATA_ROOT ({root}); "
            "move the data under it or point LABELER_DATA_ROOT at its folder"
        )
    return resolved


def display_path(path: Path, root: Path) -> str:
    """A path for messages: relative to the data root when possible."""
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)
