"""Predictions for tasks: from the cache when we have them, from the model (loaded once) if not.

A request is planned first (cheap: resolve each reference, find its image, look up the cache),
then at most `predict_max_misses` of its uncached tasks are computed, by one request at a time
and within `MISS_SECONDS`, so Label Studio's 60-90 s retrieve timeout is never hit; the rest is
a 503 with Retry-After (the batch job pre-labels them). Cache hits never wait for the model and
keep working while the active version's files are damaged; a miss then is a 503 with one line.

With an active lesion encoder and its index, each prediction also carries the confirmed lesions
most similar to its top box (ml_backend/encoder/similar.py); without one it is unchanged.

Label Studio access (address, token) is kept per project (ml_backend/server/access.py), and
the counts in `stats` are shared by the request threads (ml_backend/counters.py); a request's
own hits and misses also go to the `tally` it passes (its access log line).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import ParamSpec, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from core.settings import Settings
from db.lesion_boxes import top_box
from db.queries import predictions as prediction_queries
from db.queries import versions as version_queries
from db.schemas import BoxRecord
from ml_backend.counters import Counters
from ml_backend.detector.interface import Detector, RGBImage
from ml_backend.detector.precision import choice_stamp, derived_folder
from ml_backend.detector.prelabel import load_for_prelabel
from ml_backend.encoder.similar import SimilarLesions
from ml_backend.prelabel.pipeline import PrelabelPipeline, open_pipeline
from ml_backend.registry import DamagedVersionError, ModelRegistry
from ml_backend.registry.kinds import DETECTOR_KIND, ENCODER_KIND, NO4_KIND
from ml_backend.server.access import StudioAccess, project_key
from ml_backend.server.errors import BackendError, Busy, ModelUnavailable
from ml_backend.server.fetch import FetchPolicy, origin_of
from ml_backend.server.identity import Identity, PngDigests, identify
from ml_backend.server.images import ImageRef, decode_rgb, read_bytes, resolve
from ml_backend.server.local_files import LocalFiles
from ml_backend.server.schemas import Task
from ml_backend.studio.format import prediction_payload, prelabel_rule
from ml_backend.studio.schema import Prediction
from ml_backend.studio.similar import declares_similar, similar_payload, similar_region

log = logging.getLogger(__name__)
NO_MODEL = "no-model"
MISS_SECONDS = 30.0  # model work one request may start; Label Studio gives up at 60-90 s
CONCURRENT_WORK = 1  # requests computing misses at once (the model runs one batch at a time)
RETRY_MISSES_S = 60
RETRY_BUSY_S = 5
Cached = tuple[list[BoxRecord], float]
T = TypeVar("T")
P = ParamSpec("P")


@dataclass(frozen=True)
class Plan:
    """One task after the cheap pass: where its pixels are, whose they are, a cache hit or not,
    and the access its project set up (to fetch the pixels with)."""

    task: Task
    ref: ImageRef
    identity: Identity
    hit: Cached | None
    fetching: FetchPolicy


@dataclass(frozen=True)
class Scored:
    """A task's boxes, the size they refer to, and the id they may be cached and matched under."""

    boxes: list[BoxRecord]
    uncertainty: float
    size: tuple[int, int]
    image_id: int | None
    rgb: RGBImage | None = None


