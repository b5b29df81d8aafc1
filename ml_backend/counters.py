"""Named event counts that request threads share: `stats["hits"] += 1` on a dict is not atomic.

The backend answers /predict from a thread pool, so its hit/miss/load counts (and the similar
lesions' encode/index-load counts) go through one lock. An unknown name is a KeyError: a typo
is a bug, not a new counter.
"""

from __future__ import annotations

import threading


class Counters:
    def __init__(self, *names: str) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(names, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            if name not in self._counts:
                raise KeyError(f"no counter {name!r}; known: {sorted(self._counts)}")
            self._counts[name] += n

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        """All counts at one instant (for /versions-style reports and tests)."""
        with self._lock:
            return dict(self._counts)
