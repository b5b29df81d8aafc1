"""/predict latency of the running ML backend: cache hits from 3 concurrent clients.

    PYTHONPATH=. .venv/bin/python bench/predict_latency.py [--requests 300] [--clients 3]

A real `labeler serve` process on 127.0.0.1 over a fresh home with the bundled BUS-BRA sample, a
registered `small` detector, and cached pre-labels for half the images. The baseline, measured in
the same run, is a cache miss: the same request for an image without a cached prediction (the
model runs; the first miss also loads it, so it is reported apart). Target (issue 4): cached p95
under 50 ms with 3 concurrent clients.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from sqlalchemy import select

from bench.support.factories import (
    add_prelabels,
    import_sample,
    migrated,
    register_random_detector,
)
from bench.support.harness import free_port
from bench.support.samples import copy_sample
from core.birads import Birads
from core.settings import Settings
from db.models import Image
from labeler.services import start_backend
from labeler.studio.server import stop_process

RESULTS = Path(__file__).parent / "results" / "predict_latency.json"


def _percentiles(ms: list[float]) -> dict[str, float]:
    q = statistics.quantiles(ms, n=100)
    return {"p50": q[49], "p95": q[94], "p99": q[98], "mean": statistics.fmean(ms), "n": len(ms)}


def _timed(client: httpx.Client, body: dict[str, object]) -> float:
    start = time.perf_counter()
    response = client.post("/predict", json=body)
    elapsed = (time.perf_counter() - start) * 1000
    response.raise_for_status()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="cached requests per client")
    parser.add_argument("--clients", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "root").mkdir()
        os.environ.update(
            LABELER_HOME=str(base / "home"),
            LABELER_DATA_ROOT=str(base / "root"),
            LABELER_ID_SALT="bench",
            LABELER_DB_URL="",
            LABELER_BACKEND_URL=f"http://127.0.0.1:{free_port()}",
        )
        settings = Settings(_env_file=None)
        sessions = migrated(settings)
        import_sample(settings, sessions, copy_sample("busbra_mini", base / "root"), "busbra")
        version = register_random_detector(settings, sessions)
        with sessions() as session:
            images = session.scalars(select(Image).order_by(Image.id)).all()
            refs = [(i.id, f"/data/local-files/?d={i.png_path}") for i in images]
        cached, uncached = refs[: len(refs) // 2], refs[len(refs) // 2 :]
        add_prelabels(sessions, version, [i for i, _ in cached], Birads.B4A)
        backend = start_backend(settings, settings.home / "logs")
        try:
            report = _measure(settings.backend_url, cached, uncached, args)
        finally:
            assert backend.process is not None
            stop_process(backend.process)
    report["target_p95_ms"] = 50.0
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


def _measure(
    url: str,
    cached: list[tuple[int, str]],
    uncached: list[tuple[int, str]],
    args: argparse.Namespace,
) -> dict[str, object]:
    def body(ref: tuple[int, str]) -> dict[str, object]:
        return {"tasks": [{"id": ref[0], "data": {"image": ref[1], "image_id": ref[0]}}]}

    with httpx.Client(base_url=url, timeout=120) as client:
        first_miss = _timed(client, body(uncached[0]))  # includes loading the model
        misses = [_timed(client, body(ref)) for ref in uncached[1:11]]
        for ref in cached[:5]:
            _timed(client, body(ref))  # warm-up

    def worker(offset: int) -> list[float]:
        with httpx.Client(base_url=url, timeout=30) as client:
            return [
                _timed(client, body(cached[(offset + k) % len(cached)]))
                for k in range(args.requests)
            ]

    start = time.perf_counter()
    with ThreadPoolExecutor(args.clients) as pool:
        hits = [ms for part in pool.map(worker, range(args.clients)) for ms in part]
    wall = time.perf_counter() - start
    hit, miss = _percentiles(hits), _percentiles(misses)
    return {
        "clients": args.clients,
        "cached": hit,
        "cached_requests_per_s": len(hits) / wall,
        "baseline_cache_miss": miss,
        "first_miss_with_model_load_ms": first_miss,
        "miss_over_hit_p50": miss["p50"] / hit["p50"],
    }


if __name__ == "__main__":
    main()
