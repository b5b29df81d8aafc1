"""The cron job: enough new accepted labels -> fine-tune -> evaluate -> gate -> promote ->
pre-label the pool -> tell Label Studio. Safe to run every few minutes.

Single-flight through `labeler.lock`. Training runs in a spawned child (`train_child`), which
resumes the last unfinished run, so a kill leaves a checkpoint the next run resumes from. The
child holds the retrain lock too (it inherits the descriptor) and dies with this process, even
after `kill -9`; the run folder has its own lock held by the trainer, so no two trainers ever
share it. Both the detector and the BI-RADS-4-excluded model pass the same gate: the candidate
is not worse than the active version on the same test images (the active one is scored again
when the test split changed). The old version serves until the one atomic step that moves the
active pointer; a run killed after that finds the new version's missing pre-labels at its next
start and finishes them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from sqlalchemy.orm import Session

from core.results import EvaluationMetrics, GateMetric
from db.models import Split
from db.queries import evaluations as evaluation_queries
from db.queries import events as event_queries
from db.queries import labels as label_queries
from db.queries import predictions as prediction_queries
from db.queries import versions as version_queries
from labeler.context import AppContext
from labeler.jobs.evaluate import ALL, current_manifest, evaluate_version
from labeler.jobs.optimize import optimize_version
from labeler.jobs.predict import predict_pool
from labeler.jobs.train_child import TrainRequest, train_in_child
from labeler.jobs.versions import intact_path
from labeler.lock import HeldLock, single_flight
from ml_backend.registry import ModelRegistry
from ml_backend.registry.kinds import DETECTOR_KIND, ENCODER_KIND, NO4_KIND

ACTOR = "labeler retrain"
OPTIMIZE_IMAGES = 200  # validation images the nightly precision check scores


@dataclass(frozen=True)
class RetrainPlan:
    run: bool
    reason: str
    active: str | None
    new_labels: int
    threshold: int
    unfinished_prelabels: int


@dataclass(frozen=True)
class GateDecision:
    """Candidate against active on the same test images (`test_manifest_sha256`)."""

    metric: GateMetric
    active: float | None
    candidate: float | None
    passed: bool
    reason: str
    test_manifest_sha256: str


@dataclass
class RetrainReport:
    plan: RetrainPlan
    candidate: str | None = None
    gate: GateDecision | None = None
    promoted: bool = False
    no4_candidate: str | None = None
    no4_gate: GateDecision | None = None
    no4: str | None = None  # the BI-RADS-4-excluded version promoted by this run
    predicted: int = 0
    pushed: dict[str, int] | None = None
    studio_error: str | None = None
    indexed: int | None = None  # lesion boxes in the rebuilt similar-lesion index
    index_error: str | None = None
    precision: dict[str, str] = field(default_factory=dict)  # version -> chosen arithmetic


def make_plan(app: AppContext, *, force: bool) -> RetrainPlan:
    registry = ModelRegistry.for_settings(app.settings, app.sessions)
    active = registry.active(DETECTOR_KIND)
    threshold = app.settings.retrain_min_new_labels
    with app.sessions() as session:
        since = active.created_at if active else None
        new = label_queries.count_accepted_since(session, since=since)
        asked = _requested_since_last_run(session)
        todo = (
            len(prediction_queries.images_without_prediction(session, model_version_id=active.id))
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
    asked = event_queries.latest_event_at(session, action="training_requested")
    ran = event_queries.latest_event_at(session, action="retrain_started")
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
        report.candidate, report.gate = fine_tune_and_gate(
            app, active=plan.active, exclude_4=False, lock=lock, say=say
        )
        if not report.gate.passed:
            return report
        report.promoted = True
        _retrain_no4(app, report, say, lock)
        _optimize(app, report, say)
        _prelabel_and_push(app, report.candidate, report)
        _event(app, "retrain_finished", report.candidate, {"predicted": report.predicted})
        return report


def fine_tune_and_gate(
    app: AppContext,
    *,
    active: str,
    exclude_4: bool,
    lock: HeldLock | None,
    say: Callable[[str], None],
    actor: str = ACTOR,
) -> tuple[str, GateDecision]:
    """One turn of the loop, shared by `retrain` and `simulate`: fine-tune `active` in a child,
    gate the candidate against it on the test split, promote it when it passes."""
    candidate = train_version(app, parent=active, exclude_4=exclude_4, lock=lock, say=say)
    say(f"evaluating {candidate} against {active} on the test split")
    decision = gate(app, active=active, candidate=candidate)
    action = "retrain_no4_gated" if exclude_4 else "retrain_gated"
    _event(app, action, candidate, dataclasses.asdict(decision), actor=actor)
    if decision.passed:
        ModelRegistry.for_settings(app.settings, app.sessions).promote(
            candidate, actor=actor, reason=decision.reason
        )
    else:
        say(f"kept {active}: {decision.reason}")
    return candidate, decision


def train_version(
    app: AppContext,
    *,
    parent: str,
    exclude_4: bool,
    lock: HeldLock | None,
    say: Callable[[str], None],
) -> str:
    """Fine-tune `parent` in a spawned child (resuming its unfinished run); the new version."""
    request = TrainRequest(
        settings=app.settings,
        parent=parent,
        exclude_4=exclude_4,
        epochs=app.settings.retrain_epochs,
        include_reference=app.settings.retrain_include_reference,
        resume=True,
        threads=torch.get_num_threads(),
    )
    return train_in_child(request, lock=lock, say=say).version_id


def gate_passes(active: float | None, candidate: float | None) -> bool:
    """Not worse: a candidate without a value never passes; an active without one always does."""
    if candidate is None:
        return False
    return active is None or candidate >= active


def gate(app: AppContext, *, active: str, candidate: str) -> GateDecision:
    """Both versions scored on today's test images; a stored evaluation counts only when it was
    made on exactly these images (same manifest hash), else the version is scored again."""
    name = app.settings.retrain_gate
    manifest = current_manifest(app, Split.TEST)
    values = {v: scored_on_test(app, v, manifest).gate_value(name) for v in (active, candidate)}
    passed = gate_passes(values[active], values[candidate])
    verdict = "not worse" if passed else "worse"
    return GateDecision(
        metric=name,
        active=values[active],
        candidate=values[candidate],
        passed=passed,
        reason=f"{name} {values[candidate]} vs {values[active]} ({verdict})",
        test_manifest_sha256=manifest,
    )


def scored_on_test(app: AppContext, version: str, manifest: str) -> EvaluationMetrics:
    """The version's test-split metrics on the images `manifest` names, scored if need be."""
    stored = _stored_test_metrics(app, version)
    fp32 = stored is not None and (stored.prelabel is None or stored.prelabel.precision == "fp32")
    if stored is not None and fp32 and stored.split_manifest_sha256 == manifest:
        return stored
    # Models are compared in the reference arithmetic, whatever path each pre-labels in.
    return evaluate_version(app, version_id=version, split=Split.TEST, precision="fp32").metrics


