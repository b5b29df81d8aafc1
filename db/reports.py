"""Read-only reports for the dashboard: progress, reader agreement, model versions, evaluations.

Apart from `db.queries` because the dashboard opens the database read-only and only aggregates:
nothing here adds, flushes or commits. Results are frozen dataclasses, so Streamlit can pickle
them into its cache. Large results (every review) are columnar, so 100k rows stay cheap.
Image ids are the only image identifiers returned: never patient keys.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import (
    Engine,
    String,
    Subquery,
    case,
    create_engine,
    event,
    func,
    literal,
    select,
    tuple_,
    type_coerce,
    union_all,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from db import migrate, queries
from core.birads import Birads, Reading, reading
from db.models import (
    Evaluation,
    Image,
    Label,
    LabelStatus,
    ModelPromotion,
    ModelVersion,
    Prediction,
    ReferenceLabel,
    Review,
    TrainingRun,
)
from db.schemas import BoxRecord

C = TypeVar("C")


def _columns(cls: type[C], rows: Sequence[Sequence[Any]]) -> C:
    """Rows -> a columnar result (one tuple per field, in field order); no rows: its empty default.

    Columns because results are cached by pickling, and 100k small objects pickle slowly.
    """
    return cls(*zip(*rows, strict=True)) if rows else cls()


# --- connection and database state -----------------------------------------------------------


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL; None for other backends and in-memory databases."""
    parsed = make_url(url)
    database = parsed.database or ""
    if parsed.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    if database.startswith("file:"):
        database = database.removeprefix("file:")
        if database.startswith(":memory:") or parsed.query.get("mode") == "memory":
            return None
    return Path(database).expanduser()


def readonly_engine(url: str, *, busy_timeout_ms: int = 30_000) -> Engine:
    """An engine that cannot write: the dashboard must never change the loop's database.

    SQLite opens with `mode=ro` (and `query_only` on top); a missing file is not created.
    PostgreSQL runs every transaction read-only; other backends are only never written to.
    """
    parsed = make_url(url)
    path = sqlite_file(url)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(
            url, pool_pre_ping=True, execution_options={"postgresql_readonly": True}
        )
    if path is None:
        return create_engine(url)
    query = {k: v for k, v in parsed.query.items() if k not in ("mode", "uri")}
    readonly = parsed.set(
        database=f"file:{quote(str(path.resolve()))}", query={**query, "mode": "ro", "uri": "true"}
    )
    engine = create_engine(readonly, connect_args={"timeout": busy_timeout_ms / 1000})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA query_only=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    return engine


class DatabaseState(StrEnum):
    MISSING = "missing"
    UNINITIALISED = "uninitialised"
    OUTDATED = "outdated"
    EMPTY = "empty"
    READY = "ready"


@dataclass(frozen=True)
class DatabaseStatus:
    state: DatabaseState
    revision: str | None
    head: str
    images: int = 0


def database_status(*, url: str, engine: Engine) -> DatabaseStatus:
    """Whether there is anything to show, so the dashboard can say what to run instead of failing.

    Reads only: a missing SQLite file is reported, not created, and the schema is never migrated.
    """
    head = migrate.head_revision()
    path = sqlite_file(url)
    if path is not None and not path.is_file():
        return DatabaseStatus(DatabaseState.MISSING, None, head)
    revision = migrate.current_revision(engine)
    if revision is None:
        return DatabaseStatus(DatabaseState.UNINITIALISED, None, head)
    if revision != head:
        return DatabaseStatus(DatabaseState.OUTDATED, revision, head)
    with Session(engine) as session:
        images = int(session.scalar(select(func.count(Image.id))) or 0)
    state = DatabaseState.READY if images else DatabaseState.EMPTY
    return DatabaseStatus(state, revision, head, images)


# --- progress ------------------------------------------------------------------------------


