"""db.queries.labels: one consensus per (image, round); the decision time stays put."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from core.birads import Birads
from db.models import LabelStatus, Split
from db.queries import labels as label_queries
from tests.db.rows import add_images


def _label(s: Session, image_id: int, round: int, status: LabelStatus) -> None:
    label_queries.upsert_label(
        s,
        image_id=image_id,
        round=round,
        status=status,
        boxes=[],
        birads=Birads.B2 if status is LabelStatus.ACCEPTED else None,
        model_version_id=None,
    )


def test_decided_at_moves_only_with_the_status(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        (image,) = add_images(s, 1)
        _label(s, image.id, 1, LabelStatus.PENDING)
    with sessions() as s:
        assert label_queries.labels_by_image(s)[image.id].decided_at is None
    with sessions.begin() as s:
        _label(s, image.id, 1, LabelStatus.ACCEPTED)
    with sessions() as s:
        decided = label_queries.labels_by_image(s)[image.id].decided_at
        assert decided is not None
        assert label_queries.count_accepted_since(s, since=None) == 1
        assert label_queries.count_accepted_since(s, since=decided) == 0
    with sessions.begin() as s:
        _label(s, image.id, 1, LabelStatus.ACCEPTED)  # a repeated sync
    with sessions() as s:
        assert label_queries.labels_by_image(s)[image.id].decided_at == decided


def test_counts_rounds_and_accepted_training_labels(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        twice, once, pending = add_images(s, 3)
        (test,) = add_images(s, 1, first=4, split=Split.TEST)
        _label(s, twice.id, 1, LabelStatus.REJECTED)
        _label(s, twice.id, 2, LabelStatus.REJECTED)
        _label(s, twice.id, 3, LabelStatus.ACCEPTED)
        _label(s, once.id, 1, LabelStatus.ACCEPTED)
        _label(s, pending.id, 1, LabelStatus.PENDING)
        _label(s, test.id, 1, LabelStatus.ACCEPTED)
    with sessions() as s:
        assert label_queries.label_counts(s) == {"accepted": 3, "rejected": 2, "pending": 1}
        assert label_queries.rejection_counts(s) == {twice.id: 2}
        assert {i: lab.round for i, lab in label_queries.labels_by_image(s).items()} == {
            twice.id: 3,
            once.id: 1,
            pending.id: 1,
            test.id: 1,
        }
        assert set(label_queries.labels_by_image(s, round=2)) == {twice.id}
        accepted = label_queries.accepted_labels(s)
        assert [(image.id, label.round) for image, label in accepted] == [
            (twice.id, 3),
            (once.id, 1),
        ]
