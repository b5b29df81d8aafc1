"""Similar-lesion search: build the active encoder's index, and find an image's neighbours.

The index (ml_backend/encoder/index.py) holds every confirmed lesion box (reference labels,
accepted reader labels) plus a probe per image the active detector has pre-labeled (its stored
top box, the box readers see first), so the backend and the dashboard rarely need to run the
encoder. Rebuild it after new labels are accepted or a new detector pre-labels the pool:
`labeler encoder index`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from core.errors import BadInputError
from db.lesion_boxes import LesionBox, image_ids_by_reference, query_box
from db.lesion_boxes import confirmed_lesions as confirmed_rows
from db.lesion_boxes import predicted_lesions as predicted_rows
from db.queries import events as event_queries
from db.queries import images as image_queries
from db.queries import predictions as prediction_queries
from db.queries import versions as version_queries
from labeler.context import AppContext
from labeler.jobs.samples import load_rgb
from labeler.jobs.versions import intact_path
from ml_backend.detector.interface import Box, RGBImage
from ml_backend.encoder.index import EmbeddingIndex, IndexRow, Match, index_file
from ml_backend.encoder.similar import SimilarLesions
from ml_backend.registry import ModelRegistry, VersionInfo
from ml_backend.registry.kinds import DETECTOR_KIND, ENCODER_KIND


class SimilarError(BadInputError):
    """The search cannot answer; the message says what to run or fix."""


class NoActiveEncoderError(SimilarError):
    pass


class NoIndexError(SimilarError):
    pass


class UnknownImageError(SimilarError):
    pass


class NoQueryBoxError(SimilarError):
    pass


@dataclass(frozen=True)
class IndexSummary:
    encoder_version: str
    path: str
    confirmed: int  # lesion boxes that can be matches
    probes: int  # pre-labeled images' query boxes (the detector's top box), never matches
    detector_version: str | None


@dataclass(frozen=True)
class SimilarQuery:
    """The box that was searched for; `origin` says whether it is confirmed or predicted."""

    image_id: int
    dataset: str
    source_id: str | None
    box: Box
    origin: str
    birads: str | None


@dataclass(frozen=True)
class SimilarResult:
    encoder_version: str
    query: SimilarQuery
    matches: tuple[Match, ...]


def active_encoder(app: AppContext) -> tuple[ModelRegistry, VersionInfo]:
    registry = ModelRegistry.for_settings(app.settings, app.sessions)
    info = registry.active(ENCODER_KIND)
    if info is None:
        raise NoActiveEncoderError(
            "no active lesion encoder: train one (`labeler encoder train`) and promote it"
        )
    return registry, info


def build_index(
    app: AppContext,
    *,
    batch_size: int = 32,
    start: Callable[[int], None] | None = None,
    advance: Callable[[int], None] | None = None,
) -> IndexSummary:
    """Embed every confirmed lesion box and every pool image's top box; replace the index."""
    from ml_backend.encoder.checkpoint import load_encoder
    from ml_backend.encoder.embed import embed_boxes

    registry, info = active_encoder(app)
    with app.sessions() as session:
        detector = version_queries.active_model_id(session, kind=DETECTOR_KIND)
        confirmed = confirmed_rows(session)
        probes = predicted_rows(session, model_version_id=detector) if detector else []
    if not confirmed:
        raise SimilarError("no confirmed lesions to index: import a labeled dataset first")
    rows = sorted(confirmed + probes, key=lambda r: r.image_id)  # each PNG is read once
    if start is not None:
        start(len(rows))
    model = load_encoder(intact_path(registry, info.id), device=app.settings.device)
    pixels = _pixels(app.settings.home, rows)
    embeddings = embed_boxes(model, pixels, batch_size=batch_size, advance=advance)
    index = EmbeddingIndex(embeddings, [index_row(r) for r in rows], encoder_version=info.id)
    path = index_file(app.settings.home, info.id)
    index.save(path)
    with app.sessions.begin() as session:
        detail = {"encoder": info.id, "confirmed": len(confirmed), "probes": len(probes)}
        event_queries.record_event(
            session, actor="cli", action="index", subject=f"model:{ENCODER_KIND}", detail=detail
        )
    return IndexSummary(info.id, str(path), len(confirmed), len(probes), detector)