class ImageStatus(StrEnum):
    """Where an image stands in the loop (the latest round decides)."""

    UNLABELED = "unlabeled"
    PRE_LABELED = "pre-labeled"
    IN_REVIEW = "in review"
    ACCEPTED = "accepted"
    REJECTED = "rejected"


@dataclass(frozen=True)
class StatusTimeline:
    """Images in each status at the end of each day (UTC), and right now."""

    days: tuple[date, ...]
    counts: dict[ImageStatus, tuple[int, ...]]
    current: dict[ImageStatus, int]


def _utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every stored time is UTC."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _raw(column: Any) -> Any:
    """A column as the driver returns it: on 100k rows SQLAlchemy's per-value conversion of
    datetimes and enums costs more than the query (SQLite keeps both as text)."""
    return type_coerce(column, String)


def _day(value: object) -> str:
    """'YYYY-MM-DD' of a stored time: ISO text on SQLite, a datetime from other drivers."""
    return str(value)[:10]


def _instant(value: object) -> datetime:
    return _utc(value if isinstance(value, datetime) else datetime.fromisoformat(str(value)))


def _status_changes() -> Subquery:
    """Every status change of every image as rows (image_id, step, at, status), in SQL.

    Steps follow the loop: import (0), first pre-label (1), then per round r its first review
    (2r) and its decision (2r + 1). Images are ordered by step, not clock, so equal times are
    safe. Decisions of "pending" (or without a time) are no change.
    """
    imported = select(
        Image.id.label("image_id"),
        literal(0).label("step"),
        Image.imported_at.label("at"),
        literal(ImageStatus.UNLABELED.value, String).label("status"),
    )
    prelabeled = select(
        Prediction.image_id,
        literal(1),
        func.min(Prediction.created_at),
        literal(ImageStatus.PRE_LABELED.value, String),
    ).group_by(Prediction.image_id)
    reviewed = select(
        Review.image_id,
        2 * Review.round,
        func.min(Review.created_at),
        literal(ImageStatus.IN_REVIEW.value, String),
    ).group_by(Review.image_id, Review.round)
    decided = select(
        Label.image_id, 2 * Label.round + 1, Label.decided_at, _raw(Label.status)
    ).where(Label.status != LabelStatus.PENDING, Label.decided_at.is_not(None))
    return union_all(imported, prelabeled, reviewed, decided).subquery("changes")


def image_statuses(session: Session) -> dict[int, ImageStatus]:
    """The current status of every image (its last change), by image id."""
    changes = _status_changes()
    newest = func.row_number().over(partition_by=changes.c.image_id, order_by=changes.c.step.desc())
    ranked = select(changes.c.image_id, changes.c.status, newest.label("n")).subquery()
    stmt = select(ranked.c.image_id, ranked.c.status).where(ranked.c.n == 1)
    return {image_id: ImageStatus(status) for image_id, status in session.execute(stmt)}


def status_timeline(session: Session) -> StatusTimeline:
    """Images per status at the end of each day: each change adds one image to its status and
    takes it from the previous one. Aggregated in SQL, so only days x changes come back."""
    changes = _status_changes()
    previous = func.lag(changes.c.status).over(
        partition_by=changes.c.image_id, order_by=changes.c.step
    )
    moves = select(
        func.date(changes.c.at).label("day"), changes.c.status, previous.label("previous")
    ).subquery()
    stmt = select(moves.c.day, moves.c.status, moves.c.previous, func.count()).group_by(
        moves.c.day, moves.c.status, moves.c.previous
    )
    deltas: dict[date, Counter[str]] = defaultdict(Counter)
    for day, status, before, n in session.execute(stmt):
        change = deltas[date.fromisoformat(_day(day))]
        change[status] += n
        if before is not None:
            change[before] -= n
    if not deltas:
        return StatusTimeline((), {s: () for s in ImageStatus}, {s: 0 for s in ImageStatus})
    first, last = min(deltas), max(deltas)
    days = tuple(first + timedelta(days=i) for i in range((last - first).days + 1))
    running: Counter[str] = Counter()
    series: dict[ImageStatus, list[int]] = {s: [] for s in ImageStatus}
    for day in days:
        running.update(deltas.get(day, Counter()))
        for status in ImageStatus:
            series[status].append(running[status.value])
    return StatusTimeline(
        days,
        {s: tuple(v) for s, v in series.items()},
        {s: running[s.value] for s in ImageStatus},
    )


