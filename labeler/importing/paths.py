"""The data-root guard and how source paths appear in messages.

Nothing is read from outside LABELER_DATA_ROOT, nor from under LABELER_HOME (the database, its
WAL, the secrets: opening and closing the SQLite file drops this process's POSIX locks on it).
Hospital export paths often hold patient names, so a message quotes a path relative to the data
root only, never the root or an absolute path, and never the file name of a DICOM source.
"""

from __future__ import annotations

from pathlib import Path

from core.errors import BadInputError

DICOM_SUFFIXES = (".dcm", ".dicom", "")  # "": PACS exports often have no extension


class RefusedPathError(BadInputError):
    """A path the import will not read; the message quotes no path."""


class OutsideDataRootError(RefusedPathError):
    def __init__(self, what: str = "the path") -> None:
        super().__init__(
            f"{what} is outside LABELER_DATA_ROOT; "
            "move the data under it or point LABELER_DATA_ROOT at its folder"
        )


class InsideHomeError(RefusedPathError):
    def __init__(self, what: str = "the path") -> None:
        super().__init__(
            f"{what} is inside LABELER_HOME (the labeler's own database and images); "
            "import from a folder outside it"
        )


class MissingPathError(RefusedPathError):
    def __init__(self, what: str = "the path") -> None:
        super().__init__(f"{what} does not exist")


class NotAFolderError(RefusedPathError):
    """A folder was asked for and the path is a file; the message is built by the caller."""


def ensure_inside(
    path: Path, root: Path, *, home: Path | None = None, what: str = "the path"
) -> Path:
    """Resolve symlinks and `..`, then refuse anything outside `root` or inside `home`."""
    resolved = path.expanduser().resolve()
    if not resolved.is_relative_to(root.resolve()):
        raise OutsideDataRootError(what)
    if home is not None and resolved.is_relative_to(home.resolve()):
        raise InsideHomeError(what)
    return resolved


def display_path(path: Path, root: Path) -> str:
    """A path for messages: relative to the data root; a placeholder when it is not under it."""
    for candidate in (path, path.expanduser().absolute()):
        try:
            return str(candidate.relative_to(root)) or "."
        except ValueError:
            continue
    try:
        return str(path.expanduser().resolve().relative_to(root.resolve())) or "."
    except (ValueError, OSError):
        return "<outside LABELER_DATA_ROOT>"


def might_be_dicom(path: Path) -> bool:
    return path.suffix.lower() in DICOM_SUFFIXES


def dicom_label(path: Path, root: Path, sha256: str | None) -> str:
    """A DICOM source in messages: its folder and a short content hash, never its file name."""
    folder = display_path(path.parent, root)
    tag = f"DICOM sha256:{sha256[:8]}" if sha256 else "DICOM file"
    return f"{'' if folder == '.' else folder + '/'} <{tag}>".lstrip()


def source_label(path: Path, root: Path, *, sha256: str | None, is_dicom: bool) -> str:
    """How one source file appears in the summary, its JSON and the logs."""
    if is_dicom:
        return dicom_label(path, root, sha256)
    return display_path(path, root)
