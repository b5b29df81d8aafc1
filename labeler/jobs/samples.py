"""Database rows -> the typed records models consume (training samples, ground truth, pixels)."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from sqlalchemy.orm import Session

from core.birads import Birads, Pathology
from db.models import Image as ImageRow
from db.models import Split
from db.queries import images as image_queries
from db.queries import labels as label_queries
from db.schemas import BoxRecord
from ml_backend.detector.config import DetectorConfig
from ml_backend.detector.data import Sample, map_category
from ml_backend.detector.interface import Box, GroundTruth, RGBImage


@dataclass(frozen=True)
class LabeledImage:
    image_id: int
    sha256: str
    png_path: str
    boxes: tuple[Box, ...]  # lesion boxes only; "other" findings are not lesions
    categories: tuple[Birads, ...]
    image_category: Birads
    pathology: Pathology | None
    split: Split

    def ground_truth(self) -> GroundTruth:
        return GroundTruth(self.boxes, self.categories, self.image_category, self.pathology)


def labeled_images(
    session: Session, *, split: Split | None, dataset: str | None = None
) -> list[LabeledImage]:
    """Images of a split (None: every split), of one dataset or all, with their reference
    labels (dataset labels, not reader reviews)."""
    return [
        _labeled(image, ref.boxes, ref.birads, ref.pathology)
        for image, ref in image_queries.reference_labels(session, dataset=dataset, split=split)
    ]


def accepted_images(session: Session) -> list[LabeledImage]:
    """Images whose pre-label the readers accepted: the consensus boxes and category. Never a
    test-split image (the query leaves them out), however it came to be reviewed."""
    return [
        _labeled(image, label.boxes, label.birads or Birads.B1, None)
        for image, label in label_queries.accepted_labels(session)
    ]


def _labeled(
    image: ImageRow, boxes: Sequence[BoxRecord], category: Birads, pathology: Pathology | None
) -> LabeledImage:
    lesions = [b for b in boxes if b.kind == "lesion" and b.birads is not None]
    return LabeledImage(
        image_id=image.id,
        sha256=image.sha256,
        png_path=image.png_path,
        boxes=tuple(b.xyxy for b in lesions),
        categories=tuple(b.birads for b in lesions if b.birads is not None),
        image_category=category,
        pathology=pathology,
        split=image.split,
    )


def training_set(session: Session, *, include_reference: bool) -> list[LabeledImage]:
    """Accepted reader labels, plus the train split's reference labels (the seed) if asked;
    an image with both counts once, with the readers' label."""
    accepted = accepted_images(session)
    seen = {im.image_id for im in accepted}
    reference = labeled_images(session, split=Split.TRAIN) if include_reference else []
    return accepted + [im for im in reference if im.image_id not in seen]


def is_birads_4(category: Birads) -> bool:
    return category.coarse is Birads.B4


def training_samples(
    images: Sequence[LabeledImage], config: DetectorConfig, *, exclude_4: bool
) -> tuple[list[Sample], Counter[str]]:
    """Samples in the config's label space, and why the others were left out."""
    samples: list[Sample] = []
    skipped: Counter[str] = Counter()
    for im in images:
        if exclude_4 and is_birads_4(im.image_category):
            skipped["BI-RADS 4 excluded"] += 1
            continue
        mapped = [map_category(c, config.box_categories) for c in im.categories]
        if any(c is None for c in mapped):
            skipped[f"category not in the {config.label_space} space"] += 1
            continue
        samples.append(Sample(im.png_path, im.boxes, tuple(c for c in mapped if c is not None)))
    return samples, skipped


def manifest_hash(samples: Sequence[Sample], shas: dict[str, str]) -> str:
    """Identifies the training data: same images and labels, same hash."""
    rows = sorted(
        (shas[s.png_path], [list(b) for b in s.boxes], [c.value for c in s.categories])
        for s in samples
    )
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def load_rgb(home: Path, png_path: str) -> RGBImage:
    with Image.open(home / png_path) as img:
        return np.asarray(img.convert("RGB"))