@dataclass(frozen=True)
class ReaderDay:
    reader: str
    day: date
    reviews: int


def reviews_per_reader_day(session: Session) -> list[ReaderDay]:
    """Reviews each reader submitted per UTC day, grouped in SQL (cheap on large tables)."""
    day = func.date(Review.created_at)
    stmt = (
        select(Review.reader, day, func.count(Review.id))
        .group_by(Review.reader, day)
        .order_by(day, Review.reader)
    )
    return [
        ReaderDay(reader, date.fromisoformat(_day(d)), int(n))
        for reader, d, n in session.execute(stmt)
    ]


@dataclass(frozen=True)
class ConsensusTimes:
    """Hours from pre-label to decision, one position per decided label (columns: cheap)."""

    image_id: tuple[int, ...] = ()
    review_round: tuple[int, ...] = ()
    hours: tuple[float, ...] = ()

    def __len__(self) -> int:
        return len(self.image_id)


def consensus_times(session: Session) -> ConsensusTimes:
    """Pre-label to decision per decided label: the pre-label of the label's model version, or
    the image's first pre-label when the label names none. Labels with no pre-label are left out.
    """
    of_version = (
        select(Prediction.created_at)
        .where(
            Prediction.image_id == Label.image_id,
            Prediction.model_version_id == Label.model_version_id,
        )
        .scalar_subquery()
    )
    first = (
        select(func.min(Prediction.created_at))
        .where(Prediction.image_id == Label.image_id)
        .scalar_subquery()
    )
    stmt = select(
        Label.image_id, Label.round, _raw(func.coalesce(of_version, first)), _raw(Label.decided_at)
    ).where(Label.status != LabelStatus.PENDING, Label.decided_at.is_not(None))
    rows = [
        (image_id, rnd, (_instant(decided) - _instant(pre)).total_seconds() / 3600)
        for image_id, rnd, pre, decided in session.execute(stmt)
        if pre is not None and decided is not None
    ]
    return _columns(ConsensusTimes, rows)


# --- reader agreement ----------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewRatings:
    """Every review as columns (one position per review); `birads` is None where a reader gave
    no category (a reject without a correction)."""

    image_id: tuple[int, ...] = ()
    review_round: tuple[int, ...] = ()
    reader: tuple[str, ...] = ()
    verdict: tuple[str, ...] = ()
    birads: tuple[str | None, ...] = ()

    def __len__(self) -> int:
        return len(self.image_id)


def review_ratings(session: Session, *, review_round: int | None = None) -> ReviewRatings:
    """Reviews for agreement statistics; enums come back as plain strings (cheaper, picklable)."""
    stmt = select(
        Review.image_id,
        Review.round,
        Review.reader,
        _raw(Review.verdict),
        _raw(Review.image_birads),
    )
    if review_round is not None:
        stmt = stmt.where(Review.round == review_round)
    return _columns(ReviewRatings, session.execute(stmt).all())


@dataclass(frozen=True)
class ReaderReading:
    reader: str
    verdict: str
    birads: str | None


@dataclass(frozen=True)
class DisputedImage:
    image_id: int
    review_round: int
    png_path: str
    score: int  # extra BI-RADS categories + extra verdicts beyond the first: 0 is agreement
    readings: tuple[ReaderReading, ...]

    @property
    def categories(self) -> tuple[str, ...]:
        given = {r.birads for r in self.readings if r.birads is not None}
        return tuple(c.value for c in Birads if c.value in given)


