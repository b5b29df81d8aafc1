"""Issue 16: sync, predict and the dashboard on one database at once (SQLite and PostgreSQL).

Each sync writer has its own LABELER_HOME, as syncs on different hosts sharing one PostgreSQL
database would: no file lock keeps them apart, only the database's upserts. Meanwhile a predict
writer stores a new version's pre-labels and dashboard readers read through the read-only engine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import partial

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core.birads import Birads
from core.settings import Settings
from db.engine import make_engine, make_session_factory
from db.models import LabelStatus, Prediction, Review
from db.queries import labels as label_queries
from db.queries import predictions as prediction_queries
from db.reports import agreement as agreement_reports
from db.reports import progress as progress_reports
from db.reports.database import readonly_engine
from labeler.context import AppContext
from labeler.studio.client import Studio
from labeler.studio.sync import sync
from tests.db.rows import add_version
from tests.labeler.studio.fake import PRELABEL, PROJECT, FakeStudio, annotation, seed, task

N_IMAGES, SYNCS, READERS = 12, 3, 2
NEXT = "det-next"


def _studio(tasks: dict[int, int]) -> FakeStudio:
    """Every task read by all three readers, who accept the pre-label."""
    return FakeStudio(
        tasks=[task(t, *(annotation(t * 10 + r, t, reader=r) for r in (1, 2, 3))) for t in tasks]
    )


def _sync(settings: Settings, studio: Studio) -> None:
    """One host's `labeler sync`: its own home (and sync.lock), the shared database."""
    sync(AppContext(settings), studio, PROJECT, wait_s=0)


def _predict(settings: Settings, image_ids: list[int]) -> None:
    """What `labeler predict` writes: one new version's pre-labels, a transaction per image."""
    sessions = make_session_factory(make_engine(settings.db_url))
    with sessions.begin() as session:
        add_version(session, NEXT, at=datetime.now(UTC), label_space=["4A"])
    for image_id in image_ids:
        p = prediction_queries.NewPrediction(image_id, (PRELABEL,), Birads.B4A, 0.2)
        with sessions.begin() as session:
            prediction_queries.add_predictions(session, model_version_id=NEXT, predictions=[p])
    sessions.kw["bind"].dispose()


def _read(url: str, stop: threading.Event, reads: list[int]) -> None:
    """A dashboard session: the Progress and Agreement pages' reads, again and again."""
    engine = readonly_engine(url)
    while not stop.is_set():
        with Session(engine) as session:
            progress_reports.image_statuses(session)
            progress_reports.status_timeline(session)
            agreement_reports.review_ratings(session)
        reads.append(1)
    engine.dispose()


def _run_all(jobs: Sequence[Callable[[], None]], errors: list[BaseException]) -> None:
    """Start the jobs together; each one's exception lands in `errors`."""
    barrier = threading.Barrier(len(jobs))

    def guarded(job: Callable[[], None]) -> None:
        try:
            barrier.wait(30)
            job()
        except BaseException as exc:  # every failure is the test's result
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert not any(t.is_alive() for t in threads), "a job hung"


def test_syncs_predict_and_dashboard_readers_at_once_lose_nothing(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    tasks = seed(sessions, n_images=N_IMAGES)
    studio = _studio(tasks).as_studio()
    homes = [settings.model_copy(update={"home": settings.home / f"host{i}"}) for i in range(SYNCS)]
    stop, reads, errors = threading.Event(), list[int](), list[BaseException]()

    def syncs_then_stop() -> None:
        try:
            _run_all([partial(_sync, home, studio) for home in homes], errors)
        finally:
            stop.set()

    predict = partial(_predict, settings, sorted(tasks.values()))
    readers = [partial(_read, settings.db_url, stop, reads) for _ in range(READERS)]
    _run_all([syncs_then_stop, predict, *readers], errors)

    assert errors == []
    assert len(reads) >= READERS  # the readers read while the writers wrote
    with sessions() as session:
        stored = set(session.scalars(select(Review.ls_annotation_id)))
        predicted = session.scalar(
            select(func.count()).select_from(Prediction).where(Prediction.model_version_id == NEXT)
        )
        labels = label_queries.label_counts(session)
    assert stored == {t * 10 + r for t in tasks for r in (1, 2, 3)}  # 0 lost reviews
    assert predicted == N_IMAGES
    assert labels == {LabelStatus.ACCEPTED.value: N_IMAGES}
