"""The cron job: enough new accepted labels -> fine-tune -> evaluate -> gate -> promote ->
pre-label the pool -> tell Label Studio. Safe to run every few minutes.

Single-flight through `labeler.lock`. Training runs in a subprocess (`labeler train
--from-version ... --resume`), so a kill leaves a checkpoint the next run resumes from. The child
holds the retrain lock too (its descriptor is passed down) and dies with this process, even after
`kill -9`; the run folder has its own lock held by the trainer, so no two trainers ever share it.
The old version serves until the one atomic step that moves the active pointer; a run killed
after that finds the new version's missing pre-labels at its next start and finishes them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from db import queries
from db.models import Split
from labeler.context import AppContext
from core.errors import ExitCode, LabelerError
from labeler.jobs.evaluate import evaluate_version
from labeler.jobs.predict import predict_pool
from labeler.jobs.versions import intact_path
from labeler.lock import HeldLock, die_with_parent, single_flight
from ml_backend.registry import ModelRegistry
from ml_backend.registry.kinds import DETECTOR_KIND, ENCODER_KIND, NO4_KIND

ACTOR = "labeler retrain"


class TrainingFailedError(LabelerError, RuntimeError):
    """The training child failed; its exit code is kept (7 disk full, 6 damaged, 4 busy)."""


@dataclass(frozen=True)
class RetrainPlan:
    run: bool
    reason: str
    active: str | None
    new_labels: int
    threshold: int
    unfinished_prelabels: int


@dataclass
class RetrainReport:
    plan: RetrainPlan
    candidate: str | None = None
    gate: dict[str, Any] = field(default_factory=dict)
    promoted: bool = False
    no4: str | None = None
    predicted: int = 0
    pushed: dict[str, Any] | None = None
    studio_error: str | None = None
    indexed: int | None = None  # lesion boxes in the rebuilt similar-lesion index
    index_error: str | None = None


def make_plan(app: AppContext, *, force: bool) -> RetrainPlan:
    registry = ModelRegistry.for_settings(app.settings, app.sessions)
    active = registry.active(DETECTOR_KIND)
    threshold = app.settings.retrain_min_new_labels
    with app.sessions() as session:
        since = active.created_at if active else None
        new = queries.count_accepted_since(session, since=since)
        asked = _requested_since_last_run(session)
        todo = (
            len(queries.images_without_prediction(session, model_version_id=active.id))
            if active
            else 0
        )
    if active is None:
        return RetrainPlan(
            False, "no active detector: run `labeler train` first", None, new, threshold, 0
        )
    if force:
        return RetrainPlan(True, "--force", active.id, new, threshold, todo)
    if asked:
        reason = "Label Studio asked for training (its Start Training button)"
        return RetrainPlan(True, reason, active.id, new, threshold, todo)
    if new >= threshold:
        reason = f"{new} accepted labels since {active.id} (threshold {threshold})"
        return RetrainPlan(True, reason, active.id, new, threshold, todo)
    reason = f"only {new} accepted labels since {active.id} (threshold {threshold})"
    return RetrainPlan(False, reason, active.id, new, threshold, todo)


def _requested_since_last_run(session: Session) -> bool:
    """A training request queued by the backend's webhook and not yet answered by a run."""
    asked = queries.latest_event_at(session, action="training_requested")
    ran = queries.latest_event_at(session, action="retrain_started")
    return asked is not None and (ran is None or asked > ran)


def retrain(
    app: AppContext, *, force: bool, dry_run: bool, say: Callable[[str], None]
) -> RetrainReport:
    with single_flight(app.settings.home / "retrain.lock") as lock:
        plan = make_plan(app, force=force)
        report = RetrainReport(plan)
        if dry_run:
            return report
        if plan.active:  # a damaged active model: one line, exit 6, before any work
            intact_path(ModelRegistry.for_settings(app.settings, app.sessions), plan.active)
        if plan.active and plan.unfinished_prelabels:
            say(f"finishing {plan.unfinished_prelabels} pre-labels of {plan.active}")
            _prelabel_and_push(app, plan.active, report)
        if not plan.run or plan.active is None:
            return report
        _event(app, "retrain_started", plan.active, {"reason": plan.reason})
        say(f"fine-tuning {plan.active}: {plan.reason}")
        report.candidate = train_subprocess(app, parent=plan.active, exclude_4=False, lock=lock)
        say(f"evaluating {report.candidate} against {plan.active} on the test split")
        report.gate = gate(app, active=plan.active, candidate=report.candidate)
        _event(app, "retrain_gated", report.candidate, report.gate)
        if not report.gate["passed"]:
            say(f"kept {plan.active}: {report.gate['reason']}")
            return report
        _promote(app, report.candidate, report.gate["reason"])
        report.promoted = True
        report.no4 = _retrain_no4(app, say, lock)
        _prelabel_and_push(app, report.candidate, report)
        _event(app, "retrain_finished", report.candidate, {"predicted": report.predicted})
        return report