def disputed_images(
    session: Session, *, review_round: int | None = None, limit: int = 12
) -> list[DisputedImage]:
    """The images readers disagreed on most, scored in SQL so only `limit` rows come back."""
    n_birads = func.count(func.distinct(Review.image_birads))
    n_verdicts = func.count(func.distinct(Review.verdict))
    score = case((n_birads > 1, n_birads - 1), else_=0) + n_verdicts - 1
    stmt = select(Review.image_id, Review.round, score).group_by(Review.image_id, Review.round)
    if review_round is not None:
        stmt = stmt.where(Review.round == review_round)
    top = session.execute(
        stmt.having(score > 0).order_by(score.desc(), Review.image_id, Review.round).limit(limit)
    ).all()
    if not top:
        return []
    keys = [(int(i), int(r)) for i, r, _ in top]
    reviews = session.execute(
        select(
            Review.image_id, Review.round, Review.reader, Review.verdict, Review.image_birads
        ).where(tuple_(Review.image_id, Review.round).in_(keys))
    ).all()
    readings: dict[tuple[int, int], list[ReaderReading]] = defaultdict(list)
    for image_id, rnd, reader, verdict, birads in reviews:
        value = birads.value if birads is not None else None
        readings[(image_id, rnd)].append(ReaderReading(reader, verdict.value, value))
    paths = {
        image_id: png_path
        for image_id, png_path in session.execute(
            select(Image.id, Image.png_path).where(Image.id.in_([k[0] for k in keys]))
        )
    }
    return [
        DisputedImage(
            image_id,
            rnd,
            paths[image_id],
            int(s),
            tuple(sorted(readings[(image_id, rnd)], key=lambda r: r.reader)),
        )
        for (image_id, rnd), (_, _, s) in zip(keys, top, strict=True)
    ]


# --- model versions and the learning curve -------------------------------------------------


@dataclass(frozen=True)
class VersionRow:
    id: str
    kind: str
    parent_id: str | None
    created_at: datetime
    status: str
    active: bool
    n_train_images: int | None
    label_space: tuple[str, ...]
    metrics: dict[str, Any] = field(default_factory=dict)


def _train_sizes(session: Session) -> dict[str, int]:
    """Training-set size per version from its succeeded training run."""
    stmt = select(TrainingRun.model_version_id, TrainingRun.n_train_images).where(
        TrainingRun.model_version_id.is_not(None), TrainingRun.n_train_images.is_not(None)
    )
    return {str(v): int(n) for v, n in session.execute(stmt) if n is not None}


def _train_size(version: ModelVersion, sizes: dict[str, int]) -> int | None:
    if version.id in sizes:
        return sizes[version.id]
    value = version.metrics.get("n_train_images")
    return int(value) if isinstance(value, int | float) else None


def model_lineage(session: Session) -> list[VersionRow]:
    """Every version oldest first, with its parent, training-set size and active marker."""
    active = set(queries.active_model_ids(session).values())
    sizes = _train_sizes(session)
    versions = session.scalars(select(ModelVersion).order_by(ModelVersion.created_at))
    return [
        VersionRow(
            id=v.id,
            kind=v.kind,
            parent_id=v.parent_id,
            created_at=_utc(v.created_at),
            status=v.status,
            active=v.id in active,
            n_train_images=_train_size(v, sizes),
            label_space=tuple(str(c) for c in v.label_space),
            metrics=dict(v.metrics),
        )
        for v in versions
    ]


@dataclass(frozen=True)
class PromotionRow:
    at: datetime
    kind: str
    action: str
    model_version_id: str
    previous_version_id: str | None
    actor: str
    reason: str


