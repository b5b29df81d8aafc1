"""`labeler retrain`: the plan, the gate, single flight, and a kill in the middle of training.

The detector is a registered random-init `tiny` model and the accepted labels are written
straight into `labels`, so each test trains at most one short fine-tune on the bundled sample.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from bench.support.factories import (
    add_prelabels,
    import_sample,
    known_prelabel,
    register_detector,
    register_encoder,
    register_random_detector,
)
from core.birads import Birads
from core.errors import ExitCode
from core.results import EvaluationMetrics
from core.settings import Settings
from db.models import Image, LabelStatus, Split, TrainingRun
from db.queries import evaluations as evaluation_queries
from db.queries import events as event_queries
from db.queries import images as image_queries
from db.queries import labels as label_queries
from db.queries import predictions as prediction_queries
from db.queries import versions as version_queries
from labeler.cli import app
from labeler.context import AppContext
from labeler.jobs import retrain as retrain_job
from labeler.jobs.evaluate import current_manifest
from labeler.jobs.retrain import (
    RetrainReport,
    _refresh_index,
    gate,
    gate_passes,
    make_plan,
    retrain,
)
from labeler.jobs.train import make_config
from labeler.jobs.train_child import TrainingFailedError, TrainRequest, train_in_child
from labeler.lock import AlreadyRunningError, single_flight
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.encoder.index import index_file
from ml_backend.registry import ModelRegistry
from ml_backend.registry.kinds import DETECTOR_KIND, NO4_KIND
from tests.db import rows

runner = CliRunner()


@pytest.fixture
def loop(
    settings: Settings,
    sessions: sessionmaker[Session],
    busbra_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> tuple[AppContext, str]:
    monkeypatch.setenv("LABELER_RETRAIN_EPOCHS", "1")
    monkeypatch.setenv("LABELER_RETRAIN_MIN_NEW_LABELS", "5")
    monkeypatch.setenv("LABELER_STUDIO_URL", "http://127.0.0.1:9")  # nothing listens: no push
    import_sample(settings, sessions, busbra_dir, "busbra")
    version = register_random_detector(settings, sessions)
    return AppContext(Settings(_env_file=None)), version


def _accept(sessions: sessionmaker[Session], n: int, birads: Birads = Birads.B4A) -> None:
    with sessions.begin() as session:
        images = session.scalars(
            select(Image).where(Image.split == Split.TRAIN).order_by(Image.id).limit(n)
        ).all()
        for image in images:
            p = known_prelabel(image.width, image.height, birads)
            label_queries.upsert_label(
                session,
                image_id=image.id,
                round=1,
                status=LabelStatus.ACCEPTED,
                boxes=p.boxes,
                birads=p.image_birads,
                model_version_id=None,
            )


@pytest.mark.both_backends  # no training: cheap on PostgreSQL too
def test_plan_waits_for_enough_new_labels_and_dry_run_changes_nothing(
    loop: tuple[AppContext, str],
) -> None:
    app_ctx, version = loop
    plan = make_plan(app_ctx, force=False)
    assert not plan.run and plan.new_labels == 0 and "threshold 5" in plan.reason
    _accept(app_ctx.sessions, 5)
    assert make_plan(app_ctx, force=False).run
    out = runner.invoke(app, ["retrain", "--dry-run", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["plan"]["run"] and report["candidate"] is None and report["predicted"] == 0
    with app_ctx.sessions() as session:
        assert version_queries.active_model_id(session, kind="detector") == version
        assert event_queries.count_events(session, action="retrain_started") == 0


@pytest.mark.both_backends  # no training: cheap on PostgreSQL too
def test_a_start_training_request_from_label_studio_runs_once(
    loop: tuple[AppContext, str],
) -> None:
    app_ctx, _ = loop
    assert not make_plan(app_ctx, force=False).run  # no labels, no request

    def event(action: str) -> None:
        with app_ctx.sessions.begin() as session:
            event_queries.record_event(session, actor="test", action=action, subject="x", detail={})

    event("training_requested")  # what the backend's webhook stores for START_TRAINING
    plan = make_plan(app_ctx, force=False)
    assert plan.run and "Start Training" in plan.reason
    event("retrain_started")  # the request is answered by that run
    assert not make_plan(app_ctx, force=False).run


def test_the_similar_lesion_index_is_rebuilt_only_with_an_active_encoder(
    loop: tuple[AppContext, str],
) -> None:
    app_ctx, _ = loop
    report = RetrainReport(make_plan(app_ctx, force=True))
    _refresh_index(app_ctx, report)
    assert report.indexed is None and report.index_error is None
    encoder = register_encoder(app_ctx.settings, app_ctx.sessions)
    _refresh_index(app_ctx, report)
    with app_ctx.sessions() as session:
        n_reference = len(image_queries.reference_labels(session, split=None))
    assert report.indexed is not None and report.indexed >= n_reference
    assert index_file(app_ctx.settings.home, encoder).is_file()


def _metrics(map50: float, manifest: str) -> EvaluationMetrics:
    """A stored test evaluation that says its mAP@0.5 and which images it was made on."""
    return rows.metrics(map50).model_copy(update={"split_manifest_sha256": manifest})


def _store(app_ctx: AppContext, version: str, metrics: EvaluationMetrics) -> None:
    with app_ctx.sessions.begin() as session:
        evaluation_queries.save_evaluation(
            session, model_version_id=version, dataset="all", split="test", metrics=metrics
        )


@pytest.mark.both_backends  # no training: cheap on PostgreSQL too
def test_gate_refuses_a_worse_model(loop: tuple[AppContext, str]) -> None:
    app_ctx, active = loop
    candidate = register_random_detector(app_ctx.settings, app_ctx.sessions)  # also promotes
    manifest = current_manifest(app_ctx, Split.TEST)
    _store(app_ctx, active, _metrics(0.42, manifest))
    _store(app_ctx, candidate, _metrics(0.40, manifest))
    verdict = gate(app_ctx, active=active, candidate=candidate)
    assert not verdict.passed and (verdict.active, verdict.candidate) == (0.42, 0.40)
    assert verdict.test_manifest_sha256 == manifest
    assert gate(app_ctx, active=candidate, candidate=active).passed
    assert gate_passes(0.5, 0.5) and not gate_passes(0.5, None) and gate_passes(None, 0.1)


def test_the_gate_scores_the_active_model_again_when_the_test_set_changed(
    loop: tuple[AppContext, str],
) -> None:
    """A stored 0.99 made on other images must not block a candidate: it is re-scored."""
    app_ctx, active = loop
    candidate = _register_silent(app_ctx, exclude_4=False)
    manifest = current_manifest(app_ctx, Split.TEST)
    _store(app_ctx, active, _metrics(0.99, "an older, smaller test set"))
    _store(app_ctx, candidate, _metrics(0.0, manifest))
    verdict = gate(app_ctx, active=active, candidate=candidate)
    assert verdict.active is not None and verdict.active < 0.99
    with app_ctx.sessions() as session:
        [row] = evaluation_queries.evaluations(session, model_version_id=active)
    assert row.metrics.split_manifest_sha256 == manifest
    assert row.metrics.detection.map50 == verdict.active


def _register_silent(app_ctx: AppContext, *, exclude_4: bool) -> str:
    """A random-init `tiny` detector whose classifier always says background: it finds
    nothing, so its mAP@0.5 on the test split is exactly 0 and any candidate is not worse."""
    config = make_config("tiny", exclude_4=exclude_4, epochs=None)
    detector = FasterRCNNDetector(config)
    bias = detector.model.roi_heads.box_predictor.cls_score.bias
    with torch.no_grad():
        bias.fill_(-10.0)
        bias[0] = 10.0
    kind = NO4_KIND if exclude_4 else DETECTOR_KIND
    return register_detector(app_ctx.settings, app_ctx.sessions, detector, kind=kind)


def test_a_candidate_that_passes_the_gate_is_promoted_with_its_splitter_and_pre_labels(
    loop: tuple[AppContext, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELER_RETRAIN_INCLUDE_REFERENCE", "false")  # 6 images: tiny runs
    monkeypatch.setenv("LABELER_RETRAIN_OPTIMIZE", "true")
    measured: list[tuple[str, bool]] = []  # optimize itself: tests/labeler/test_detector_cli.py

    def optimize(app: AppContext, version: str, **_: object) -> SimpleNamespace:
        with app.sessions() as session:  # measured before the version pre-labels anything
            done = prediction_queries.count_predictions(session, model_version_id=version)
        measured.append((version, done == 0))
        return SimpleNamespace(chosen="int8")

    monkeypatch.setattr(retrain_job, "optimize_version", optimize)
    app_ctx = AppContext(Settings(_env_file=None))  # `loop`'s sample, with the settings above
    active = _register_silent(app_ctx, exclude_4=False)
    active_no4 = _register_silent(app_ctx, exclude_4=True)
    _accept(app_ctx.sessions, 6, Birads.B3)  # BI-RADS 3: the no-4 model trains on them too
    _prelabel_everything(app_ctx, active)  # so every pre-label below is the candidate's
    said: list[str] = []
    report = retrain(app_ctx, force=False, dry_run=False, say=said.append)

    assert report.plan.run and report.plan.active == active
    manifest = current_manifest(app_ctx, Split.TEST)
    assert report.gate is not None and report.gate.passed and report.gate.active == 0.0
    assert report.gate.test_manifest_sha256 == manifest
    assert report.promoted and report.candidate not in (None, active)
    assert report.no4_gate is not None and report.no4_gate.passed
    assert report.no4_gate.test_manifest_sha256 == manifest
    assert report.no4 == report.no4_candidate and report.no4 not in (None, active_no4)
    assert any(line.startswith("epoch 1/1") for line in said)  # the child's progress came up
    assert measured == [(report.candidate, True), (report.no4, True)]
    assert report.precision == {report.candidate: "int8", report.no4: "int8"}
    with app_ctx.sessions() as session:
        assert version_queries.active_model_id(session, kind=DETECTOR_KIND) == report.candidate
        assert version_queries.active_model_id(session, kind=NO4_KIND) == report.no4
        n_images = len(session.scalars(select(Image)).all())
        assert report.predicted == n_images
        stored = prediction_queries.count_predictions(session, model_version_id=report.candidate)
        assert stored == n_images
        for action in ("retrain_gated", "retrain_no4_gated", "prelabeled", "retrain_finished"):
            assert event_queries.count_events(session, action=action) == 1, action
    assert report.studio_error is not None and "not reachable" in report.studio_error  # tried


def test_a_training_child_that_fails_says_why_in_one_line(
    settings: Settings, sessions: sessionmaker[Session]
) -> None:
    request = TrainRequest(
        settings=settings,
        parent=None,
        exclude_4=False,
        epochs=1,
        include_reference=False,
        resume=False,
        threads=1,
    )
    with pytest.raises(TrainingFailedError, match="no labeled training images") as failed:
        train_in_child(request, lock=None, say=lambda _: None)
    assert failed.value.exit_code is ExitCode.PARTIAL and "\n" not in str(failed.value)


def test_a_second_run_exits_at_once_while_the_first_holds_the_lock(tmp_path: Path) -> None:
    lock = tmp_path / "retrain.lock"
    with (
        single_flight(lock),
        pytest.raises(AlreadyRunningError, match=f"pid {os.getpid()}"),
        single_flight(lock),
    ):
        pass
    with single_flight(lock):  # released on exit
        pass


def _retrain_process(settings: Settings) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "labeler.cli", "retrain", "--force", "--json"],
        env=os.environ | {"LABELER_HOME": str(settings.home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _wait(condition: object, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise TimeoutError("condition not reached")


def test_concurrent_runs_and_a_kill_mid_training_leave_the_old_version_serving(
    loop: tuple[AppContext, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LABELER_RETRAIN_INCLUDE_REFERENCE", "false")  # 6 images: tiny runs
    app_ctx, old = loop
    _accept(app_ctx.sessions, 6)
    _prelabel_everything(app_ctx, old)  # the old version's pre-labels, which must survive
    with app_ctx.sessions() as session:
        old_predictions = prediction_queries.count_predictions(session, model_version_id=old)
    lock = app_ctx.settings.home / "retrain.lock"

    first = _retrain_process(app_ctx.settings)
    _wait(lambda: lock.exists() and lock.read_text().strip() == str(first.pid))
    second = runner.invoke(app, ["retrain", "--force"])
    assert second.exit_code == 4 and "another run holds" in second.output

    def training() -> bool:
        with app_ctx.sessions() as session:
            return (
                session.scalars(select(TrainingRun).where(TrainingRun.status == "running")).first()
                is not None
            )

    _wait(training)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    with app_ctx.sessions() as session:
        assert version_queries.active_model_id(session, kind="detector") == old
        assert (
            prediction_queries.count_predictions(session, model_version_id=old) == old_predictions
        )
        assert [v.id for v in version_queries.model_versions(session, kind="detector")] == [old]

    again = runner.invoke(app, ["retrain", "--force", "--json"])
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["candidate"] not in (None, old) and report["gate"]["metric"] == "map50"
    with app_ctx.sessions() as session:
        active = version_queries.active_model_id(session, kind="detector")
        assert active == (report["candidate"] if report["promoted"] else old)
        assert (
            prediction_queries.count_predictions(session, model_version_id=old) == old_predictions
        )
        assert event_queries.count_events(session, action="retrain_gated") == 1
    assert report["studio_error"] is None or "not reachable" in report["studio_error"]


def _trainers(home: Path) -> dict[int, int]:
    """pid -> run id of every live trainer, from the run folders' locks (each holds its pid)."""
    from labeler.jobs.train import TRAINER_LOCK
    from tests.labeler.test_lock import alive

    out: dict[int, int] = {}
    for lock in (home / "runs").glob(f"run-*/{TRAINER_LOCK}"):
        text = lock.read_text().strip() if lock.exists() else ""
        if text.isdigit() and alive(int(text)):
            out[int(text)] = int(lock.parent.name.removeprefix("run-"))
    return out