@dataclass
class PredictionService:
    settings: Settings
    sessions: sessionmaker[Session]
    loader: Callable[[Path], Detector] | None = None
    stats: Counters = field(default_factory=lambda: Counters("hits", "misses", "loads"))
    _model: tuple[tuple[str, str | None, str | None, int | None], PrelabelPipeline] | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _work: threading.BoundedSemaphore = field(
        default_factory=lambda: threading.BoundedSemaphore(CONCURRENT_WORK)
    )
    files: LocalFiles = field(init=False)
    access: StudioAccess = field(init=False)
    registry: ModelRegistry = field(init=False)
    digests: PngDigests = field(init=False)
    similar: SimilarLesions = field(init=False)

    def __post_init__(self) -> None:
        self.files = LocalFiles.for_settings(self.settings)
        self.access = StudioAccess(FetchPolicy.for_settings(self.settings))
        self.registry = ModelRegistry.for_settings(self.settings, self.sessions)
        self.digests = PngDigests(self.files, self.settings.max_download_bytes)
        self.similar = SimilarLesions(self.settings, self.sessions)

    def model_version(self) -> str:
        with self.sessions() as session:
            return version_queries.active_model_id(session, kind=DETECTOR_KIND) or NO_MODEL

    def versions(self) -> list[str]:
        with self.sessions() as session:
            return [v.id for v in version_queries.model_versions(session, kind=DETECTOR_KIND)]

    def setup(self, hostname: str | None, token: str | None, *, project: str | None = None) -> str:
        """Take one project's Label Studio address and token (only its own host or an allowed
        one) and name the serving version; a damaged one is a 503, not advertised."""
        if hostname or token:
            policy = self.access.setup(project_key(project), hostname, token)
            if hostname and policy.studio != origin_of(hostname.strip()):
                log.warning("/setup named a host that is not Label Studio's; it is ignored")
        version = self.model_version()
        if version != NO_MODEL:
            self._intact(version)
        return version

    def damage(self) -> str | None:
        """One line if the active detector's files are damaged (for `labeler serve` at start)."""
        version = self.model_version()
        if version == NO_MODEL:
            return None
        try:
            self._intact(version)
        except ModelUnavailable as exc:
            return str(exc)
        return None

    def predict_many(
        self,
        tasks: Sequence[Task],
        *,
        label_config: str | None = None,
        project: str | None = None,
        tally: Counters | None = None,
    ) -> tuple[str, list[Prediction]]:
        """The serving version and one prediction per task; Busy when misses are left over.

        Every reference is judged first, so a refused one is a 400 whatever the model's state.
        Images are fetched with the access the task's project set up. `tally` ("hits",
        "misses") counts this call's share of `stats`, whatever the call ends with.
        """
        fetching = self.access.policy(project_key(project))
        refs = [_about(task, resolve, task.data.image, self.files, fetching) for task in tasks]
        version = self.model_version()
        if version == NO_MODEL:
            raise ModelUnavailable("no active detector: train one (`labeler train`) first")
        plans = [
            self._plan(task, ref, version, fetching) for task, ref in zip(tasks, refs, strict=True)
        ]
        scored = self._score(plans, version, tally)
        return version, [
            self._answer(plan, done, version, label_config)
            for plan, done in zip(plans, scored, strict=True)
        ]

    def _plan(self, task: Task, ref: ImageRef, version: str, fetching: FetchPolicy) -> Plan:
        with self.sessions() as session:
            identity = identify(
                session, claimed_id=task.data.image_id, ref=ref, home=self.files.home
            )
        hit = self._cached(identity.image_id, version)
        return Plan(task, ref, identity, hit, fetching)

    def _count(self, name: str, tally: Counters | None) -> None:
        self.stats.add(name)
        if tally is not None:
            tally.add(name)

    def _score(self, plans: list[Plan], version: str, tally: Counters | None) -> list[Scored]:
        """Hits as they are; misses computed up to the per-request bound and time budget."""
        misses = [i for i, plan in enumerate(plans) if plan.hit is None]
        out: dict[int, Scored] = {}
        for i, plan in enumerate(plans):
            if plan.hit is not None:
                self._count("hits", tally)
                out[i] = self._from_cache(plan.hit, plan.identity)
        if misses:
            out.update(self._compute_bounded(plans, misses, version, tally))
        if len(out) < len(plans):
            raise Busy(
                f"{len(misses)} tasks need the model; {len(out) - len(plans) + len(misses)} "
                f"computed now (at most {self.settings.predict_max_misses} per request); the rest "
                "are pre-labeled by the batch job: `labeler predict` / the retrain job",
                retry_after=RETRY_MISSES_S,
            )
        return [out[i] for i in range(len(plans))]

    def _compute_bounded(
        self, plans: list[Plan], misses: list[int], version: str, tally: Counters | None
    ) -> dict[int, Scored]:
        bound = self.settings.predict_max_misses
        if bound == 0:
            return {}
        if not self._work.acquire(blocking=False):
            raise Busy(
                "the model is busy with another request's cache misses; cached pre-labels are "
                "served meanwhile",
                retry_after=RETRY_BUSY_S,
            )
        try:
            self._intact(version)
            out: dict[int, Scored] = {}
            deadline = time.monotonic() + MISS_SECONDS
            for n, i in enumerate(misses[:bound]):
                if n and time.monotonic() > deadline:
                    break  # at least one per request, so retries always make progress
                out[i] = _about(plans[i].task, self._miss, plans[i], version, tally)
            return out
        finally:
            self._work.release()

    def _miss(self, plan: Plan, version: str, tally: Counters | None) -> Scored:
        """Read the pixels; cache them under the image only if they are verifiably its own."""
        data = read_bytes(plan.ref, self.files, plan.fetching)
        known = plan.identity.image
        image_id = plan.identity.image_id
        if image_id is None and known is not None and self.digests.matches(known, data):
            image_id = known.id
            hit = self._cached(image_id, version)
            if hit is not None:
                self._count("hits", tally)
                return self._from_cache(hit, Identity(known, verified=True))
        rgb = decode_rgb(data, self.settings.max_image_pixels)
        boxes, uncertainty = self._compute(rgb, image_id, version, tally)
        return Scored(boxes, uncertainty, (rgb.shape[1], rgb.shape[0]), image_id, rgb)

    def _from_cache(self, hit: Cached, identity: Identity) -> Scored:
        assert identity.image is not None  # a hit needs a verified image
        size = (identity.image.width, identity.image.height)
        return Scored(hit[0], hit[1], size, identity.image.id)

    def _cached(self, image_id: int | None, version: str) -> Cached | None:
        if image_id is None:
            return None
        with self.sessions() as session:
            row = prediction_queries.cached_prediction(
                session, image_id=image_id, model_version_id=version
            )
            return (list(row.boxes), row.uncertainty) if row is not None else None

    def _compute(
        self, rgb: RGBImage, image_id: int | None, version: str, tally: Counters | None
    ) -> Cached:
        self._count("misses", tally)
        with self._lock:
            prelabel = self._pipeline(version).predict([rgb])[0]
        row = prelabel.row(image_id or 0)
        if image_id is not None:
            self._store(version, row)
        return list(row.boxes), row.uncertainty

    def _intact(self, version: str) -> Path:
        """The version's folder if its files are as sealed (a stat when warm); 503 if not."""
        try:
            return self.registry.intact_path(version)
        except DamagedVersionError as exc:
            raise ModelUnavailable(str(exc)) from exc

    def _pipeline(self, version: str) -> PrelabelPipeline:
        """The version's pre-label pipeline, reloaded when the version, the active 4A/4B
        splitter, the active encoder (the grader) or the version's precision choice (`labeler
        models optimize`) changes (prelabel.pipeline.open_pipeline)."""
        splitter, grader = self.registry.active(NO4_KIND), self.registry.active(ENCODER_KIND)
        key = (
            version,
            splitter.id if splitter is not None else None,
            grader.id if grader is not None else None,
            choice_stamp(derived_folder(self.settings.home, version)),  # a version's folder: its id
        )
        if self._model is None or self._model[0] != key:
            self._intact(version)
            load = self.loader or (lambda p: load_for_prelabel(p, self.settings))
            try:
                pipeline = open_pipeline(self.registry, version, self.settings, load)
            except DamagedVersionError as exc:
                raise ModelUnavailable(str(exc)) from exc
            except Exception as exc:
                log.exception("loading detector %s failed", version)
                raise ModelUnavailable(
                    f"model version {version} could not be loaded; see the backend log"
                ) from exc
            self._model = (key, pipeline)
            self.stats.add("loads")
            log.info(
                "loaded detector %s (4A/4B splitter %s, grader %s, %s)",
                version,
                key[1],
                key[2],
                pipeline.detector.precision,
            )
        return self._model[1]

    def _store(self, version: str, row: prediction_queries.NewPrediction) -> None:
        with self.sessions.begin() as session:  # ON CONFLICT DO NOTHING: the first one stays
            prediction_queries.add_predictions(session, model_version_id=version, predictions=[row])

    def _answer(
        self, plan: Plan, done: Scored, version: str, label_config: str | None
    ) -> Prediction:
        prediction = prediction_payload(
            done.boxes,
            width=done.size[0],
            height=done.size[1],
            model_version=version,
            rule=prelabel_rule(self.settings),
        )

        def pixels() -> RGBImage:
            if done.rgb is not None:
                return done.rgb
            data = read_bytes(plan.ref, self.files, plan.fetching)
            return decode_rgb(data, self.settings.max_image_pixels)

        return self._attach_similar(prediction, done.image_id, done.boxes, pixels, label_config)

    def _attach_similar(
        self,
        prediction: Prediction,
        image_id: int | None,
        boxes: list[BoxRecord],
        pixels: Callable[[], RGBImage],
        label_config: str | None,
    ) -> Prediction:
        """Add the matches of the top shown box; a failure here never costs the pre-label."""
        try:
            box = top_box(prelabel_rule(self.settings).pick(boxes))
            found = self.similar.find(image_id=image_id, box=box, pixels=pixels)
        except Exception:
            log.exception(
                "similar lesions failed for image %s; the prediction goes without", image_id
            )
            return prediction
        if found is None:
            return prediction
        matches, encoder = found.matches, found.encoder_version
        prediction = prediction.with_similar(similar_payload(matches, encoder_version=encoder))
        if declares_similar(label_config):
            prediction = prediction.with_region(similar_region(matches, encoder_version=encoder))
        return prediction


def _about(task: Task, step: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run one task's step; an expected failure names the task's id."""
    try:
        return step(*args, **kwargs)
    except BackendError as exc:
        exc.task_id = task.id
        raise