def promotion_log(session: Session, *, limit: int = 50) -> list[PromotionRow]:
    """Moves of every kind's active pointer, newest first."""
    stmt = select(ModelPromotion).order_by(ModelPromotion.id.desc()).limit(limit)
    return [
        PromotionRow(
            _utc(p.at),
            p.kind,
            p.action,
            p.model_version_id,
            p.previous_version_id,
            p.actor,
            p.reason,
        )
        for p in session.scalars(stmt)
    ]


LEARNING_METRICS = ("map50", "lesion_map50", "ACC", "SEN", "SPE", "AUC")


@dataclass(frozen=True)
class LearningPoint:
    version_id: str
    kind: str
    series: str  # the curve it belongs to: the model kind until the simulation stores strategies
    created_at: datetime
    n_train_images: int | None
    metrics: dict[str, float | None]


def _headline(metrics: dict[str, Any]) -> dict[str, float | None]:
    screening = metrics.get("screening") or {}
    out: dict[str, float | None] = {
        "map50": _number(metrics.get("map50")),
        "lesion_map50": _number(metrics.get("lesion_map50")),
        "AUC": _number(screening.get("auc")),
    }
    for name in ("ACC", "SEN", "SPE"):
        out[name] = _number((screening.get(name) or {}).get("value"))
    return out


def learning_curve(
    session: Session, *, dataset: str = "all", split: str = "test"
) -> list[LearningPoint]:
    """Learning curve: each version's stored evaluation in version order (oldest first), with
    the training-set size from its training run (or `n_train_images` in its metrics).

    `series` is the version's kind; the simulation's AL-vs-random runs (issue 5) become more
    series here once they are stored.
    """
    sizes = _train_sizes(session)
    stmt = (
        select(ModelVersion, Evaluation.metrics)
        .join(Evaluation, Evaluation.model_version_id == ModelVersion.id)
        .where(Evaluation.dataset == dataset, Evaluation.split == split)
        .order_by(ModelVersion.created_at, ModelVersion.id)
    )
    return [
        LearningPoint(
            version_id=v.id,
            kind=v.kind,
            series=v.kind,
            created_at=_utc(v.created_at),
            n_train_images=_train_size(v, sizes),
            metrics=_headline(metrics),
        )
        for v, metrics in session.execute(stmt)
    ]


# --- evaluations: the paper's Tables I-III --------------------------------------------------


@dataclass(frozen=True)
class EvaluationKey:
    id: int
    model_version_id: str
    kind: str
    dataset: str
    split: str
    created_at: datetime
    active: bool

    @property
    def title(self) -> str:
        marker = " (active)" if self.active else ""
        return f"{self.model_version_id}{marker} · {self.kind} · {self.dataset}/{self.split}"


def evaluation_keys(session: Session, *, evaluation_id: int | None = None) -> list[EvaluationKey]:
    """Every stored evaluation (or the one asked for), newest first, with the active marker."""
    active = set(queries.active_model_ids(session).values())
    stmt = (
        select(
            Evaluation.id,
            Evaluation.model_version_id,
            ModelVersion.kind,
            Evaluation.dataset,
            Evaluation.split,
            Evaluation.created_at,
        )
        .join(ModelVersion, ModelVersion.id == Evaluation.model_version_id)
        .order_by(Evaluation.created_at.desc(), Evaluation.id.desc())
    )
    if evaluation_id is not None:
        stmt = stmt.where(Evaluation.id == evaluation_id)
    return [
        EvaluationKey(int(i), v, kind, d, s, _utc(at), v in active)
        for i, v, kind, d, s, at in session.execute(stmt)
    ]


@dataclass(frozen=True)
class Rate:
    """A proportion with its stored 95% Wilson interval."""

    value: float
    ci_low: float
    ci_high: float
    successes: int
    total: int


@dataclass(frozen=True)
class BinaryRates:
    label: str
    acc: Rate | None
    sen: Rate | None
    spe: Rate | None


