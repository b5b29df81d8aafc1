"""Dashboard page render times on a large database, against the same pages on a small one.

    .venv/bin/python bench/dashboard_load.py [--reviews 100000] [--versions 20] [--repeats 3]

Seeds two fresh databases with bulk inserts: the large one (100k reviews by three readers,
20 model versions in one lineage, each with a stored evaluation, pre-labels of the active version
for every image) and a baseline with 1k reviews and the same versions. Each page is rendered with
AppTest from a cold Streamlit cache (the first visit after the TTL runs out; median of the
repeats) and once more warm. The target: every page under 2 s cold. Results go to
bench/results/dashboard_load.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st
from sqlalchemy import insert
from sqlalchemy.orm import Session
from streamlit.testing.v1 import AppTest

from bench.support.factories import val_metrics
from core.birads import Reading
from core.results import DetectionScores, EvaluationMetrics, Screening
from core.settings import Settings
from db import migrate
from db.engine import make_engine, make_session_factory
from db.models import (
    ActiveModel,
    Evaluation,
    Image,
    Label,
    ModelPromotion,
    ModelVersion,
    Patient,
    Prediction,
    ReferenceLabel,
    Review,
    TrainingRun,
)
from ml_backend.evaluation.metrics import binary_metrics, matrix_of, one_vs_rest, per_class_table

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "dashboards" / "app.py"
RESULTS = ROOT / "bench" / "results" / "dashboard_load.json"
PAGES = ("progress", "agreement", "models", "evaluation", "images")
READERS = ("ana", "ben", "cho")
CATEGORIES = ("1", "2", "3", "4", "5")
T0 = datetime(2026, 6, 1, tzinfo=UTC)
LIMIT_S = 2.0


def _box(rng: random.Random, category: str, *, probs: bool = False) -> dict[str, Any]:
    x, y = rng.uniform(0, 500), rng.uniform(0, 300)
    box: dict[str, Any] = {"xyxy": [x, y, x + 120, y + 90], "birads": category, "score": 0.9}
    if probs:
        p5 = rng.random()
        box["probs"] = {"2": 1 - p5, "5": p5}
    return box


def _at(days: float) -> datetime:
    return T0 + timedelta(days=days)


def _evaluation_payload(rng: random.Random) -> EvaluationMetrics:
    matrix = np.array([[rng.randint(0, 9) + 30 * (i == j) for j in range(5)] for i in range(5)])
    screening = np.array([[rng.randint(40, 60), rng.randint(5, 15)], [rng.randint(5, 15), 50]])
    return EvaluationMetrics(
        n_images=int(matrix.sum()),
        score_threshold=0.5,
        detection=DetectionScores(map50=rng.random(), lesion_map50=rng.random()),
        birads=per_class_table(CATEGORIES, matrix),
        screening=Screening(
            plain_4_counted_as=Reading.MALIGNANT,
            matrix=matrix_of(["benign", "malignant"], screening),
            rates=binary_metrics(one_vs_rest(screening, 1)),
            auc=rng.random(),
            sen_at_spe80=None,
            roc=None,
        ),
    )


def _versions(session: Session, rng: random.Random, n_versions: int) -> str:
    """A lineage of detector versions, each evaluated; the newest is active. Returns its id."""
    ids = [f"v{i:02d}" for i in range(n_versions)]
    session.execute(
        insert(ModelVersion),
        [
            {
                "id": vid,
                "kind": "detector",
                "path": f"models/{vid}",
                "parent_id": ids[i - 1] if i else None,
                "label_space": list(CATEGORIES),
                "config": {"name": "small"},
                "data_manifest_sha256": f"{i:064x}",
                "package_version": "0.1.0",
                "metrics": val_metrics(rng.random()),
                "created_at": _at(4 * i),
            }
            for i, vid in enumerate(ids)
        ],
    )
    session.execute(
        insert(TrainingRun),
        [
            {
                "kind": "detector",
                "status": "succeeded",
                "config": {},
                "model_version_id": vid,
                "n_train_images": 500 + 250 * i,
            }
            for i, vid in enumerate(ids)
        ],
    )
    rows = []
    for i, vid in enumerate(ids):
        rows.append(
            {
                "model_version_id": vid,
                "dataset": "all",
                "split": "test",
                "metrics": _evaluation_payload(rng),
                "created_at": _at(4 * i + 1),
            }
        )
    session.execute(insert(Evaluation), rows)
    session.execute(
        insert(ModelPromotion),
        [
            {
                "kind": "detector",
                "model_version_id": vid,
                "previous_version_id": ids[i - 1] if i else None,
                "action": "promote",
                "actor": "bench",
                "reason": "",
                "at": _at(4 * i + 1),
            }
            for i, vid in enumerate(ids)
        ],
    )
    session.add(ActiveModel(kind="detector", model_version_id=ids[-1]))
    return ids[-1]


def seed(session: Session, *, n_reviews: int, n_versions: int, seed_value: int = 0) -> int:
    """Bulk-insert a loop's worth of rows; returns the number of images."""
    rng = random.Random(seed_value)
    active = _versions(session, rng, n_versions)
    session.add(Patient(id=1, key="bench", source="bench"))
    rounds: list[tuple[int, int]] = []  # (image id, round): each gets three reviews
    image_id = 0
    while len(rounds) * len(READERS) < n_reviews:
        image_id += 1
        rounds.append((image_id, 1))
        if rng.random() < 0.1:
            rounds.append((image_id, 2))
    n_images = int(image_id * 1.2)  # a fifth of the pool not reviewed yet
    truth = {i: rng.choice(CATEGORIES) for i in range(1, n_images + 1)}
    session.execute(
        insert(Image),
        [
            {
                "id": i,
                "sha256": f"{i:064x}",
                "patient_id": 1,
                "width": 800,
                "height": 600,
                "mode": "L",
                "dataset": "busbra",
                "source_id": f"bus_{i}",
                "fold": i % 5 + 1,
                "split": "test" if i % 5 == 0 else "train",
                "png_path": f"images/{i}.png",
                "imported_at": _at(rng.uniform(0, 10)),
            }
            for i in range(1, n_images + 1)
        ],
    )
    session.execute(
        insert(ReferenceLabel),
        [
            {"image_id": i, "source": "busbra", "birads": c, "boxes": [_box(rng, c)]}
            for i, c in truth.items()
        ],
    )
    session.execute(
        insert(Prediction),
        [
            {
                "image_id": i,
                "model_version_id": active,
                "boxes": [_box(rng, c, probs=True)],
                "image_birads": c,
                "uncertainty": rng.random(),
                "created_at": _at(10 + i / n_images),
            }
            for i, c in truth.items()
            if i <= image_id or rng.random() < 0.5  # the rest: half pre-labeled, half not
        ],
    )
    reviews: list[dict[str, Any]] = []
    labels: list[dict[str, Any]] = []
    reviewed_again = {i for i, rnd in rounds if rnd == 2}  # their first round was rejected
    for i, rnd in rounds:
        start = 11 + 70 * i / image_id + 5 * (rnd - 1)
        for k, reader in enumerate(READERS):
            if len(reviews) == n_reviews:
                break
            category = truth[i] if rng.random() < 0.7 else rng.choice(CATEGORIES)
            reviews.append(
                {
                    "image_id": i,
                    "reader": reader,
                    "round": rnd,
                    "verdict": "accept" if category == truth[i] else "correct",
                    "boxes": [_box(rng, category)],
                    "image_birads": category,
                    "created_at": _at(start + k / 24),
                }
            )
        if rng.random() < 0.9:
            status = "rejected" if rnd == 1 and i in reviewed_again else "accepted"
            labels.append(
                {
                    "image_id": i,
                    "round": rnd,
                    "status": status,
                    "boxes": [],
                    "birads": truth[i],
                    "model_version_id": active,
                    "decided_at": _at(start + 1),
                }
            )
    session.execute(insert(Review), reviews)
    session.execute(insert(Label), labels)
    return n_images


