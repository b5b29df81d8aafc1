"""Query strategies: score each pool image (higher = more informative) and rank the pool.

Every strategy is a small class behind the `Strategy` Protocol; `rank` is the one place that
turns scores into an order (ties broken by image id, so a queue never reshuffles by chance).

Class distributions keep background as an outcome: a detection's `probs` leave out background,
so its mass is 1 - sum(probs). A low-score box is then a *confident* "not a lesion" instead of a
spread over BI-RADS categories, which keeps the many near-threshold boxes of a detector from
making every image look uncertain.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal, Protocol

import numpy as np
import numpy.typing as npt

from ml_backend.detector.interface import Detection, ImagePrediction
from ml_backend.evaluation.matching import iou_matrix
from ml_backend.prelabel.category import ShownBoxes, image_category

Features = npt.NDArray[np.float32]
Aggregate = Literal["max", "mean", "sum"]
Need = Literal["flipped", "features"]
"""What a strategy reads beyond the prediction: `PoolImage.flipped`, or `PoolImage.features`
(then its `labeled=` option takes the labeled set's features from the same extractor)."""


@dataclass(frozen=True)
class PoolImage:
    """One unlabeled image with what the strategies may look at.

    `flipped` is the prediction on the horizontally flipped image with boxes already mapped back
    to this image's frame (`features.flip_predictions` returns exactly that; `features.mirror`
    maps a raw one). `width` is the image width in pixels, what that mapping needs.
    """

    image_id: int
    prediction: ImagePrediction
    width: int
    flipped: ImagePrediction | None = None
    features: Features | None = None


class Strategy(Protocol):
    name: str
    needs: ClassVar[frozenset[Need]]

    def scores(self, pool: Sequence[PoolImage]) -> list[float]:
        """One score per pool image, in pool order; higher = ask a reader sooner."""
        ...


def rank(strategy: Strategy, pool: Sequence[PoolImage], k: int | None = None) -> list[int]:
    """Image ids, most informative first; equal scores go by ascending image id."""
    scores = strategy.scores(pool)
    if len(scores) != len(pool):
        raise ValueError(f"{strategy.name} gave {len(scores)} scores for {len(pool)} images")
    order = sorted(
        zip(scores, (p.image_id for p in pool), strict=True), key=lambda s: (-s[0], s[1])
    )
    ids = [image_id for _, image_id in order]
    return ids if k is None else ids[:k]


@dataclass(frozen=True)
class RandomStrategy:
    """The baseline: a uniform score drawn from (seed, image id), so pool order does not matter."""

    seed: int = 0
    name = "random"
    needs: ClassVar[frozenset[Need]] = frozenset()

    def scores(self, pool: Sequence[PoolImage]) -> list[float]:
        return [float(np.random.default_rng([self.seed, p.image_id]).random()) for p in pool]


def class_distribution(det: Detection) -> npt.NDArray[np.float64]:
    """The box's probabilities over its categories plus background (the rest), summing to 1.

    A box stored without its probability vector counts as its own score for its category.
    """
    values = list(det.probs.values()) if det.probs else [det.score]
    probs = np.clip(np.array(values, dtype=np.float64), 0.0, None)
    full = np.append(probs, max(0.0, 1.0 - float(probs.sum())))
    total = float(full.sum())
    return full / total if total > 0 else np.full(full.shape, 1.0 / full.size)


@dataclass(frozen=True)
class _BoxUncertainty:
    """Per-box uncertainty in [0, 1], aggregated per image.

    `aggregate`: "max" (default; the most doubtful lesion decides), "mean" or "sum" over boxes.
    `empty`: the score of an image with no detection; 1.0 (the top of the scale) because the
    model saw nothing there, and a missed lesion is the costliest error to leave unreviewed.
    """

    aggregate: Aggregate = "max"
    empty: float = 1.0
    needs: ClassVar[frozenset[Need]] = frozenset()

    def box(self, dist: npt.NDArray[np.float64]) -> float:
        raise NotImplementedError

    def scores(self, pool: Sequence[PoolImage]) -> list[float]:
        return [self.image(p.prediction) for p in pool]

    def image(self, prediction: ImagePrediction) -> float:
        values = [self.box(class_distribution(d)) for d in prediction.detections]
        if not values:
            return self.empty
        return float(_AGGREGATES[self.aggregate](values))


_AGGREGATES: dict[str, Callable[[list[float]], float]] = {
    "max": max,
    "mean": lambda v: sum(v) / len(v),
    "sum": sum,
}


@dataclass(frozen=True)
class LeastConfidence(_BoxUncertainty):
    """1 - the top probability of the box."""

    name = "least-confidence"

    def box(self, dist: npt.NDArray[np.float64]) -> float:
        return 1.0 - float(dist.max())


@dataclass(frozen=True)
class Margin(_BoxUncertainty):
    """1 - (p1 - p2): two outcomes nearly tied is the most doubtful box."""

    name = "margin"

    def box(self, dist: npt.NDArray[np.float64]) -> float:
        top2 = np.sort(dist)[-2:]
        return 1.0 - float(top2[1] - top2[0])


@dataclass(frozen=True)
class Entropy(_BoxUncertainty):
    """Shannon entropy of the box's distribution, divided by log(outcomes) to lie in [0, 1]."""

    name = "entropy"

    def box(self, dist: npt.NDArray[np.float64]) -> float:
        nonzero = dist[dist > 0]
        return float(-(nonzero * np.log(nonzero)).sum() / math.log(dist.size))


@dataclass(frozen=True)
class FlipDisagreement:
    """Flip-TTA: (image category changed ? 1 : 0) + (1 - IoU of the two top boxes), in [0, 2].

    The top box is the first at or above `threshold`, the one that sets the image category.
    Both empty: IoU 1 (they agree); one empty: IoU 0.
    """

    threshold: float = 0.0
    name = "flip"
    needs: ClassVar[frozenset[Need]] = frozenset({"flipped"})

    def scores(self, pool: Sequence[PoolImage]) -> list[float]:
        return [self.image(p) for p in pool]

    def image(self, item: PoolImage) -> float:
        if item.flipped is None:
            raise ValueError(f"image {item.image_id} has no flipped prediction")
        a, b = item.prediction, item.flipped
        top = ShownBoxes(self.threshold, 1)  # the top box's category, as before
        changed = image_category(a.detections, top).category != (
            image_category(b.detections, top).category
        )
        return float(changed) + 1.0 - self._top_iou(a, b)

    def _top_iou(self, a: ImagePrediction, b: ImagePrediction) -> float:
        top_a, top_b = self._top(a), self._top(b)
        if top_a is None or top_b is None:
            return 1.0 if top_a is top_b else 0.0
        return float(iou_matrix([top_a.xyxy], [top_b.xyxy])[0, 0])

    def _top(self, prediction: ImagePrediction) -> Detection | None:
        return next((d for d in prediction.detections if d.score >= self.threshold), None)


class CoreSet:
    """Diversity: greedy k-center on pooled features, the labeled set's features as centers.

    Each step picks the pool image farthest (Euclidean) from every center so far and makes it a
    center. `scores` runs the greedy selection over the whole pool and returns descending scores
    in selection order (first pick = len(pool)). Equal distances go to the lower image id. With
    no labeled set the first pick is the image farthest from the pool's mean.
    """

    name = "coreset"
    needs: ClassVar[frozenset[Need]] = frozenset({"features"})

    def __init__(self, labeled: npt.ArrayLike) -> None:
        self.labeled = np.asarray(labeled, dtype=np.float64)
        if self.labeled.size == 0:
            self.labeled = np.zeros((0, 0))  # nothing labeled yet
        if self.labeled.ndim != 2:
            raise ValueError(f"labeled features must be 2-D (n, dim), got {self.labeled.shape}")

    def scores(self, pool: Sequence[PoolImage]) -> list[float]:
        if not pool:
            return []
        by_id = sorted(range(len(pool)), key=lambda i: pool[i].image_id)
        points = self._points([pool[i] for i in by_id])
        nearest = self._initial_distances(points)
        scores = [0.0] * len(pool)
        for step in range(len(pool)):
            pick = int(np.argmax(nearest))  # the first maximum: lowest image id
            scores[by_id[pick]] = float(len(pool) - step)
            nearest = np.minimum(nearest, np.linalg.norm(points - points[pick], axis=1))
            nearest[pick] = -1.0  # never picked twice
        return scores

    def _points(self, pool: Sequence[PoolImage]) -> npt.NDArray[np.float64]:
        missing = [p.image_id for p in pool if p.features is None]
        if missing:
            raise ValueError(f"core-set needs features; images {missing[:5]} have none")
        points = np.stack([np.asarray(p.features, dtype=np.float64).ravel() for p in pool])
        if self.labeled.shape[0] and self.labeled.shape[1] != points.shape[1]:
            raise ValueError(f"labeled dim {self.labeled.shape[1]} != pool dim {points.shape[1]}")
        return points

    def _initial_distances(self, points: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        centers = self.labeled if self.labeled.shape[0] else points.mean(axis=0, keepdims=True)
        gaps = points[:, None, :] - centers[None, :, :]
        nearest: npt.NDArray[np.float64] = np.linalg.norm(gaps, axis=2).min(axis=1)
        return nearest


_REGISTRY: dict[str, Callable[..., Strategy]] = {
    "random": RandomStrategy,
    "least-confidence": LeastConfidence,
    "margin": Margin,
    "entropy": Entropy,
    "flip": FlipDisagreement,
    "coreset": CoreSet,
}
NAMES = tuple(_REGISTRY)


def by_name(name: str, **kwargs: object) -> Strategy:
    """The strategy called `name` ("coreset" needs labeled=...), built with `kwargs`."""
    return _factory(name)(**kwargs)


def needs_of(name: str) -> frozenset[Need]:
    """What the strategy called `name` reads beyond the prediction (see `Need`)."""
    needs: frozenset[Need] = getattr(_factory(name), "needs", frozenset())
    return needs


def build(name: str, **options: object) -> Strategy:
    """The strategy called `name`, given those of `options` its constructor takes: a caller
    offers everything it has (seed=, labeled=, ...) without knowing which strategy wants what."""
    factory = _factory(name)
    takes = inspect.signature(factory).parameters
    return factory(**{k: v for k, v in options.items() if k in takes})


def _factory(name: str) -> Callable[..., Strategy]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r} (known: {', '.join(NAMES)})") from None