@dataclass(frozen=True)
class Matrix:
    """Rows are the truth, columns the prediction, in `labels` order."""

    labels: tuple[str, ...]
    counts: tuple[tuple[int, ...], ...]

    @property
    def row_normalised(self) -> tuple[tuple[float, ...], ...]:
        return tuple(tuple(c / sum(row) if sum(row) else 0.0 for c in row) for row in self.counts)


@dataclass(frozen=True)
class RocPoints:
    fpr: tuple[float, ...]
    tpr: tuple[float, ...]


@dataclass(frozen=True)
class EvaluationReport:
    key: EvaluationKey
    n_images: int | None
    detection: dict[str, float | None]
    birads: Matrix | None  # Table I
    per_category: tuple[BinaryRates, ...]
    screening: Matrix | None  # Table II
    screening_rates: BinaryRates | None
    auc: float | None
    pathology_auc: float | None
    plain_4_counted_as: str | None
    roc: RocPoints | None  # only when the evaluation stored its curve
    birads4: Matrix | None  # Table III
    birads4_rates: BinaryRates | None
    birads4_threshold: float | None
    birads4_n_images: int | None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _rate(value: Any) -> Rate | None:
    if not isinstance(value, dict):
        return None
    return Rate(
        float(value["value"]),
        float(value["ci_low"]),
        float(value["ci_high"]),
        int(value["successes"]),
        int(value["total"]),
    )


def _rates(label: str, payload: Any) -> BinaryRates | None:
    if not isinstance(payload, dict):
        return None
    return BinaryRates(
        label, _rate(payload.get("ACC")), _rate(payload.get("SEN")), _rate(payload.get("SPE"))
    )


def _matrix(payload: Any, counts_key: str = "counts") -> Matrix | None:
    if not isinstance(payload, dict) or counts_key not in payload:
        return None
    counts = tuple(tuple(int(c) for c in row) for row in payload[counts_key])
    return Matrix(tuple(str(label) for label in payload["labels"]), counts)


def _roc(payload: Any) -> RocPoints | None:
    if not isinstance(payload, dict) or "fpr" not in payload or "tpr" not in payload:
        return None
    return RocPoints(tuple(map(float, payload["fpr"])), tuple(map(float, payload["tpr"])))


def evaluation_report(session: Session, *, evaluation_id: int) -> EvaluationReport | None:
    """One stored evaluation as typed tables; keys an older payload lacks come back as None."""
    keys = evaluation_keys(session, evaluation_id=evaluation_id)
    row = session.get(Evaluation, evaluation_id)
    if not keys or row is None:
        return None
    key = keys[0]
    metrics, matrices = row.metrics, row.confusion_matrices
    screening = metrics.get("screening") or {}
    split4 = metrics.get("birads4_split") or {}
    birads = _matrix(matrices.get("birads"))
    per_category = metrics.get("birads") or {}
    labels = birads.labels if birads is not None else tuple(per_category)
    return EvaluationReport(
        key=key,
        n_images=int(metrics["n_images"]) if "n_images" in metrics else None,
        detection={
            k: _number(metrics.get(k))
            for k in ("map50", "map50_95", "lesion_map50", "lesion_recall50", "fp_per_image")
        },
        birads=birads,
        per_category=tuple(
            r for label in labels if (r := _rates(label, per_category.get(label))) is not None
        ),
        screening=_matrix(matrices.get("screening")),
        screening_rates=_rates(Reading.MALIGNANT.value, screening or None),
        auc=_number(screening.get("auc")),
        pathology_auc=_number(screening.get("pathology_auc")),
        plain_4_counted_as=screening.get("plain_4_counted_as"),
        roc=_roc(screening.get("roc")),
        birads4=_matrix(split4, "confusion_matrix"),
        birads4_rates=_rates(str(split4.get("positive", Birads.B4B.value)), split4 or None),
        birads4_threshold=_number(split4.get("threshold")),
        birads4_n_images=int(split4["n_images"]) if "n_images" in split4 else None,
    )


