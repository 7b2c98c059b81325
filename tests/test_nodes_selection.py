"""The object selection a node's `object_ids` text makes (nodes/selection.py)."""

from __future__ import annotations

import time
import tracemalloc

import pytest
from test_trackstore import track_with

from test_nodes import comfy  # noqa: F401  (module-scoped fixture: the fake ComfyUI)


@pytest.fixture
def select(comfy):  # noqa: F811
    from nodes.selection import select_objects

    return select_objects


def test_selection_by_ids_and_ranges(select):
    track = track_with([1, 2, 4, 700])
    assert select(track, "") == select(track, "all") == [1, 2, 4, 700]
    assert select(track, "4, 1") == [4, 1] and select(track, "2;4 1") == [2, 4, 1]
    assert select(track, "1-3") == [1, 2]  # a range picks the track's ids inside it
    assert select(track, "4,0-5") == [4, 1, 2]  # in the order given, once each
    with pytest.raises(ValueError, match=r"object id\(s\) 3, 5-9 are not in this track \(it has 1, 2, 4, 700\)"):
        select(track, "1,3,5-9")
    with pytest.raises(ValueError, match='runs backwards; write it low-high, e.g. "1-3"'):
        select(track, "3-1")
    with pytest.raises(ValueError, match="cannot read object ids"):
        select(track, "1-x")


def test_huge_range_is_never_expanded(select):
    track = track_with([1, 2, 4, 700])
    tracemalloc.start()
    try:
        assert select(track, "0-2000000") == [1, 2, 4, 700]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000  # expanded, the range alone would be ~2,000,000 ints (tens of MB)
    t0 = time.perf_counter()
    assert select(track, "0-999999999") == [1, 2, 4, 700]
    assert select(track, "5-999999999999999999999") == [700]
    assert time.perf_counter() - t0 < 1.0


def test_unknown_ids_message_stays_short(select):
    track = track_with(list(range(50)))
    spec = ",".join(str(i) for i in range(100, 20000))
    with pytest.raises(ValueError) as e:
        select(track, spec)
    message = str(e.value)
    assert len(message) < 200 and "\n" not in message, message
    assert "100, 101," in message and "and 19890 more" in message and "it has 0, 1," in message
    assert "and 40 more" in message
    with pytest.raises(ValueError) as e:
        select(track, "1-" + "x" * 100_000)
    assert len(str(e.value)) < 200