@contextmanager
def database(*, n_reviews: int, n_versions: int) -> Iterator[tuple[int, float]]:
    """A fresh LABELER_HOME with a seeded database; yields (images, seconds to seed)."""
    with tempfile.TemporaryDirectory() as home:
        os.environ["LABELER_HOME"] = home
        os.environ["LABELER_DB_URL"] = ""
        settings = Settings(_env_file=None)
        engine = make_engine(settings.db_url)
        migrate.upgrade(engine)
        start = time.perf_counter()
        with make_session_factory(engine).begin() as session:
            n_images = seed(session, n_reviews=n_reviews, n_versions=n_versions) if n_reviews else 0
        seconds = time.perf_counter() - start
        engine.dispose()
        yield n_images, seconds


def render_s(page: str | None, *, cold: bool) -> float:
    """Seconds to render one page in a fresh session (None: the entry page)."""
    at = AppTest.from_file(APP, default_timeout=120).run()
    assert not at.exception, [e.value for e in at.exception]
    if cold:
        st.cache_data.clear()
    if page is not None:
        at.switch_page(f"views/{page}.py")
    start = time.perf_counter()
    at.run()
    seconds = time.perf_counter() - start
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]
    return seconds


def measure(repeats: int) -> dict[str, dict[str, int]]:
    out = {}
    for page in PAGES:
        cold = statistics.median(render_s(page, cold=True) for _ in range(repeats))
        out[page] = {
            "cold_ms": round(1000 * cold),
            "warm_ms": round(1000 * render_s(page, cold=False)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reviews", type=int, default=100_000)
    parser.add_argument("--versions", type=int, default=20)
    parser.add_argument("--baseline-reviews", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with database(n_reviews=0, n_versions=0):
        first_run = statistics.median(render_s(None, cold=True) for _ in range(args.repeats))
    with database(n_reviews=args.baseline_reviews, n_versions=args.versions) as (small, _):
        baseline = measure(args.repeats)
    with database(n_reviews=args.reviews, n_versions=args.versions) as (images, seeding):
        large = measure(args.repeats)
    pages = {
        page: large[page]
        | {
            "baseline_cold_ms": baseline[page]["cold_ms"],
            "ratio_vs_baseline": round(
                large[page]["cold_ms"] / max(baseline[page]["cold_ms"], 1), 2
            ),
        }
        for page in PAGES
    }
    report = {
        "reviews": args.reviews,
        "model_versions": args.versions,
        "images": images,
        "seed_s": round(seeding, 1),
        "baseline": f"the same page on a database with {args.baseline_reviews} reviews "
        f"({small} images), measured in the same run",
        "first_run_page_ms (empty database)": round(1000 * first_run),
        "pages": pages,
        "limit_ms": int(1000 * LIMIT_S),
        "all_pages_under_limit": all(p["cold_ms"] < 1000 * LIMIT_S for p in pages.values()),
        "cpu_count": os.cpu_count(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    for page, p in pages.items():
        print(
            f"{page:<11} cold {p['cold_ms']:>5} ms  warm {p['warm_ms']:>5} ms  "
            f"baseline {p['baseline_cold_ms']:>5} ms  x{p['ratio_vs_baseline']}"
        )


if __name__ == "__main__":
    main()