@dataclass(frozen=True)
class ScreeningScores:
    """Per image: malignant by the reference label, and the model's malignancy score."""

    image_id: tuple[int, ...] = ()
    malignant: tuple[bool, ...] = ()
    score: tuple[float, ...] = ()


def _malignancy(boxes: Sequence[BoxRecord]) -> float | None:
    """Probability mass of the top box on malignant-reading categories (plain 4 malignant)."""
    if not boxes:
        return 0.0
    top = max(boxes, key=lambda b: b.score or 0.0)
    if top.probs is None:
        return None
    return float(sum(p for c, p in top.probs.items() if reading(c) is Reading.MALIGNANT))


def screening_scores(session: Session, *, model_version_id: str, split: str) -> ScreeningScores:
    """Inputs of a ROC curve from a version's stored pre-labels on one split's reference-labeled
    images. Evaluations store the AUC but not the curve, so the dashboard draws it from these.

    Reference categories are read in the version's label space: with plain 4 in it, 4A/4B/4C
    count as 4 (malignant); without 4, BI-RADS 4 images are left out, as the evaluator does.
    """
    version = session.get(ModelVersion, model_version_id)
    if version is None:
        return ScreeningScores()
    has_4 = Birads.B4.value in {str(c) for c in version.label_space}
    stmt = (
        select(Prediction.image_id, ReferenceLabel.birads, Prediction.boxes)
        .join(Image, Image.id == Prediction.image_id)
        .join(ReferenceLabel, ReferenceLabel.image_id == Image.id)
        .where(Prediction.model_version_id == model_version_id, Image.split == split)
        .order_by(Prediction.image_id, ReferenceLabel.id)
    )
    seen: set[int] = set()
    out: list[tuple[int, bool, float]] = []
    for image_id, birads, boxes in session.execute(stmt):
        if image_id in seen or (not has_4 and birads.coarse is Birads.B4):
            continue
        seen.add(image_id)
        score = _malignancy(boxes)
        truth = birads.coarse if has_4 else birads
        if score is not None:
            out.append((image_id, reading(truth) is Reading.MALIGNANT, score))
    return _columns(ScreeningScores, out)


# --- image browser -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageListing:
    """Every image for the browser's filters, as columns: ids only, never a patient key or a
    source path. `birads` is the reference category (None: the dataset shipped none)."""

    image_id: tuple[int, ...] = ()
    dataset: tuple[str, ...] = ()
    split: tuple[str, ...] = ()
    birads: tuple[str | None, ...] = ()
    status: tuple[ImageStatus, ...] = ()

    def __len__(self) -> int:
        return len(self.image_id)

    def matching(
        self,
        *,
        birads: Collection[str | None] = (),
        status: Collection[ImageStatus] = (),
        dataset: Collection[str] = (),
    ) -> list[int]:
        """Ids of the images that pass every non-empty filter, in id order."""
        return [
            image_id
            for image_id, d, b, st in zip(
                self.image_id, self.dataset, self.birads, self.status, strict=True
            )
            if (not birads or b in birads)
            and (not status or st in status)
            and (not dataset or d in dataset)
        ]


def image_listing(session: Session) -> ImageListing:
    """Every image with its reference category and current status, by image id."""
    statuses = image_statuses(session)
    refs: dict[int, str] = {}
    stmt = select(ReferenceLabel.image_id, _raw(ReferenceLabel.birads))
    for image_id, birads in session.execute(stmt.order_by(ReferenceLabel.id.desc())):
        refs[image_id] = birads  # the first reference label wins
    rows = session.execute(select(Image.id, Image.dataset, _raw(Image.split)).order_by(Image.id))
    columns = [(i, d, s, refs.get(i), statuses.get(i, ImageStatus.UNLABELED)) for i, d, s in rows]
    if not columns:
        return ImageListing()
    image_id, dataset, split, birads, status = zip(*columns, strict=True)
    return ImageListing(image_id, dataset, split, birads, status)