def _stored_test_metrics(app: AppContext, version: str) -> EvaluationMetrics | None:
    with app.sessions() as session:
        stored = [
            e.metrics
            for e in evaluation_queries.evaluations(session, model_version_id=version)
            if e.split == Split.TEST.value and e.dataset == ALL  # not one dataset's
        ]
    return stored[-1] if stored else None


def _optimize(app: AppContext, report: RetrainReport, say: Callable[[str], None]) -> None:
    """Choose the promoted versions' pre-label arithmetic (labeler.jobs.optimize) before they
    pre-label the pool; without it they pre-label in fp32."""
    if not app.settings.retrain_optimize:
        return
    for version in (v for v in (report.candidate, report.no4) if v is not None):
        say(f"measuring the pre-label arithmetic of {version} on the validation split")
        choice = optimize_version(app, version, max_images=OPTIMIZE_IMAGES)
        report.precision[version] = choice.chosen


def _retrain_no4(
    app: AppContext, report: RetrainReport, say: Callable[[str], None], lock: HeldLock
) -> None:
    """The 4A/4B splitter follows the detector, through the same gate."""
    registry = ModelRegistry.for_settings(app.settings, app.sessions)
    active = registry.active(NO4_KIND)
    if not app.settings.retrain_no4 or active is None:
        return
    say(f"fine-tuning the 4A/4B splitter {active.id}")
    report.no4_candidate, report.no4_gate = fine_tune_and_gate(
        app, active=active.id, exclude_4=True, lock=lock, say=say
    )
    if report.no4_gate.passed:
        report.no4 = report.no4_candidate


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
        if version_queries.active_model_id(session, kind=ENCODER_KIND) is None:
            return
    try:
        summary = build_index(app)
    except SimilarError as exc:
        report.index_error = str(exc)  # matches are a second opinion: never fail the retrain
        return
    report.indexed = summary.confirmed + summary.probes


def _event(
    app: AppContext, action: str, subject: str, detail: dict[str, Any], *, actor: str = ACTOR
) -> None:
    with app.sessions.begin() as session:
        event_queries.record_event(
            session, actor=actor, action=action, subject=subject, detail=detail
        )