def _prelabel_everything(app_ctx: AppContext, version: str) -> None:
    """Stored pre-labels for every image, so a retrain goes straight to training."""
    with app_ctx.sessions() as session:
        ids = [
            i
            for i, _ in prediction_queries.images_without_prediction(
                session, model_version_id=version
            )
        ]
    add_prelabels(app_ctx.sessions, version, ids, Birads.B3)


def test_kill_9_of_retrain_takes_its_trainer_along_and_the_next_run_trains_alone(
    loop: tuple[AppContext, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.labeler.test_lock import alive, wait_until

    monkeypatch.setenv("LABELER_RETRAIN_INCLUDE_REFERENCE", "false")  # 6 images: a tiny run
    app_ctx, old = loop
    home = app_ctx.settings.home
    _accept(app_ctx.sessions, 6)
    _prelabel_everything(app_ctx, old)

    first = _retrain_process(app_ctx.settings)
    _wait(lambda: len(_trainers(home)) == 1 or first.poll() is not None)
    [(child, run)] = _trainers(home).items()
    assert child != first.pid
    os.kill(first.pid, signal.SIGKILL)  # the parent only: its group is left alone
    first.wait(10)
    assert wait_until(lambda: not alive(child), timeout=5), "the trainer outlived retrain"
    with app_ctx.sessions() as session:  # the old version still serves, its files intact
        assert version_queries.active_model_id(session, kind=DETECTOR_KIND) == old
    assert ModelRegistry.for_settings(app_ctx.settings, app_ctx.sessions).verify(old) == []

    second = _retrain_process(app_ctx.settings)
    try:
        _wait(lambda: bool(_trainers(home)) or second.poll() is not None)
        assert second.poll() is None, second.communicate()  # not refused: nothing held the lock
        trainers = _trainers(home)
        assert list(trainers) != [child] and len(trainers) == 1 and not alive(child)
        assert list(trainers.values()) == [run]  # it resumes the dead trainer's run, alone
    finally:
        second.kill()  # the retrain itself is tested above; its child dies with it
        second.wait(10)
    assert wait_until(lambda: not _trainers(home), timeout=5)


def test_resume_refuses_a_run_a_live_trainer_holds(
    loop: tuple[AppContext, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two `train --resume` on the same data: the second exits 4 instead of sharing the folder."""
    app_ctx, _ = loop
    home = app_ctx.settings.home
    _accept(app_ctx.sessions, 4)
    args = ["train", "--config", "tiny", "--resume", "--no-reference", "--epochs", "1", "--json"]
    first = subprocess.Popen(
        [sys.executable, "-m", "labeler.cli", *args],
        env=os.environ | {"LABELER_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait(lambda: bool(_trainers(home)) or first.poll() is not None)
        [(pid, run)] = _trainers(home).items()
        assert pid == first.pid
        second = runner.invoke(app, args)
        assert second.exit_code == 4, second.output
        assert f"training run {run} is in use by a live trainer" in second.stderr
        assert json.loads(second.stdout)["exit_code"] == 4
    finally:
        first.kill()
        first.wait(10)
