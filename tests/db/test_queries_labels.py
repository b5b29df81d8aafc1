"""db.queries.labels: one consensus per (image, round); the decision time stays put."""

from __future__ import annotations

from sqlalchemy.orm import Session, sessionmaker

from db.models import LabelStatus, Split
from db.queries import labels as label_queries
from tests.db.rows import add_images, add_label


def test_decided_at_moves_only_with_the_status(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        (image,) = add_images(s, 1)
        add_label(s, image.id, 1, LabelStatus.PENDING)
    with sessions() as s:
        assert label_queries.labels_by_image(s)[image.id].decided_at is None
    with sessions.begin() as s:
        add_label(s, image.id, 1, LabelStatus.ACCEPTED)
    with sessions() as s:
        decided = label_queries.labels_by_image(s)[image.id].decided_at
        assert decided is not None
        assert label_queries.count_accepted_since(s, since=None) == 1
        assert label_queries.count_accepted_since(s, since=decided) == 0
    with sessions.begin() as s:
        add_label(s, image.id, 1, LabelStatus.ACCEPTED)  # a repeated sync
    with sessions() as s:
        assert label_queries.labels_by_image(s)[image.id].decided_at == decided


def test_counts_rounds_and_accepted_training_labels(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        twice, once, pending = add_images(s, 3)
        (test,) = add_images(s, 1, first=4, split=Split.TEST)
        add_label(s, twice.id, 1, LabelStatus.REJECTED)
        add_label(s, twice.id, 2, LabelStatus.REJECTED)
        add_label(s, twice.id, 3, LabelStatus.ACCEPTED)
        add_label(s, once.id, 1, LabelStatus.ACCEPTED)
        add_label(s, pending.id, 1, LabelStatus.PENDING)
        add_label(s, test.id, 1, LabelStatus.ACCEPTED)
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
