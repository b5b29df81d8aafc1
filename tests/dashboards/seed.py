"""A small database whose every number is known from `Plan`: statuses, readings, evaluations.

Tests derive what the dashboard must show from the plan (never from literals), and evaluation
payloads are built with the project's own metric functions from known confusion matrices.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from sqlalchemy.orm import Session

from bench.support.factories import val_metrics
from core.birads import Birads, Pathology, Reading
from core.results import DetectionScores, EvaluationMetrics, PrelabelSource, Screening
from db.models import (
    ActiveModel,
    Evaluation,
    Image,
    Label,
    LabelStatus,
    ModelPromotion,
    ModelVersion,
    Patient,
    Prediction,
    ReferenceLabel,
    Review,
    Split,
    TrainingRun,
    Verdict,
)
from db.schemas import BoxRecord
from ml_backend.evaluation.birads4 import evaluate_4ab
from ml_backend.evaluation.metrics import binary_metrics, matrix_of, one_vs_rest, per_class_table

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
READERS = ("ana", "ben", "cho")
FIVE_WAY = ["1", "2", "3", "4", "5"]


def day(n: int, hours: float = 0) -> datetime:
    return T0 + timedelta(days=n, hours=hours)


@dataclass(frozen=True)
class Round:
    """One review round of an image: each reader's category (None: reject, no category)."""

    readings: dict[str, str | None]
    decision: LabelStatus | None  # None: not decided yet
    reviewed_day: int
    decided_day: int | None = None


@dataclass(frozen=True)
class Planned:
    image_id: int
    split: Split
    reference: str
    predicted: str | None  # image BI-RADS of the version-2 pre-label; None: not pre-labeled
    p_malignant: float = 0.0
    rounds: tuple[Round, ...] = ()
    status: str = "unlabeled"


def _round(readings: Sequence[str | None], decision: LabelStatus | None, d: int) -> Round:
    return Round(
        dict(zip(READERS, readings, strict=True)),
        decision,
        d,
        d + 1 if decision is not None else None,
    )


ACC, REJ = LabelStatus.ACCEPTED, LabelStatus.REJECTED


@dataclass(frozen=True)
class Plan:
    """Twelve images through the loop; statuses are what the dashboard must report."""

    images: tuple[Planned, ...] = (
        Planned(1, Split.TRAIN, "2", None, status="unlabeled"),
        Planned(2, Split.TRAIN, "3", None, status="unlabeled"),
        Planned(3, Split.TEST, "2", "2", 0.10, status="pre-labeled"),
        Planned(4, Split.TEST, "5", "5", 0.90, status="pre-labeled"),
        Planned(5, Split.TEST, "3", "3", 0.30, (_round(["3", "3", "4"], None, 3),), "in review"),
        Planned(6, Split.TEST, "4", "4", 0.60, (_round(["4", "5", "3"], None, 3),), "in review"),
        Planned(7, Split.TEST, "2", "2", 0.20, (_round(["2", "2", "2"], ACC, 3),), "accepted"),
        Planned(8, Split.TEST, "5", "4", 0.70, (_round(["5", "5", "4"], ACC, 3),), "accepted"),
        Planned(9, Split.TEST, "3", "2", 0.55, (_round(["3", "2", None], REJ, 3),), "rejected"),
        Planned(
            10,
            Split.VAL,
            "4",
            "3",
            0.40,
            (
                _round(["3", "4", "5"], REJ, 3),
                _round(["4", "4", "5"], REJ, 5),
                Round({"ana": "4"}, None, 7),  # one reader so far: no kappa for round 3
            ),
            "in review",
        ),
        Planned(
            11,
            Split.VAL,
            "2",
            "2",
            0.15,
            (_round(["2", "3", "2"], REJ, 3), _round(["2", "2", "2"], ACC, 5)),
            "accepted",
        ),
        Planned(12, Split.TEST, "1", "1", 0.05, (_round(["1", "1", "1"], ACC, 3),), "accepted"),
    )
    # Table I of version 2: rows truth, columns prediction (labels FIVE_WAY).
    birads_matrix: tuple[tuple[int, ...], ...] = (
        (9, 1, 0, 0, 0),
        (2, 30, 5, 1, 0),
        (0, 4, 20, 3, 1),
        (0, 1, 4, 18, 6),
        (0, 0, 1, 3, 12),
    )
    screening_matrix: tuple[tuple[int, ...], ...] = ((60, 8), (5, 48))
    expert_4ab: tuple[str, ...] = ("4A", "4A", "4A", "4B", "4B", "4A", "4B", "4B", "4A")
    split_4ab: tuple[str, ...] = ("4A", "4B", "4A", "4B", "4A", "4A", "4B", "4B", "4A")
    train_sizes: dict[str, int] = field(default_factory=lambda: {"v1": 40, "v2": 55})
    # The pre-label of `crowded_image` as an older pipeline stored it: under its top box, nine
    # overlapping boxes (category, score), and an image category (`crowded_stored`) that the
    # shown boxes (the best 3 at score >= 0.05) contradict. Its top box is still the planned one,
    # so the ROC score (the top box's probabilities) is as planned.
    crowded_image: int = 3
    crowded_boxes: tuple[tuple[str, float], ...] = (
        ("3", 0.42),
        ("2", 0.30),
        ("4", 0.20),
        ("2", 0.12),
        ("5", 0.06),
        ("5", 0.04),
        ("4", 0.03),
        ("3", 0.02),
        ("2", 0.01),
    )
    crowded_stored: str = "1"

    def with_status(self, status: str) -> list[Planned]:
        return [p for p in self.images if p.status == status]


