"""Which arithmetic pre-labels run in: fp32, bf16 autocast, or the int8 backbone + FPN.

`labeler models optimize` measures every path this CPU offers on the validation split (s/img
and mAP@0.5) and records the choice beside the version (`HOME/derived/VERSION/precision.json`,
with the int8 graph): the sealed version folder never changes. `auto` then uses the fastest path
whose mAP@0.5 is within `LABELER_PRELABEL_MAX_MAP_DROP` points of fp32, and only on a CPU with
the flags it was measured on; with no record, fp32. An explicit setting is obeyed where it can
be (int8 needs the record and an intact graph); where it cannot, one warning and fp32.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from core.settings import Precision, PrecisionSetting
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.detector.int8 import use_int8
from ml_backend.runtime import flag_line

log = logging.getLogger(__name__)

RECORD = "precision.json"


class PrecisionTrial(BaseModel):
    """One path measured on the validation split, in the same run as fp32."""

    model_config = ConfigDict(frozen=True)

    precision: Precision
    s_per_img: float  # model time per image at the serving batch size (median of 3 passes)
    map50: float | None  # lesion mAP@0.5; None: the split has no lesion box
    map50_drop: float | None  # points of mAP@0.5 below fp32 (negative: above); None: unknown
    within_bound: bool  # an unknown cost is never within it

    def line(self) -> str:
        accuracy = "mAP@0.5 unknown (no lesion box)"
        if self.map50 is not None and self.map50_drop is not None:
            accuracy = f"lesion mAP@0.5 {self.map50:.3f} ({self.map50_drop:+.2f} points vs fp32)"
        verdict = "within bound" if self.within_bound else "over the bound"
        return f"{self.precision}: {self.s_per_img:.3f} s/img, {accuracy}, {verdict}"


class PrecisionChoice(BaseModel):
    """What `auto` uses for a version, and the measurements it was chosen from."""

    model_config = ConfigDict(frozen=True)

    version: str
    chosen: Precision
    max_map_drop: float  # points
    trials: tuple[PrecisionTrial, ...]
    cpu: str  # runtime.flag_line() where it was measured
    images: int  # validation images scored per path
    calibration_images: int
    int8_sha256: str | None = None
    feature_names: tuple[str, ...] = ()
    measured_at: datetime = Field(default_factory=lambda: datetime.now(UTC))


def choose(trials: Sequence[PrecisionTrial]) -> Precision:
    """The fastest path within the accuracy bound; fp32 (the reference) when none is."""
    passing = [t for t in trials if t.within_bound]
    return min(passing, key=lambda t: t.s_per_img).precision if passing else "fp32"


def derived_folder(home: Path, version_id: str) -> Path:
    """Where a version's derived artefacts live (rebuilt from it, never part of its seal); keyed
    by the version id, which is also its folder's name under HOME/models."""
    return home / "derived" / version_id


def read_choice(folder: Path) -> PrecisionChoice | None:
    path = folder / RECORD
    if not path.is_file():
        return None
    try:
        return PrecisionChoice.model_validate_json(path.read_text())
    except ValueError:
        log.warning("%s is unreadable; pre-labeling in fp32", RECORD)
        return None


def write_choice(folder: Path, choice: PrecisionChoice) -> None:
    """Replace the record in one rename (a server reading it sees the old or the new one), then
    drop int8 graphs no record names any more."""
    staged = folder / f".{RECORD}.{os.getpid()}"
    staged.write_text(choice.model_dump_json(indent=2))
    os.replace(staged, folder / RECORD)
    keep = int8_graph(folder, choice.int8_sha256).name if choice.int8_sha256 else None
    for old in folder.glob("backbone-int8-*.onnx"):
        if old.name != keep:
            old.unlink(missing_ok=True)


def int8_graph(folder: Path, digest: str) -> Path:
    """The graph's file is named by its content, so a new graph never overwrites one in use."""
    return folder / f"backbone-int8-{digest[:16]}.onnx"


def choice_stamp(folder: Path) -> int | None:
    """Changes whenever the record is replaced (a server reloads its model then)."""
    try:
        return (folder / RECORD).stat().st_mtime_ns
    except OSError:
        return None


def sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def apply_precision(
    detector: FasterRCNNDetector, derived: Path, setting: PrecisionSetting
) -> Precision:
    """Put a loaded detector on the path `setting` asks for; returns the path in effect (also
    kept as `detector.precision`, which stored pre-labels and evaluations record)."""
    choice = read_choice(derived) if setting in ("auto", "int8") else None
    wanted = _wanted(detector, choice, setting)
    if wanted == "int8" and not _int8(detector, derived, choice):
        wanted = "fp32"
    detector.bf16 = wanted == "bf16"
    detector.precision = wanted
    return wanted


def _wanted(
    detector: FasterRCNNDetector, choice: PrecisionChoice | None, setting: PrecisionSetting
) -> Precision:
    if setting != "auto":
        if setting == "int8" and detector.device.type != "cpu":
            log.warning("int8 pre-labeling runs on the CPU only; using fp32 on %s", detector.device)
            return "fp32"
        return setting
    if choice is None:
        return "fp32"
    if choice.cpu != flag_line():
        log.warning(
            "the precision choice of %s was measured on another CPU (%s); pre-labeling in fp32 "
            "until `labeler models optimize %s` runs here",
            choice.version,
            choice.cpu,
            choice.version,
        )
        return "fp32"
    return "fp32" if choice.chosen == "int8" and detector.device.type != "cpu" else choice.chosen


def _int8(detector: FasterRCNNDetector, derived: Path, choice: PrecisionChoice | None) -> bool:
    """Swap in the int8 graph if its record says it is this version's and the file is intact."""
    graph = int8_graph(derived, choice.int8_sha256) if choice and choice.int8_sha256 else None
    if choice is None or graph is None or not graph.is_file():
        log.warning("no int8 graph for this version (`labeler models optimize` builds it); fp32")
        return False
    if sha256(graph) != choice.int8_sha256:
        log.warning("the int8 graph differs from the one measured (sha256); pre-labeling in fp32")
        return False
    use_int8(detector, graph, list(choice.feature_names))
    return True
