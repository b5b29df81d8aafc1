"""A detector set up for pre-labeling (the loader of ml_backend.prelabel.pipeline).

Shared by the batch job (`labeler predict`) and the HTTP backend's cache-miss path, so both
run the same model options for the same version.
"""

from __future__ import annotations

from pathlib import Path

from core.settings import Settings
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.detector.optimize import limit_proposals, optimize_for_inference, use_bf16


def load_for_prelabel(folder: Path, settings: Settings) -> FasterRCNNDetector:
    """Load a registered version with the inference options from settings."""
    detector = FasterRCNNDetector.load(folder, device=settings.device)
    if settings.prelabel_fold_bn:
        optimize_for_inference(detector)
    use_bf16(detector, settings.prelabel_bf16)
    if settings.prelabel_proposals is not None:
        limit_proposals(detector, settings.prelabel_proposals)
    return detector
