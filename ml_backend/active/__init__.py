"""Active learning: which unlabeled images the readers should see first.

`strategies` scores a pool of pre-labeled images (higher = more informative) behind one
Protocol and ranks them; `features` computes what two strategies need from the detector
(pooled backbone features for core-set, predictions on flipped copies for flip disagreement).
"""

from ml_backend.active.strategies import (
    CoreSet,
    Entropy,
    FlipDisagreement,
    LeastConfidence,
    Margin,
    PoolImage,
    RandomStrategy,
    Strategy,
    by_name,
    rank,
)

__all__ = [
    "CoreSet",
    "Entropy",
    "FlipDisagreement",
    "LeastConfidence",
    "Margin",
    "PoolImage",
    "RandomStrategy",
    "Strategy",
    "by_name",
    "rank",
]