def train_subprocess(
    app: AppContext, *, parent: str, exclude_4: bool, lock: HeldLock | None = None
) -> str:
    """`labeler train --from-version` in a child process; returns the registered version.

    The child dies with this process (PR_SET_PDEATHSIG) and, given `lock`, holds it as well, so
    a killed retrain never leaves a trainer running without the lock.
    """
    cmd = [sys.executable, "-m", "labeler.cli", "train", "--from-version", parent, "--resume"]
    cmd += ["--epochs", str(app.settings.retrain_epochs), "--json"]
    if exclude_4:
        cmd += ["--exclude-birads", "4"]
    if not app.settings.retrain_include_reference:
        cmd += ["--no-reference"]
    with subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        pass_fds=(lock.fd,) if lock else (),
        preexec_fn=die_with_parent(),  # in the child: only a prctl and a getppid
    ) as child:
        try:
            out, err = child.communicate()
        except BaseException:
            child.kill()
            raise
    if child.returncode != 0:
        raise _child_failure(parent, child.returncode, out, err)
    return str(json.loads(out)["version_id"])


def _child_failure(parent: str, code: int, out: str, err: str) -> TrainingFailedError:
    """The child's own one-line error and exit code when it gave them (--json), else its
    stderr's tail with exit code 1."""
    try:
        said = json.loads(out)
        message, child_code = str(said["error"]), ExitCode(int(said["exit_code"]))
    except (ValueError, KeyError, TypeError):
        message, child_code = err.strip()[-800:], ExitCode.PARTIAL
    return TrainingFailedError(f"training {parent} failed: {message}", exit_code=child_code)


def gate_value(metrics: dict[str, Any], name: str) -> float | None:
    source = metrics if name == "map50" else (metrics.get("screening") or {})
    value = source.get(name)
    return None if value is None else float(value)


def gate_passes(active: float | None, candidate: float | None) -> bool:
    """Not worse: a candidate without a value never passes; an active without one always does."""
    if candidate is None:
        return False
    return active is None or candidate >= active


def gate(app: AppContext, *, active: str, candidate: str) -> dict[str, Any]:
    name = app.settings.retrain_gate
    values = {v: gate_value(_test_metrics(app, v), name) for v in (active, candidate)}
    passed = gate_passes(values[active], values[candidate])
    verdict = "not worse" if passed else "worse"
    reason = f"{name} {values[candidate]} vs {values[active]} ({verdict})"
    return {
        "metric": name,
        "active": values[active],
        "candidate": values[candidate],
        "passed": passed,
        "reason": reason,
    }


def _test_metrics(app: AppContext, version: str) -> dict[str, Any]:
    with app.sessions() as session:
        stored = [
            e
            for e in queries.evaluations(session, model_version_id=version)
            if e.split == Split.TEST.value
        ]
        if stored:
            return dict(stored[-1].metrics)
    return dict(evaluate_version(app, version_id=version, split=Split.TEST)["metrics"])


def _promote(app: AppContext, version: str, reason: str) -> None:
    ModelRegistry.for_settings(app.settings, app.sessions).promote(
        version, actor=ACTOR, reason=reason
    )


def _retrain_no4(app: AppContext, say: Callable[[str], None], lock: HeldLock) -> str | None:
    registry = ModelRegistry.for_settings(app.settings, app.sessions)
    active = registry.active(NO4_KIND)
    if not app.settings.retrain_no4 or active is None:
        return None
    say(f"fine-tuning the 4A/4B splitter {active.id}")
    version = train_subprocess(app, parent=active.id, exclude_4=True, lock=lock)
    evaluate_version(app, version_id=version, split=Split.TEST)  # Table III for the dashboard
    _promote(app, version, "retrained with the detector")
    return version


def _prelabel_and_push(app: AppContext, version: str, report: RetrainReport) -> None:
    from labeler.studio.client import StudioRequestError, StudioUnavailableError, connect
    from labeler.studio.project import find_project
    from labeler.studio.push import push

    report.predicted += predict_pool(app, version_id=version).predicted
    _refresh_index(app, report)
    try:
        studio = connect(app.settings)
        project = find_project(studio, app.settings.studio_project)
        if project is not None:
            summary = push(app, studio, project, model_version=version)
            report.pushed = {
                "tasks_created": summary.tasks_created,
                "predictions_updated": summary.predictions_updated,
            }
    except (StudioUnavailableError, StudioRequestError) as exc:
        report.studio_error = str(exc)  # the next run or `labeler studio push` catches up
    _event(
        app,
        "prelabeled",
        version,
        {
            "predicted": report.predicted,
            "pushed": report.pushed,
            "studio_error": report.studio_error,
        },
    )


def _refresh_index(app: AppContext, report: RetrainReport) -> None:
    """With an active encoder, index the newly accepted lesions and the new pre-labels' boxes
    before the push, so readers' similar lesions come from the index, not on-the-fly encoding."""
    from labeler.jobs.similar import SimilarError, build_index

    with app.sessions() as session:
        if queries.active_model_id(session, kind=ENCODER_KIND) is None:
            return
    try:
        summary = build_index(app)
    except SimilarError as exc:
        report.index_error = str(exc)  # matches are a second opinion: never fail the retrain
        return
    report.indexed = summary.confirmed + summary.probes


def _event(app: AppContext, action: str, subject: str, detail: dict[str, Any]) -> None:
    with app.sessions.begin() as session:
        queries.record_event(session, actor=ACTOR, action=action, subject=subject, detail=detail)
