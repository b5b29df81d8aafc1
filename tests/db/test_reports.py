"""db.reports: read-only engine, database states, statuses, agreement inputs, tables, ROC inputs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core.birads import Birads
from core.results import DetectorVersionMetrics
from core.settings import Settings
from db import migrate
from db.engine import make_engine
from db.models import Evaluation, Label, ModelVersion, Prediction, ReferenceLabel
from db.reports import agreement as agreement_reports
from db.reports import database as database_reports
from db.reports import evaluation as evaluation_reports
from db.reports import progress as progress_reports
from db.reports import versions as version_reports
from db.reports.database import DatabaseState
from db.reports.progress import ImageStatus
from db.schemas import BoxRecord
from tests.dashboards.seed import PLAN, Plan, day, seed
from tests.db.rows import add_version


@pytest.fixture
def seeded(settings: Settings, sessions: sessionmaker[Session]) -> Plan:
    with sessions.begin() as session:
        seed(session, settings.home)
    return PLAN


def test_readonly_engine_reads_but_refuses_writes(seeded: Plan, settings: Settings) -> None:
    engine = database_reports.readonly_engine(settings.db_url)
    with Session(engine) as session:
        assert set(progress_reports.image_statuses(session)) == {p.image_id for p in seeded.images}
        with pytest.raises(DBAPIError, match=r"readonly|read-only"):
            session.execute(text("DELETE FROM events"))
    engine.dispose()


def test_readonly_engine_never_creates_a_missing_database(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'absent' / 'labeler.db'}"
    engine = database_reports.readonly_engine(url)
    status = database_reports.database_status(url=url, engine=engine)
    assert status.state is DatabaseState.MISSING
    with pytest.raises(OperationalError):
        engine.connect()
    assert not (tmp_path / "absent").exists()
    engine.dispose()


def test_database_states_follow_the_schema_and_the_images(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    engine = database_reports.readonly_engine(settings.db_url)
    assert (
        database_reports.database_status(url=settings.db_url, engine=engine).state
        is DatabaseState.EMPTY
    )
    with sessions.begin() as session:
        seed(session, settings.home)
    ready = database_reports.database_status(url=settings.db_url, engine=engine)
    assert (ready.state, ready.images) == (DatabaseState.READY, len(PLAN.images))
    engine.dispose()
    other = make_engine(f"sqlite:///{settings.home / 'old.db'}")
    migrate.upgrade(other, "0001")
    old_url = str(other.url)
    old = database_reports.database_status(
        url=old_url, engine=database_reports.readonly_engine(old_url)
    )
    assert (old.state, old.revision, old.head) == (
        DatabaseState.OUTDATED,
        "0001",
        migrate.head_revision(),
    )
    other.dispose()


def test_statuses_and_timeline_follow_the_plan(
    seeded: Plan, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session:
        statuses = progress_reports.image_statuses(session)
        timeline = progress_reports.status_timeline(session)
    assert {i: s.value for i, s in statuses.items()} == {
        p.image_id: p.status for p in seeded.images
    }
    for status in ImageStatus:
        expected = len(seeded.with_status(status.value))
        assert timeline.current[status] == timeline.counts[status][-1] == expected
    assert timeline.counts[ImageStatus.UNLABELED][0] == len(seeded.images)  # all imported day 0


def test_consensus_time_counts_from_the_labels_model_version(
    seeded: Plan, sessions: sessionmaker[Session]
) -> None:
    accepted = seeded.with_status("accepted")[0]
    with sessions.begin() as session:
        add_version(session, "v9", at=day(2), label_space=["1", "2", "3", "4", "5"])
        session.add(
            Prediction(
                image_id=accepted.image_id,
                model_version_id="v9",
                boxes=[],
                image_birads=Birads.B2,
                uncertainty=0.5,
                created_at=day(2, hours=accepted.image_id),
            )
        )
        session.execute(
            update(Label).where(Label.image_id == accepted.image_id).values(model_version_id="v9")
        )
    with sessions() as session:
        found = progress_reports.consensus_times(session)
    times = dict(
        zip(zip(found.image_id, found.review_round, strict=True), found.hours, strict=True)
    )
    (rnd,) = [r for r in accepted.rounds if r.decided_day is not None]
    assert rnd.decided_day is not None
    assert times[(accepted.image_id, 1)] == pytest.approx(24.0 * (rnd.decided_day - 2))
    others = [(i, r) for (i, r) in times if i != accepted.image_id]
    assert others and all(times[k] % 24 == 0 for k in others)


def test_disputed_images_by_round_and_limit(seeded: Plan, sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        second = agreement_reports.disputed_images(session, review_round=2)
        top = agreement_reports.disputed_images(session, limit=2)
        ratings = agreement_reports.review_ratings(session, review_round=2)
    in_round_2 = {p.image_id for p in seeded.images if len(p.rounds) > 1}
    assert {d.image_id for d in second} <= in_round_2 and second
    assert all(d.review_round == 2 for d in second)
    assert len(top) == 2 and top[0].score >= top[1].score >= max(d.score for d in second)
    assert set(ratings.image_id) == in_round_2 and set(ratings.review_round) == {2}
    assert len(ratings) == 3 * len(in_round_2)


def test_learning_curve_takes_training_size_from_runs_then_metrics(
    seeded: Plan, sessions: sessionmaker[Session]
) -> None:
    with sessions.begin() as session:
        session.execute(
            update(ModelVersion)
            .where(ModelVersion.id == "v3")
            .values(metrics=DetectorVersionMetrics(n_train_images=7))
        )
    with sessions() as session:
        points = version_reports.learning_curve(session)
        lineage = version_reports.model_lineage(session)
    assert [p.version_id for p in points] == ["v1", "v2", "v3"]  # version order
    assert [p.n_train_images for p in points] == [*seeded.train_sizes.values(), 7]
    assert [v.n_train_images for v in lineage] == [p.n_train_images for p in points]
    assert [v.active for v in lineage] == [False, True, True]


def test_evaluation_report_rows_follow_the_matrix(
    seeded: Plan, sessions: sessionmaker[Session]
) -> None:
    with sessions() as session:
        evaluation_id = session.scalars(
            select(Evaluation.id).where(Evaluation.model_version_id == "v3")
        ).one()
        report = evaluation_reports.evaluation_report(session, evaluation_id=evaluation_id)
        gone = evaluation_reports.evaluation_report(session, evaluation_id=evaluation_id + 100)
    assert gone is None and report is not None
    assert [r.label for r in report.per_category] == list(report.metrics.birads.matrix.labels)
    assert report.screening_rates.label == "malignant"
    assert report.birads4_rates is not None and report.birads4_rates.label == "4B"
    assert report.key.model_version_id == "v3" and report.key.active


def test_screening_scores_read_categories_in_the_version_label_space(
    seeded: Plan, sessions: sessionmaker[Session]
) -> None:
    test_images = [p for p in seeded.images if p.split.value == "test" and p.predicted]
    fours = {p.image_id for p in test_images if p.reference == "4"}
    assert fours
    with sessions.begin() as session:
        for p in test_images:  # the no-4 version pre-labels the same images
            box = BoxRecord(xyxy=(0, 0, 1, 1), score=0.9, probs={Birads.B5: p.p_malignant})
            session.add(
                Prediction(
                    image_id=p.image_id,
                    model_version_id="v3",
                    boxes=[box],
                    image_birads=Birads.B5,
                    uncertainty=0.1,
                )
            )
        no_probs = test_images[0].image_id
        session.execute(
            update(Prediction)
            .where(Prediction.image_id == no_probs, Prediction.model_version_id == "v2")
            .values(boxes=[{"xyxy": [0, 0, 1, 1], "score": 0.9}])
        )
        session.execute(
            update(ReferenceLabel).where(ReferenceLabel.image_id.in_(fours)).values(birads="4A")
        )
    with sessions() as session:
        five_way = evaluation_reports.screening_scores(session, model_version_id="v2", split="test")
        no_4 = evaluation_reports.screening_scores(session, model_version_id="v3", split="test")
    by_image = dict(zip(five_way.image_id, five_way.malignant, strict=True))
    assert no_probs not in by_image  # a box without probabilities has no score
    assert all(by_image[i] for i in fours)  # 4A read as plain 4 in a five-way space: malignant
    assert set(no_4.image_id) == {p.image_id for p in test_images} - fours
