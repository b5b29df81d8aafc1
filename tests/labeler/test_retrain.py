"""`labeler retrain`: the plan, the gate, single flight, and a kill in the middle of training.

The detector is a registered random-init `small` model and the accepted labels are written
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

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from db import queries
from core.birads import Birads
from db.models import Image, LabelStatus, Split, TrainingRun
from core.settings import Settings
from labeler.cli import app
from labeler.context import AppContext
from labeler.jobs.retrain import (
    RetrainReport,
    _refresh_index,
    gate,
    gate_passes,
    gate_value,
    make_plan,
)
from labeler.lock import AlreadyRunningError, single_flight
from ml_backend.encoder.index import index_file
from tests.factories import (
    add_prelabels,
    import_sample,
    known_prelabel,
    register_encoder,
    register_random_detector,
)

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


def _accept(sessions: sessionmaker[Session], n: int) -> None:
    with sessions.begin() as session:
        images = session.scalars(
            select(Image).where(Image.split == Split.TRAIN).order_by(Image.id).limit(n)
        ).all()
        for image in images:
            p = known_prelabel(image.width, image.height)
            queries.upsert_label(
                session,
                image_id=image.id,
                round=1,
                status=LabelStatus.ACCEPTED,
                boxes=p.boxes,
                birads=p.image_birads,
                model_version_id=None,
            )


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
        assert queries.active_model_id(session, kind="detector") == version
        assert queries.count_events(session, action="retrain_started") == 0


def test_a_start_training_request_from_label_studio_runs_once(
    loop: tuple[AppContext, str],
) -> None:
    app_ctx, _ = loop
    assert not make_plan(app_ctx, force=False).run  # no labels, no request

    def event(action: str) -> None:
        with app_ctx.sessions.begin() as session:
            queries.record_event(session, actor="test", action=action, subject="x", detail={})

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
        n_reference = len(queries.reference_labels(session, split=None))
    assert report.indexed is not None and report.indexed >= n_reference
    assert index_file(app_ctx.settings.home, encoder).is_file()


def test_gate_refuses_a_worse_model(loop: tuple[AppContext, str]) -> None:
    app_ctx, active = loop
    candidate = register_random_detector(app_ctx.settings, app_ctx.sessions)  # also promotes
    with app_ctx.sessions.begin() as session:
        for version, value in ((active, 0.42), (candidate, 0.40)):
            queries.save_evaluation(
                session,
                model_version_id=version,
                dataset="all",
                split="test",
                metrics={"map50": value},
                confusion_matrices={},
            )
    verdict = gate(app_ctx, active=active, candidate=candidate)
    assert verdict["passed"] is False and verdict["active"] == 0.42 and verdict["candidate"] == 0.40
    assert gate(app_ctx, active=candidate, candidate=active)["passed"] is True
    assert gate_passes(0.5, 0.5) and not gate_passes(0.5, None) and gate_passes(None, 0.1)
    assert gate_value({"screening": {"sen_at_spe80": 0.7}}, "sen_at_spe80") == 0.7


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
    loop: tuple[AppContext, str],
) -> None:
    app_ctx, old = loop
    _accept(app_ctx.sessions, 6)
    runner.invoke(app, ["predict"])
    with app_ctx.sessions() as session:
        old_predictions = queries.count_predictions(session, model_version_id=old)
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
        assert queries.active_model_id(session, kind="detector") == old
        assert queries.count_predictions(session, model_version_id=old) == old_predictions
        assert [v.id for v in queries.model_versions(session, kind="detector")] == [old]

    again = runner.invoke(app, ["retrain", "--force", "--json"])
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert report["candidate"] not in (None, old) and report["gate"]["metric"] == "map50"
    with app_ctx.sessions() as session:
        active = queries.active_model_id(session, kind="detector")
        assert active == (report["candidate"] if report["promoted"] else old)
        assert queries.count_predictions(session, model_version_id=old) == old_predictions
        assert queries.count_events(session, action="retrain_gated") == 1
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
        ids = [i for i, _ in queries.images_without_prediction(session, model_version_id=version)]
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
    args = ["train", "--resume", "--no-reference", "--epochs", "1", "--json"]
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