PLAN = Plan()


def evaluation_payload(plan: Plan, *, with_4ab: bool) -> EvaluationMetrics:
    """The metrics `labeler evaluate` stores, from the plan (no ROC curve: the dashboard then
    draws it from the pre-labels)."""
    birads = np.array(plan.birads_matrix, dtype=np.int64)
    screening = np.array(plan.screening_matrix, dtype=np.int64)
    split = None
    if with_4ab:
        expert = [Birads(c) for c in plan.expert_4ab]
        table = evaluate_4ab(expert, [Birads(c) for c in plan.split_4ab])
        split = table.model_copy(update={"threshold": 0.35, "splits": ("test",)})
    return EvaluationMetrics(
        n_images=int(birads.sum()),
        score_threshold=0.5,
        detection=DetectionScores(
            map50=0.41,
            map50_95=0.2,
            lesion_map50=0.66,
            lesion_map50_95=0.3,
            lesion_recall50=0.7,
            fp_per_image=0.4,
        ),
        birads=per_class_table(FIVE_WAY, birads),
        screening=Screening(
            plain_4_counted_as=Reading.MALIGNANT,
            matrix=matrix_of(["benign", "malignant"], screening),
            rates=binary_metrics(one_vs_rest(screening, 1)),
            auc=0.87,
            sen_at_spe80=None,
            roc=None,
        ),
        birads4_split=split,
        # v3 (the splitter) as if `labeler models optimize` had chosen int8 for it
        prelabel=PrelabelSource(
            detector="v3" if with_4ab else "v2",
            calibrated=True,
            precision="int8" if with_4ab else "fp32",
        ),
    )


def _box(
    x: float, birads: str, *, p_malignant: float | None = None, score: float = 0.9
) -> BoxRecord:
    probs = None
    if p_malignant is not None:
        probs = {Birads.B2: 1 - p_malignant, Birads.B5: p_malignant}
    return BoxRecord(
        xyxy=(x, 4.0, x + 20.0, 30.0),
        birads=Birads(birads),
        score=score,
        probs=probs,
        malignancy=p_malignant,
    )


def prelabel_boxes(plan: Plan, planned: Planned) -> tuple[list[BoxRecord], str]:
    """The version-2 pre-label of a pre-labeled image: its boxes and stored image category."""
    assert planned.predicted is not None
    boxes = [_box(6.0, planned.predicted, p_malignant=planned.p_malignant)]
    if planned.image_id != plan.crowded_image:
        return boxes, planned.predicted
    extra = [_box(7.0 + i, c, score=s) for i, (c, s) in enumerate(plan.crowded_boxes)]
    return boxes + extra, plan.crowded_stored


def write_png(home: Path, png_path: str) -> None:
    path = home / png_path
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = (np.arange(48 * 64, dtype=np.uint32).reshape(48, 64) % 251).astype(np.uint8)
    PILImage.fromarray(pixels, mode="L").save(path)


def _version(session: Session, plan: Plan, vid: str, kind: str, parent: str | None, i: int) -> None:
    space = FIVE_WAY if kind == "detector" else ["1", "2", "3", "5"]
    session.add(
        ModelVersion(
            id=vid,
            kind=kind,
            path=f"models/{vid}",
            parent_id=parent,
            label_space=space,
            config={"name": "small"},
            data_manifest_sha256="0" * 64,
            package_version="0.1.0",
            metrics=val_metrics(0.1 * (i + 1)),
            created_at=day(i),
        )
    )
    session.flush()
    if vid in plan.train_sizes:
        session.add(
            TrainingRun(
                kind=kind,
                status="succeeded",
                config={},
                model_version_id=vid,
                n_train_images=plan.train_sizes[vid],
            )
        )


