"""A detector set up for pre-labeling (the loader of ml_backend.prelabel.pipeline).

Shared by the batch job (`labeler predict`), the HTTP backend's cache-miss path, the simulation
and the evaluator, so all of them run the same model options and arithmetic for the same version.
"""

from __future__ import annotations

from pathlib import Path

from core.settings import PrecisionSetting, Settings
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.detector.optimize import limit_proposals, optimize_for_inference
from ml_backend.detector.precision import apply_precision, derived_folder


def load_for_prelabel(
    folder: Path, settings: Settings, precision: PrecisionSetting | None = None
) -> FasterRCNNDetector:
    """Load a registered version with the inference options from settings; `precision`
    overrides settings.prelabel_precision (`labeler evaluate --precision fp32`: the reference)."""
    detector = FasterRCNNDetector.load(folder, device=settings.device)
    if settings.prelabel_fold_bn:
        optimize_for_inference(detector)
    if settings.prelabel_proposals is not None:
        limit_proposals(detector, settings.prelabel_proposals)
    derived = derived_folder(settings.home, folder.name)
    apply_precision(detector, derived, precision or settings.prelabel_precision)
    return detector
