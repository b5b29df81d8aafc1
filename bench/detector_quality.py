"""Train the small detector on BUS-BRA (official patient-disjoint folds) within a CPU budget,
then print the evaluation of the fixed test fold: COCO mAP, lesion recall, Tables I and II.

    .venv/bin/python bench/detector_quality.py --data ../shared/data/busbra --budget-min 60

The epoch count is chosen to fit the budget: a few real training steps are timed first, and the
cosine schedule gets the number of epochs that fit after reserving time for evaluation.
BUS-BRA has no 4A/4B labels, so Table III is not part of this benchmark.
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from core.settings import Settings
from db.models import Split
from labeler.context import AppContext
from labeler.importing.pipeline import run_import
from labeler.jobs.evaluate import evaluate_version
from labeler.jobs.samples import labeled_images, training_samples
from labeler.jobs.train import make_config, train_detector
from labeler.progress import TrainProgress
from ml_backend.detector.config import DetectorConfig
from ml_backend.detector.data import DetectionDataset, collate
from ml_backend.detector.frcnn import FasterRCNNDetector
from ml_backend.runtime import flush_denormals


def seconds_per_image(
    app: AppContext, config: DetectorConfig, steps: int = 5, warmup: int = 2
) -> tuple[float, float]:
    """(train s/img, eval s/img) measured on real training images."""
    with app.sessions() as session:
        images = labeled_images(session, split=Split.TRAIN)
    samples, _ = training_samples(images, config, exclude_4=False)
    bs = config.train.batch_size
    data = DetectionDataset(
        samples[: bs * (steps + warmup)],
        app.settings.home,
        size=config.image_size,
        box_categories=config.box_categories,
        augment=True,
    )
    model = FasterRCNNDetector(config).model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    batches = [collate([data[i * bs + j] for j in range(bs)]) for i in range(steps + warmup)]
    for i, (imgs, targets) in enumerate(batches):
        if i == warmup:  # the first steps allocate and are slow: not timed
            start = time.perf_counter()
        loss = sum(model(imgs, targets).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
    train_s = (time.perf_counter() - start) / (steps * bs)
    model.eval()
    with torch.inference_mode():
        start = time.perf_counter()
        model(batches[0][0])
    return train_s, (time.perf_counter() - start) / bs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/busbra"))
    parser.add_argument("--budget-min", type=float, default=60.0)
    parser.add_argument("--home", type=Path, default=None, help="keep the run here (default: temp)")
    args = parser.parse_args()
    flush_denormals()
    started = time.perf_counter()
    home = args.home or Path(tempfile.mkdtemp(prefix="detector-quality-"))
    settings = Settings(_env_file=None, home=home, data_root=args.data.resolve().parent, db_url="")
    app = AppContext(settings)
    app.ensure_schema()
    imported = run_import(args.data, dataset="busbra", settings=settings, sessions=app.sessions)
    base = make_config("small", exclude_4=False, epochs=None)
    train_s, eval_s = seconds_per_image(app, base)
    n = imported.splits
    reserve = (n["val"] + n["test"]) * eval_s * 1.3 + 120
    budget = args.budget_min * 60 - (time.perf_counter() - started) - reserve
    epochs = max(1, math.floor(budget / (n["train"] * train_s * 1.05)))
    config = make_config("small", exclude_4=False, epochs=epochs)
    t0 = time.perf_counter()
    with TrainProgress() as hooks:  # a line at most every 30 s, and at each epoch's end
        outcome = train_detector(app, config=config, exclude_4=False, resume=False, hooks=hooks)
    train_min = (time.perf_counter() - t0) / 60
    result = evaluate_version(app, version_id=outcome.version_id, split=Split.TEST)
    report: dict[str, Any] = {
        "config": "small",
        "image_size": config.image_size,
        "epochs": epochs,
        "train_images": outcome.n_train_images,
        "splits": dict(n),
        "measured_train_s_per_img": round(train_s, 3),
        "measured_eval_s_per_img": round(eval_s, 3),
        "train_minutes": round(train_min, 1),
        "total_minutes": round((time.perf_counter() - started) / 60, 1),
        "version": outcome.version_id,
        "home": str(home),
        "test": result.metrics.model_dump(mode="json"),
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