def _versions(session: Session, plan: Plan) -> None:
    for i, (vid, kind, parent) in enumerate(
        [("v1", "detector", None), ("v2", "detector", "v1"), ("v3", "detector_no4", None)]
    ):
        _version(session, plan, vid, kind, parent, i)
    session.add_all(
        [
            ActiveModel(kind="detector", model_version_id="v2"),
            ActiveModel(kind="detector_no4", model_version_id="v3"),
            ModelPromotion(kind="detector", model_version_id="v1", action="promote", actor="t"),
            ModelPromotion(
                kind="detector",
                model_version_id="v2",
                previous_version_id="v1",
                action="promote",
                actor="t",
            ),
        ]
    )
    for vid, created, with_4ab in (
        ("v1", day(1), False),
        ("v2", day(2), False),
        ("v3", day(3), True),
    ):
        metrics = evaluation_payload(plan, with_4ab=with_4ab)
        if vid == "v1":  # an older, weaker evaluation: the learning curve has to tell them apart
            weaker = binary_metrics(one_vs_rest(np.array([[5, 5], [5, 5]]), 1)).acc
            rates = metrics.screening.rates.model_copy(update={"acc": weaker})
            screening = metrics.screening.model_copy(update={"rates": rates})
            metrics = metrics.model_copy(update={"screening": screening})
        session.add(
            Evaluation(
                model_version_id=vid,
                dataset="all",
                split="test",
                metrics=metrics,
                created_at=created,
            )
        )


def _image(session: Session, home: Path, planned: Planned, patient: Patient) -> None:
    png_path = f"images/{planned.image_id:02d}.png"
    write_png(home, png_path)
    session.add(
        Image(
            id=planned.image_id,
            sha256=f"{planned.image_id:064x}",
            patient_id=patient.id,
            width=64,
            height=48,
            mode="L",
            dataset="busbra",
            source_id=f"case{planned.image_id}",
            fold=1,
            split=planned.split,
            png_path=png_path,
            imported_at=day(0),
        )
    )
    session.add(
        ReferenceLabel(
            image_id=planned.image_id,
            source="busbra",
            birads=Birads(planned.reference),
            pathology=Pathology.MALIGNANT if planned.reference in "45" else Pathology.BENIGN,
            boxes=[_box(2.0, planned.reference)],
        )
    )


def _loop(session: Session, plan: Plan, planned: Planned) -> None:
    if planned.predicted is None:
        return
    boxes, stored = prelabel_boxes(plan, planned)
    prediction = Prediction(
        image_id=planned.image_id,
        model_version_id="v2",
        boxes=boxes,
        image_birads=Birads(stored),
        uncertainty=0.25,
        malignancy=planned.p_malignant,
        produced_by=PrelabelSource(detector="v2", calibrated=True),
        created_at=day(1, hours=planned.image_id),
    )
    session.add(prediction)
    session.flush()
    for number, rnd in enumerate(planned.rounds, start=1):
        for reader, category in rnd.readings.items():
            verdict = Verdict.REJECT if category is None else Verdict.CORRECT
            if category == planned.predicted:
                verdict = Verdict.ACCEPT
            session.add(
                Review(
                    image_id=planned.image_id,
                    reader=reader,
                    round=number,
                    verdict=verdict,
                    boxes=[] if category is None else [_box(10.0, category)],
                    image_birads=Birads(category) if category is not None else None,
                    prediction_id=prediction.id,
                    created_at=day(rnd.reviewed_day, hours=READERS.index(reader)),
                )
            )
        if rnd.decision is not None and rnd.decided_day is not None:
            session.add(
                Label(
                    image_id=planned.image_id,
                    round=number,
                    status=rnd.decision,
                    boxes=[],
                    model_version_id="v2",
                    decided_at=day(rnd.decided_day, hours=planned.image_id),
                )
            )


def seed(session: Session, home: Path, plan: Plan = PLAN) -> None:
    """Write the plan into a migrated database; PNGs go under `home`."""
    patient = Patient(key="pseudonymous-test-patient", source="test")
    session.add(patient)
    session.flush()
    _versions(session, plan)
    for planned in plan.images:
        _image(session, home, planned, patient)
    session.flush()
    for planned in plan.images:
        _loop(session, plan, planned)


# One of each: an image, a dataset, a version trained on one image, one reader's review. Every
# count the pages print is 1 (singular nouns) and every count axis tops out at 1 (whole ticks).
SINGLE = Plan(
    images=(Planned(1, Split.TRAIN, "2", "2", 0.10, (Round({"ana": "2"}, None, 3),), "in review"),),
    train_sizes={"v2": 1},
)


def seed_single(session: Session, home: Path) -> Plan:
    """SINGLE in a migrated database: one active version "v2", no evaluation."""
    patient = Patient(key="pseudonymous-test-patient", source="test")
    session.add(patient)
    session.flush()
    _version(session, SINGLE, "v2", "detector", None, 0)
    session.add(ActiveModel(kind="detector", model_version_id="v2"))
    for planned in SINGLE.images:
        _image(session, home, planned, patient)
    session.flush()
    for planned in SINGLE.images:
        _loop(session, SINGLE, planned)
    return SINGLE