def index_row(box: LesionBox) -> IndexRow:
    return IndexRow(
        image_id=box.image_id,
        box=box.box,
        origin=box.origin,
        birads=box.birads,
        pathology=box.pathology,
        lesion_key=box.lesion_key,
        patient_key=box.patient_key,
        view=box.view,
        dataset=box.dataset,
        source_id=box.source_id,
    )


def _pixels(home: Path, rows: Sequence[LesionBox]) -> Iterator[tuple[RGBImage, Box]]:
    """(image, box) per row; an image with several boxes (rows in a run) is read once."""
    last: tuple[str, RGBImage] | None = None
    for row in rows:
        if last is None or last[0] != row.png_path:
            last = (row.png_path, load_rgb(home, row.png_path))
        yield last[1], row.box


def load_index(app: AppContext, encoder_version: str) -> EmbeddingIndex:
    path = index_file(app.settings.home, encoder_version)
    if not path.is_file():
        raise NoIndexError(
            f"encoder {encoder_version} has no similar-lesion index: run `labeler encoder index`"
        )
    return EmbeddingIndex.load(path)


def similar(app: AppContext, image: str, *, k: int = 9) -> SimilarResult:
    """The k confirmed lesions nearest to IMAGE's query box (a db id or a dataset source id)."""
    registry, info = active_encoder(app)
    intact_path(registry, info.id)  # a damaged encoder is refused, index or not
    index = load_index(app, info.id)
    box = _query_box(app, image)
    matches = SimilarLesions(app.settings, app.sessions, k=k).matches(
        info.id,
        index,
        image_id=box.image_id,
        box=box.box,
        pixels=partial(load_rgb, app.settings.home, box.png_path),
        lesion_key=box.lesion_key,
    )
    query = SimilarQuery(
        image_id=box.image_id,
        dataset=box.dataset,
        source_id=box.source_id,
        box=box.box,
        origin=box.origin.value,
        birads=box.birads.value if box.birads is not None else None,
    )
    return SimilarResult(info.id, query, matches)


def _query_box(app: AppContext, image: str) -> LesionBox:
    """The image's confirmed lesion box, else the active detector's top (stored) box."""
    with app.sessions() as session:
        ids = image_ids_by_reference(session, reference=image)
        if not ids:
            raise UnknownImageError(f"no image {image!r}: give a database id or a source id")
        if len(ids) > 1:
            raise UnknownImageError(f"{image!r} names {len(ids)} images: give a database id")
        detector = version_queries.active_model_id(session, kind=DETECTOR_KIND)
        box = query_box(session, image_id=ids[0], model_version_id=detector)
        predicted = detector is not None and (
            prediction_queries.cached_prediction(
                session, image_id=ids[0], model_version_id=detector
            )
            is not None
        )
    if box is None and detector is not None and not predicted:
        box = _detect(app, ids[0], detector)
    if box is None:
        raise NoQueryBoxError(
            f"image {ids[0]} has no confirmed lesion box and "
            + ("the active detector finds no lesion in it" if detector else "no detector is active")
        )
    return box


def _detect(app: AppContext, image_id: int, detector: str) -> LesionBox | None:
    """Pre-label one image with the active detector and store it, like the backend's miss."""
    from ml_backend.detector.prelabel import load_for_prelabel
    from ml_backend.prelabel.pipeline import open_pipeline

    registry = ModelRegistry.for_settings(app.settings, app.sessions)
    with app.sessions() as session:
        image = image_queries.image_by_id(session, image_id=image_id)
        assert image is not None
        png_path = image.png_path
    pipeline = open_pipeline(
        registry, detector, app.settings, lambda f: load_for_prelabel(f, app.settings)
    )
    row = pipeline.predict([load_rgb(app.settings.home, png_path)])[0].row(image_id)
    with app.sessions.begin() as session:  # add_predictions ignores a row stored first
        prediction_queries.add_predictions(session, model_version_id=detector, predictions=[row])
    with app.sessions() as session:
        return query_box(session, image_id=image_id, model_version_id=detector)
