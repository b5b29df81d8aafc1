"""The bundled real sample (62 BUS-BRA and 26 BrEaST images) that `labeler demo` imports.

It ships inside the package (`labeler/sample_data/`, package data), so an installed `labeler`
finds it without a checkout. Imports only read under LABELER_DATA_ROOT, and the sources they
record are paths relative to it: when the package sits outside the data root (a wheel in
site-packages), the demo imports a copy made once under `<data root>/labeler-sample/`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from core.errors import BadInputError

SAMPLE_ROOT = Path(__file__).resolve().parent / "sample_data"
COPY_FOLDER = "labeler-sample"

# Folder under SAMPLE_ROOT -> the dataset adapter that reads it (labeler/importing/datasets).
SAMPLES: dict[str, str] = {
    "busbra_mini": "busbra",
    "breast_lesions_usg_mini": "breast-lesions-usg",
}


class SampleMissingError(BadInputError):
    """The package was installed without its sample data."""


def bundled(name: str) -> Path:
    """The shipped folder of one sample (read-only for callers: copy it to change it)."""
    folder = SAMPLE_ROOT / name
    if not folder.is_dir():
        raise SampleMissingError(f"bundled sample {folder} is missing: reinstall birads-labeler")
    return folder


def importable(name: str, data_root: Path) -> Path:
    """The sample folder to import: the shipped one when it lies under `data_root`, else a
    copy under `data_root/labeler-sample/` (made on the first call, reused after)."""
    source = bundled(name)
    if source.is_relative_to(data_root.resolve()):
        return source
    copy = data_root / COPY_FOLDER / name
    if not copy.is_dir():
        staging = copy.with_name(f".{name}.partial")
        shutil.rmtree(staging, ignore_errors=True)
        shutil.copytree(source, staging)
        staging.rename(copy)  # a killed copy never looks complete
    return copy
