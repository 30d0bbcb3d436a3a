"""The decoded snapshots a store keeps (`shared.snapshots`): bounded by the JSON bytes they
came from, the least recently read out first, so a process reading many long streams keeps
its memory flat."""

from __future__ import annotations

from shared.snapshots import _Decoded


def key(n: int) -> tuple[str, str, int, str]:
    return (f"deployment-d{n}", "deployment", 99, "1-abc")


def test_the_least_recently_read_go_first_once_the_bytes_are_spent() -> None:
    cache = _Decoded(max_bytes=100)
    for n in range(3):
        cache.put(key(n), f"state {n}", 40)
    assert cache.get(key(0)) is None  # 120 bytes > 100: the oldest went
    assert cache.get(key(1)) == "state 1"  # read now: the newest
    cache.put(key(3), "state 3", 40)
    assert cache.get(key(2)) is None and cache.get(key(1)) == "state 1"
    assert cache.get(key(3)) == "state 3"


def test_a_state_larger_than_the_whole_cache_is_not_kept() -> None:
    cache = _Decoded(max_bytes=100)
    cache.put(key(0), "small", 10)
    cache.put(key(1), "huge", 101)
    assert cache.get(key(1)) is None and cache.get(key(0)) == "small"
