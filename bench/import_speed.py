"""Import throughput on a real dataset, against a single-process baseline measured in the same run.

    .venv/bin/python bench/import_speed.py --data ../shared/data/busbra --dataset busbra

Each configuration imports into a fresh LABELER_HOME; a re-import (everything already present)
is timed too. The issue's target: all 1875 BUS-BRA images in under 120 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from core.settings import Settings
from db import migrate
from db.engine import make_engine, make_session_factory
from labeler.importing.pipeline import run_import


def _run(data: Path, dataset: str, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as home:
        settings = Settings(
            _env_file=None,
            home=Path(home),
            data_root=data.parent,
            import_workers=workers,
            id_salt="bench",
            db_url="",
        )
        engine = make_engine(settings.db_url)
        migrate.upgrade(engine)
        sessions = make_session_factory(engine)
        start = time.perf_counter()
        first = run_import(data, dataset=dataset, settings=settings, sessions=sessions)
        cold = time.perf_counter() - start
        start = time.perf_counter()
        run_import(data, dataset=dataset, settings=settings, sessions=sessions)
        again = time.perf_counter() - start
        engine.dispose()
    assert not first.errors, first.errors[:3]
    return {"images": first.added, "seconds": cold, "reimport_seconds": again}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/busbra"))
    parser.add_argument("--dataset", default="busbra")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    data = args.data.resolve()
    baseline = _run(data, args.dataset, workers=1)
    tuned = _run(data, args.dataset, workers=args.workers)
    report = {
        "dataset": args.dataset,
        "images": tuned["images"],
        "baseline (1 worker) s": round(baseline["seconds"], 2),
        f"{args.workers} workers s": round(tuned["seconds"], 2),
        "images/s": round(tuned["images"] / tuned["seconds"], 1),
        "speedup vs 1 worker": round(baseline["seconds"] / tuned["seconds"], 2),
        "re-import s (nothing added)": round(tuned["reimport_seconds"], 2),
        "target s": 120,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
