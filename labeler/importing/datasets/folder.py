"""Any folder of PNG/JPEG/DICOM files, searched recursively; no labels.

DICOM files are recognised by suffix or by their DICM preamble, so extension-less PACS exports
work. Symlinked folders are not followed; a symlinked file is checked against the data root.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from labeler.importing.items import ImportItem, ImportProblem

NAME = "folder"
SUFFIXES = {".png", ".jpg", ".jpeg", ".dcm", ".dicom", ""}


def items(root: Path) -> Iterator[ImportItem | ImportProblem]:
    if root.is_file():
        yield ImportItem(path=root, dataset=NAME)
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if not name.startswith(".") and path.suffix.lower() in SUFFIXES:
                yield ImportItem(path=path, dataset=NAME)
