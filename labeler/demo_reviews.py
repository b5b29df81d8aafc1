"""The demo's readers at work: the three reader accounts review a few pre-labels in Label Studio.

Without a review the Progress and Agreement pages have nothing to show, and `labeler sync` is
never seen. So the demo has its reader accounts cross-check the first `N_IMAGES` tasks through
Label Studio's API, as readers would through the browser, and then runs the real sync. The
readers are simulated, and say so in the summary line: reader 1 and reader 2 accept a pre-label
whose BI-RADS category is the reference label's (4A/4B/4C read as 4) and reject it otherwise;
reader 3 accepts every pre-label, so consensus and kappa have a disagreement to show.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx

from core.birads import Birads
from core.text import counts
from db.queries import predictions as prediction_queries
from db.queries import reviews as review_queries
from labeler.context import AppContext
from labeler.demo_models import Step
from labeler.jobs.samples import labeled_images
from labeler.studio.client import Studio
from labeler.studio.readers import ReaderAccount
from ml_backend.studio.format import BOXES, IMAGE, REVIEW

N_IMAGES = 6
ACCEPT, REJECT = "Pre-label correct", "Reject"


def review_some(
    app: AppContext, studio: Studio, project_id: int, readers: Sequence[ReaderAccount]
) -> Step:
    """Post the simulated readers' annotations and sync them; reused once reviews exist."""
    from labeler.studio.sync import sync

    with app.sessions() as session:
        if review_queries.review_rounds(session):
            return Step("reviews from an earlier run", reused=True)
        reference = {im.image_id: im.image_category for im in labeled_images(session, split=None)}
    tasks = _first_tasks(studio, project_id)
    posted = 0
    for task in tasks:
        agrees = _matches_reference(app, task, reference)
        for k, reader in enumerate(readers):
            accepts = agrees or k == 2  # reader 3 accepts everything
            _annotate(studio.url, reader.token, task, ACCEPT if accepts else REJECT)
            posted += 1
    summary = sync(app, studio, project_id)
    return Step(
        f"{posted} reviews by {len(readers)} simulated readers on {len(tasks)} images; sync: "
        f"{summary.reviews_new} new reviews, labels {counts(summary.labels)}"
    )


def _matches_reference(app: AppContext, task: dict[str, Any], reference: dict[int, Birads]) -> bool:
    """Whether the pre-label's category is the reference label's (4A/4B/4C read as 4)."""
    image_id, version = int(task["data"]["image_id"]), str(task["data"]["model_version"])
    with app.sessions() as session:
        shown = prediction_queries.cached_prediction(
            session, image_id=image_id, model_version_id=version
        )
        truth = reference.get(image_id)
    return truth is not None and shown is not None and shown.image_birads.coarse is truth.coarse


def _first_tasks(studio: Studio, project_id: int) -> list[dict[str, Any]]:
    with studio.http() as client:
        body = client.get(
            "/api/tasks", params={"project": project_id, "fields": "all", "page_size": 100}
        ).raise_for_status()
    found = body.json()
    tasks: list[dict[str, Any]] = found["tasks"] if isinstance(found, dict) else found
    with_prelabel = [t for t in tasks if t.get("predictions")]
    return sorted(with_prelabel, key=lambda t: int(t["id"]))[:N_IMAGES]


def _regions(task: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in task["predictions"][-1]["result"] if r.get("from_name") == BOXES]


def _annotate(url: str, token: str, task: dict[str, Any], choice: str) -> None:
    regions = [{k: v for k, v in r.items() if k != "score"} for r in _regions(task)]
    review = {
        "from_name": REVIEW,
        "to_name": IMAGE,
        "type": "choices",
        "value": {"choices": [choice]},
    }
    httpx.post(
        f"{url}/api/tasks/{task['id']}/annotations/",
        headers={"Authorization": f"Token {token}"},
        json={"result": [*regions, review] if choice == ACCEPT else [review], "lead_time": 5.0},
        timeout=30,
    ).raise_for_status()
