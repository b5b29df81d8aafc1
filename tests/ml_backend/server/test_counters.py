"""Issue 13 item 7: the backend's counters are shared by request threads and lose no count."""

from __future__ import annotations

import sys
import threading
import time

import pytest

from ml_backend.counters import Counters

THREADS = 8
ADDS = 500


class _Yielding(dict[str, int]):
    """A store that gives up the GIL between reading a count and writing it back, so an
    unlocked read-modify-write loses updates here (CPython rarely switches there by itself)."""

    def __getitem__(self, key: str) -> int:
        value = super().__getitem__(key)
        time.sleep(0)
        return value


def test_counts_from_many_threads_add_up() -> None:
    counters = Counters("hits", "misses")
    counters._counts = _Yielding(counters._counts)
    start = threading.Barrier(THREADS)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: a lost update shows

    def hammer() -> None:
        start.wait()
        for _ in range(ADDS):
            counters.add("hits")
            counters.add("misses", 2)

    try:
        threads = [threading.Thread(target=hammer) for _ in range(THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert counters.snapshot() == {"hits": THREADS * ADDS, "misses": 2 * THREADS * ADDS}
    assert counters["hits"] == THREADS * ADDS


def test_an_unknown_counter_is_an_error_not_a_new_count() -> None:
    counters = Counters("hits")
    with pytest.raises(KeyError, match="misses"):
        counters.add("misses")
    assert counters.snapshot() == {"hits": 0}
