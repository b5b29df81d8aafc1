"""The one-command demo: model, pre-labels, Label Studio, ML backend and dashboard, all local.

Every step reuses what a previous run left: the import skips known images, an active detector
is kept, Label Studio keeps its SQLite database under LABELER_HOME/studio, the project and reader
accounts are updated, and tasks are pushed only for images that have none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from labeler.context import AppContext
from labeler.services import Services, start_backend, start_dashboard, start_label_studio
from labeler.studio.readers import ReaderAccount


@dataclass
class DemoState:
    model_version: str = ""
    trained: bool = False
    predicted: int = 0
    project_url: str = ""
    tasks_created: int = 0
    readers: list[ReaderAccount] = field(default_factory=list)
    admin: tuple[str, str] = ("", "")
    services: Services = field(default_factory=Services)


def ensure_model(app: AppContext, *, epochs: int, say: Callable[[str], None]) -> tuple[str, bool]:
    """The active detector, or a small one trained on the sample (about 1.5 min per epoch)."""
    from labeler.jobs.train import make_config, train_detector
    from labeler.progress import TrainProgress
    from ml_backend.registry import ModelRegistry
    from ml_backend.registry.kinds import DETECTOR_KIND

    active = ModelRegistry.for_settings(app.settings, app.sessions).active(DETECTOR_KIND)
    if active is not None:
        return active.id, False
    say(f"training the small detector on the sample ({epochs} epoch(s), CPU: a few minutes)")
    config = make_config("small", exclude_4=False, epochs=epochs)
    with TrainProgress() as hooks:
        out = train_detector(app, config=config, exclude_4=False, resume=True, hooks=hooks)
    return out.version_id, True


def bring_up(app: AppContext, *, epochs: int, say: Callable[[str], None]) -> DemoState:
    """Everything but the import; on failure the services started so far are stopped."""
    from labeler.jobs.predict import predict_pool
    from labeler.studio.client import connect
    from labeler.studio.project import ensure_project
    from labeler.studio.push import push
    from labeler.studio.readers import ensure_readers

    state = DemoState()
    state.model_version, state.trained = ensure_model(app, epochs=epochs, say=say)
    say(f"pre-labeling with {state.model_version}")
    state.predicted = predict_pool(app, version_id=state.model_version).predicted
    logs = app.settings.home / "logs"
    try:
        say("starting the ML backend")
        state.services.running.append(start_backend(app.settings, logs))
        say("starting Label Studio (the first start migrates its database: about a minute)")
        state.services.running.append(start_label_studio(app.settings))
        studio = connect(app.settings)
        project = ensure_project(studio, app.settings)
        state.readers = ensure_readers(studio, app.settings)
        state.tasks_created = push(
            app, studio, project.id, model_version=state.model_version
        ).tasks_created
        state.project_url = f"{studio.url}/projects/{project.id}/data"
        state.admin = (
            app.settings.studio_admin_email,
            app.settings.secret("studio_admin_password"),
        )
        say("starting the dashboard")
        state.services.running.append(start_dashboard(app.settings, logs))
    except BaseException:
        state.services.stop()
        raise
    return state
