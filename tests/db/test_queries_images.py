"""db.queries.images on a real SQLite file: idempotent inserts, lookups and SQL counts."""

from __future__ import annotations

import pytest
from sqlalchemy.orm import Session, sessionmaker

from core.birads import Birads, Pathology
from db.models import Split
from db.queries import images as image_queries
from db.schemas import BoxRecord
from tests.db.rows import add_images, new_image


def _reference(birads: Birads, source: str = "busbra") -> image_queries.NewReference:
    box = BoxRecord(xyxy=(1.0, 2.0, 30.0, 40.0), birads=birads)
    return image_queries.NewReference(source, birads, Pathology.BENIGN, None, (box,))


def test_put_image_adds_once_and_reports_it(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        first, added = image_queries.put_image(s, new=new_image(1))
        again, added_again = image_queries.put_image(s, new=new_image(1))
    assert added and not added_again
    assert first.id == again.id
    with sessions() as s:
        image = image_queries.get_image(s, sha256=new_image(1).sha256)
        assert image is not None and image.patient.key == "patient-1"
        assert image_queries.image_by_png_path(s, png_path="images/1.png") == image
        assert image_queries.image_by_id(s, image_id=image.id) == image
        assert image_queries.get_image(s, sha256="f" * 64) is None


def test_another_image_with_the_same_source_id_is_refused(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        image_queries.add_image(s, new=new_image(1))
        clash = new_image(2)
        clash = image_queries.NewImage(**{**clash.__dict__, "source_id": "src-1"})
        with pytest.raises(image_queries.SourceIdTakenError, match="src-1"):
            image_queries.put_image(s, new=clash)


def test_existing_shas_finds_only_stored_ones_past_the_parameter_limit(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as s:
        add_images(s, 3)
    asked = [new_image(n).sha256 for n in range(1, 1200)]  # > 500: several chunks
    with sessions() as s:
        found = image_queries.existing_shas(s, shas=asked)
    assert found == {new_image(n).sha256 for n in (1, 2, 3)}


def test_a_lesion_belongs_to_one_patient(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        ann = image_queries.get_or_create_patient(s, key="ann", source="x")
        bob = image_queries.get_or_create_patient(s, key="bob", source="x")
        assert image_queries.get_or_create_patient(s, key="ann", source="y").id == ann.id
        lesion = image_queries.get_or_create_lesion(s, key="ann-l", patient=ann)
        assert image_queries.get_or_create_lesion(s, key="ann-l", patient=ann).id == lesion.id
        with pytest.raises(image_queries.LesionOfAnotherPatientError, match="another patient"):
            image_queries.get_or_create_lesion(s, key="ann-l", patient=bob)


def test_reference_labels_once_per_source_and_filtered(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        train = add_images(s, 2, dataset="busbra")
        (test,) = add_images(s, 1, first=3, dataset="other", split=Split.TEST)
        stored = image_queries.add_reference_label(
            s, image_id=train[0].id, reference=_reference(Birads.B3)
        )
        assert stored is not None and stored.boxes[0].xyxy == (1.0, 2.0, 30.0, 40.0)
        repeat = _reference(Birads.B5)
        assert image_queries.add_reference_label(s, image_id=train[0].id, reference=repeat) is None
        for image in (train[1], test):
            image_queries.add_reference_label(s, image_id=image.id, reference=_reference(Birads.B5))
    with sessions() as s:
        everything = image_queries.reference_labels(s)
        assert [(i.id, r.birads) for i, r in everything] == [
            (train[0].id, Birads.B3),
            (train[1].id, Birads.B5),
            (test.id, Birads.B5),
        ]
        assert len(image_queries.reference_labels(s, dataset="busbra")) == 2
        assert [i.id for i, _ in image_queries.reference_labels(s, split=Split.TEST)] == [test.id]


def test_image_counts_group_in_sql(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        images = add_images(s, 3, dataset="busbra")
        add_images(s, 1, first=4, dataset="other", split=Split.TEST)
        for image, birads in zip(images, (Birads.B3, Birads.B3, Birads.B5), strict=True):
            image_queries.add_reference_label(s, image_id=image.id, reference=_reference(birads))
    with sessions() as s:
        counts = image_queries.image_counts(s)
        only = image_queries.image_counts(s, dataset="other")
    assert counts.total == 4 and counts.patients == 4
    assert counts.by_dataset == {"busbra": 3, "other": 1}
    assert counts.by_split == {"train": 3, "test": 1}
    assert counts.splits_by_dataset == {"busbra": {"train": 3}, "other": {"test": 1}}
    assert counts.by_birads == {"3": 2, "5": 1}
    assert counts.by_pathology == {"benign": 3}
    assert (only.total, only.by_birads) == (1, {})


def test_dataset_names_and_patients_in_other_splits(sessions: sessionmaker[Session]) -> None:
    with sessions.begin() as s:
        (train,) = add_images(s, 1, dataset="busbra")
        view = image_queries.add_image(
            s, new=new_image(2, dataset="busbra", split=Split.TEST, patient="patient-1")
        )
        (alone,) = add_images(s, 1, first=3, dataset="other", split=Split.TEST)
    with sessions() as s:
        assert image_queries.dataset_names(s) == ["busbra", "other"]
        assert view.patient_id == train.patient_id
        assert image_queries.in_other_splits(s, patient_id=view.patient_id, split=Split.TEST)
        assert not image_queries.in_other_splits(s, patient_id=alone.patient_id, split=Split.TEST)


def test_birads_histogram_in_category_order() -> None:
    histogram = image_queries.birads_histogram([Birads.B5, Birads.B2, Birads.B5])
    assert list(histogram.items()) == [("2", 1), ("5", 2)]
