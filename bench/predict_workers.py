"""`labeler predict` throughput with images decoded in 1 against 2 worker processes, same run.

    PYTHONPATH=. .venv/bin/python bench/predict_workers.py [--config small] [--rounds 2]

A fresh home in a temp folder with the bundled sample imported (62 BUS-BRA and 26
BrEaST-Lesions_USG images) and one random-init detector of `--config`, registered again for each
timed run (the same weights: every run pre-labels the whole pool, and all must store the same
pre-labels, which is checked). Each run is the real command, `labeler predict --model V
--workers N --json` in its own process, timed from start to exit (start-up and model load
included, as a user waits for them). In-process decoding (0 workers) is timed too, as the
reference, and decoding alone (no model, starting the workers included) shows what the workers
cost and how fast they can feed a model. With `--rounds` above 1 the order of the runs
alternates and each count keeps its best round.

Only the standard library is imported at the top: a spawned worker imports this module again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

SAMPLES = (("busbra_mini", "busbra"), ("breast_lesions_usg_mini", "breast-lesions-usg"))
WORKERS = (0, 1, 2)


def _env(base: Path) -> dict[str, str]:
    """The temp home for this process and the `labeler` processes it starts."""
    return {
        "LABELER_HOME": str(base / "home"),
        "LABELER_DATA_ROOT": str(base / "root"),
        "LABELER_ID_SALT": "bench",
        "LABELER_DB_URL": "",
        "LABELER_OCR": "off",
    }


def _import_sample(base: Path) -> int:
    """Import the bundled sample (as `labeler demo` does); the number of images."""
    from bench.support.factories import import_sample, migrated
    from bench.support.samples import copy_sample
    from core.settings import Settings

    (base / "root").mkdir()
    settings = Settings(_env_file=None)
    sessions = migrated(settings)
    for name, dataset in SAMPLES:
        import_sample(settings, sessions, copy_sample(name, base / "root"), dataset)
    return len(_pngs(settings.home))


def _pngs(home: Path) -> list[str]:
    return sorted(str(p.relative_to(home)) for p in (home / "images").rglob("*.png"))


def _decode_seconds(home: Path, workers: int, batch_size: int) -> float:
    """Decoding the whole pool alone, starting the workers included."""
    from labeler.jobs.inference import decoded_batches

    paths = _pngs(home)
    start = time.perf_counter()
    for _ in decoded_batches(home, paths, batch_size=batch_size, workers=workers):
        pass
    return time.perf_counter() - start


def _register(config: str) -> Callable[[], str]:
    """A function registering one random-init detector's weights as a new active version."""
    from bench.support.factories import migrated, register_detector
    from core.settings import Settings
    from ml_backend.detector.config import load_config
    from ml_backend.detector.frcnn import FasterRCNNDetector

    settings = Settings(_env_file=None)
    sessions = migrated(settings)
    detector = FasterRCNNDetector(load_config(config))
    return lambda: register_detector(settings, sessions, detector)


def _cli_run(version: str, workers: int) -> tuple[float, list[Any]]:
    """Seconds of one `labeler predict` process over the whole pool, and what it pre-labeled."""
    script = Path(sys.executable).parent / "labeler"  # what users run (workers import it again)
    cli = [str(script)] if script.is_file() else [sys.executable, "-m", "labeler.cli"]
    argv = [*cli, "predict", "--model", version, "--json"]
    start = time.perf_counter()
    done = subprocess.run([*argv, "--workers", str(workers)], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"labeler predict failed ({done.returncode}): {done.stderr[-2000:]}")
    images: list[Any] = json.loads(done.stdout)["images"]
    return seconds, images


def _measure(config: str, rounds: int) -> tuple[dict[int, float], bool]:
    """Best seconds per worker count, and whether every run stored the same pre-labels."""
    register = _register(config)
    best: dict[int, float] = {}
    outputs: list[list[Any]] = []
    for r in range(rounds):
        for workers in WORKERS if r % 2 == 0 else WORKERS[::-1]:
            seconds, images = _cli_run(register(), workers)
            best[workers] = min(seconds, best.get(workers, seconds))
            outputs.append(images)
            print(f"  round {r + 1}, {workers} workers: {seconds:.1f} s", file=sys.stderr)
    return best, all(o == outputs[0] for o in outputs)


def _report(
    config: str, images: int, best: dict[int, float], decode: dict[int, float]
) -> dict[str, Any]:
    rate = {w: images / s for w, s in best.items()}
    return {
        "config": config,
        "images": images,
        "cores": os.cpu_count(),
        **{f"{w} workers images/s": round(rate[w], 2) for w in WORKERS},
        **{f"{w} workers s": round(best[w], 1) for w in WORKERS},
        "ratio 2 workers / 1 worker": round(rate[2] / rate[1], 3),
        "ratio 1 worker / in-process": round(rate[1] / rate[0], 3),
        **{f"decode only, {w} workers s": round(decode[w], 2) for w in WORKERS},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--config", default="small", choices=["tiny", "small", "r101-800"])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=4)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(_env(Path(tmp)), LABELER_PREDICT_BATCH_SIZE=str(args.batch_size))
        images = _import_sample(Path(tmp))
        home = Path(tmp) / "home"
        decode = {w: _decode_seconds(home, w, args.batch_size) for w in WORKERS}
        best, identical = _measure(args.config, args.rounds)
    report = _report(args.config, images, best, decode)
    report["same pre-labels in every run"] = identical
    report["load average before / after"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