@dataclass(frozen=True)
class BoxSet:
    """Boxes one source drew on an image: the dataset, a model version or a reader."""

    source: str  # "reference", "model", "reader"
    name: str  # dataset source, version id or reader
    birads: str | None
    boxes: tuple[BoxRecord, ...]
    detail: str = ""  # verdict and round for readers, uncertainty for models


@dataclass(frozen=True)
class ImageDetail:
    image_id: int
    dataset: str
    split: str
    width: int
    height: int
    png_path: str
    box_sets: tuple[BoxSet, ...]


def _value(category: Birads | None) -> str | None:
    return category.value if category is not None else None


def image_detail(session: Session, *, image_id: int) -> ImageDetail | None:
    """An image with every box drawn on it: reference, each version's pre-label, each review."""
    image = session.get(Image, image_id)
    if image is None:
        return None
    sets: list[BoxSet] = []
    for ref in session.scalars(
        select(ReferenceLabel)
        .where(ReferenceLabel.image_id == image_id)
        .order_by(ReferenceLabel.id)
    ):
        sets.append(BoxSet("reference", ref.source, ref.birads.value, tuple(ref.boxes)))
    for pred in session.scalars(
        select(Prediction)
        .where(Prediction.image_id == image_id)
        .order_by(Prediction.created_at.desc(), Prediction.id.desc())
    ):
        detail = f"uncertainty {pred.uncertainty:.2f}"
        sets.append(
            BoxSet(
                "model", pred.model_version_id, pred.image_birads.value, tuple(pred.boxes), detail
            )
        )
    for review in session.scalars(
        select(Review).where(Review.image_id == image_id).order_by(Review.round, Review.reader)
    ):
        detail = f"round {review.round}, {review.verdict.value}"
        sets.append(
            BoxSet(
                "reader", review.reader, _value(review.image_birads), tuple(review.boxes), detail
            )
        )
    return ImageDetail(
        image.id,
        image.dataset,
        image.split.value,
        image.width,
        image.height,
        image.png_path,
        tuple(sets),
    )


def categories_in_order(values: Iterable[str | None]) -> list[str]:
    """BI-RADS values present in `values`, in BI-RADS order (for filters and chart axes)."""
    present = {v for v in values if v is not None}
    return [c.value for c in Birads if c.value in present]


# --- simulation: active learning vs random ---------------------------------------------------


@dataclass(frozen=True)
class SimulationCurvePoint:
    simulation: str
    strategy: str
    round: int
    reviews: int
    labeled_images: int
    accept_rate: float | None
    map50: float | None
    lesion_map50: float | None
    auc: float | None


def simulation_curves(session: Session) -> list[SimulationCurvePoint]:
    """`labeler simulate`'s learning curves: test-split metrics against expert reviews."""
    return [
        SimulationCurvePoint(
            simulation=p.simulation,
            strategy=p.strategy,
            round=p.round,
            reviews=p.reviews,
            labeled_images=p.labeled_images,
            accept_rate=p.accept_rate,
            map50=p.metrics.get("map50"),
            lesion_map50=p.metrics.get("lesion_map50"),
            auc=p.metrics.get("auc"),
        )
        for p in queries.simulation_points(session)
    ]


# --- webhook events the sync set aside -----------------------------------------------------------


@dataclass(frozen=True)
class SetAsideEvents:
    """Webhook events `labeler sync` could not apply: how many, and the newest with reasons."""

    count: int = 0
    newest: tuple[queries.SetAsideEvent, ...] = ()


def set_aside_events(session: Session, *, limit: int = 20) -> SetAsideEvents:
    return SetAsideEvents(
        queries.count_set_aside_studio_events(session),
        tuple(queries.set_aside_studio_events(session, limit=limit)),
    )
