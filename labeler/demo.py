"""The one-command demo: models, pre-labels, evaluation, simulation (labeler.demo_models), then
Label Studio, the ML backend and the dashboard, all local.

Every step reuses what a previous run left: the import skips known images, active models,
stored evaluations and simulation points are kept, Label Studio keeps its SQLite database under
LABELER_HOME/studio, the project and reader accounts are updated, and tasks are pushed only for
images that have none.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from labeler.context import AppContext
from labeler.demo_models import STEPS, DemoModels, Steps, prepare
from labeler.demo_reviews import review_some
from labeler.services import Services, start_backend, start_dashboard, start_label_studio
from labeler.studio.readers import ReaderAccount


@dataclass
class DemoState:
    models: DemoModels = field(default_factory=DemoModels)
    project_url: str = ""
    tasks_created: int = 0
    readers: list[ReaderAccount] = field(default_factory=list)
    services: Services = field(default_factory=Services)


def bring_up(app: AppContext, *, epochs: int, say: Callable[[str], None]) -> DemoState:
    """Everything but the import; on failure the services started so far are stopped."""
    from labeler.studio.client import connect
    from labeler.studio.project import ensure_project
    from labeler.studio.push import push
    from labeler.studio.readers import ensure_readers

    steps = Steps(STEPS, say)
    state = DemoState(models=prepare(app, epochs=epochs, steps=steps))
    logs = app.settings.home / "logs"
    try:
        say("starting the ML backend")
        state.services.running.append(start_backend(app.settings, logs))
        say("starting Label Studio (about 20 s)")
        state.services.running.append(start_label_studio(app.settings))
        studio = connect(app.settings)
        project = ensure_project(studio, app.settings)
        state.readers = ensure_readers(studio, app.settings)
        state.tasks_created = push(
            app, studio, project.id, model_version=state.models.detector
        ).tasks_created
        steps.run(
            "simulated readers review a few pre-labels, then sync",
            5,
            lambda: review_some(app, studio, project.id, state.readers),
        )
        state.project_url = f"{studio.url}/projects/{project.id}/data"
        say("starting the dashboard")
        state.services.running.append(start_dashboard(app.settings, logs))
    except BaseException:
        state.services.stop()
        raise
    return state
