"""`labeler models optimize`: build a version's int8 graph and choose its pre-label arithmetic.

Every path this CPU offers (fp32; bf16 where the CPU has it natively; int8 on the CPU) pre-labels
the validation split in this run, timed at the serving batch size and scored for lesion mAP@0.5.
The fastest path within `LABELER_PRELABEL_MAX_MAP_DROP` points of fp32 is recorded beside the
version (ml_backend.detector.precision), where `LABELER_PRELABEL_PRECISION=auto` finds it. The
int8 graph is calibrated on train-split images, never on the images it is judged on.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch

from core.errors import BadInputError
from db.models import Split
from labeler.context import AppContext
from labeler.jobs.evaluate import predict_usable, score_predictions
from labeler.jobs.inference import decode_png
from labeler.jobs.samples import LabeledImage, labeled_images
from labeler.jobs.versions import DETECTOR_KIND, NO4_KIND, intact_path, resolve
from labeler.lock import single_flight
from ml_backend.detector.frcnn import FasterRCNNDetector, to_input
from ml_backend.detector.int8 import feature_names, quantize_backbone, use_int8
from ml_backend.detector.optimize import native_bf16
from ml_backend.detector.precision import (
    PrecisionChoice,
    PrecisionTrial,
    choose,
    derived_folder,
    int8_graph,
    sha256,
    write_choice,
)
from ml_backend.detector.prelabel import load_for_prelabel
from ml_backend.runtime import flag_line

LOCK = ".optimize.lock"
TIMED_IMAGES = 8


def optimize_version(
    app: AppContext,
    version_id: str | None,
    *,
    calibration_images: int = 100,
    max_images: int | None = None,
    report: Callable[[str], None] = lambda line: None,
) -> PrecisionChoice:
    """Measure every path on the validation split and record the choice (see the module)."""
    registry, info = resolve(app, version_id)
    if info.kind not in (DETECTOR_KIND, NO4_KIND):
        raise BadInputError(f"{info.id} is a {info.kind} version: only detectors are optimized")
    folder = intact_path(registry, info.id)
    derived = derived_folder(app.settings.home, folder.name)
    with single_flight(derived.parent / LOCK):
        derived.mkdir(parents=True, exist_ok=True)
        val = _validation(app, max_images)
        detector = load_for_prelabel(folder, app.settings, "fp32")
        fp32 = _trial(app, detector, val, None, report)
        trials = [fp32]
        if native_bf16() and app.settings.device == "cpu":
            bf16 = load_for_prelabel(folder, app.settings, "bf16")
            trials.append(_trial(app, bf16, val, fp32, report))
        digest, names = None, tuple[str, ...]()
        if app.settings.device == "cpu":  # the fp32 detector becomes the int8 one, in place
            graph, digest = _quantize(app, detector, derived, calibration_images)
            names = tuple(feature_names(detector))
            use_int8(detector, graph, list(names))
            trials.append(_trial(app, detector, val, fp32, report))
        choice = PrecisionChoice(
            version=info.id,
            chosen=choose(trials),
            max_map_drop=app.settings.prelabel_max_map_drop,
            trials=tuple(trials),
            cpu=flag_line(),
            images=len(val),
            calibration_images=calibration_images,
            int8_sha256=digest,
            feature_names=names,
        )
        write_choice(derived, choice)
    return choice


def _validation(app: AppContext, max_images: int | None) -> list[LabeledImage]:
    """The validation images to score: all, or a fixed-seed sample of `max_images`."""
    with app.sessions() as session:
        val = labeled_images(session, split=Split.VAL)
        has_train = bool(labeled_images(session, split=Split.TRAIN))
    if not val or not has_train:
        raise BadInputError("optimizing needs labeled train and validation images: import some")
    if max_images is not None and len(val) > max_images:
        val = random.Random(0).sample(val, max_images)
    return val


def _trial(
    app: AppContext,
    detector: FasterRCNNDetector,
    val: list[LabeledImage],
    reference: PrecisionTrial | None,
    report: Callable[[str], None],
) -> PrecisionTrial:
    """One path on the validation images: lesion mAP@0.5 on all, time on a few in memory."""
    usable, preds = predict_usable(app, detector, val)
    metrics = score_predictions(app, detector.label_space, usable, preds)
    map50 = metrics.detection.lesion_map50  # None: no lesion box to score against
    drop: float | None = 0.0
    if reference is not None:
        base = reference.map50
        drop = None if map50 is None or base is None else 100 * (base - map50)
    trial = PrecisionTrial(
        precision=detector.precision,
        s_per_img=_seconds_per_image(app, detector, usable),
        map50=map50,
        map50_drop=drop,
        within_bound=drop is not None and drop <= app.settings.prelabel_max_map_drop,
    )
    report(f"{trial.line()} on {len(usable)} validation images")
    return trial


def _seconds_per_image(
    app: AppContext, detector: FasterRCNNDetector, images: list[LabeledImage]
) -> float:
    """Model time per image at the serving batch size: the median of 3 passes over up to
    TIMED_IMAGES decoded images (decoding is the same for every path, so it is left out)."""
    decoded = [decode_png(app.settings.home, im.png_path) for im in images[:TIMED_IMAGES]]
    size = app.settings.predict_batch_size
    batches = [decoded[i : i + size] for i in range(0, len(decoded), size)]
    detector.predict(batches[0])  # warm-up: first-call allocations, graph set-up
    passes = []
    for _ in range(3):
        start = time.perf_counter()
        for batch in batches:
            detector.predict(batch)
        passes.append((time.perf_counter() - start) / max(1, len(decoded)))
    return statistics.median(passes)


def calibration_draw(
    home: Path, png_paths: Sequence[str], count: int, size: int
) -> Iterator[torch.Tensor]:
    """`count` train images drawn with seed 0, as the model takes them (frcnn.to_input): the
    calibration set of the int8 graph (bench/detector_speed.py draws the same)."""
    for path in random.Random(0).sample(list(png_paths), min(count, len(png_paths))):
        yield to_input(decode_png(home, path), size)


def _quantize(
    app: AppContext, detector: FasterRCNNDetector, derived: Path, count: int
) -> tuple[Path, str]:
    """The int8 graph and its sha256, calibrated on `count` train images."""
    with app.sessions() as session:
        train = [im.png_path for im in labeled_images(session, split=Split.TRAIN)]
    size = detector.config.image_size
    staged = derived / f".int8-{os.getpid()}.onnx"
    try:
        quantize_backbone(detector, calibration_draw(app.settings.home, train, count, size), staged)
        digest = sha256(staged)
        final = int8_graph(derived, digest)
        os.replace(staged, final)
    finally:
        staged.unlink(missing_ok=True)  # a failed build leaves no partial graph
    return final, digest
