"""Track stores: the object selection a node's `object_ids` string makes."""

from __future__ import annotations

import time
import tracemalloc

import pytest
import torch

from sam2long.media.trackstore import TrackBuilder


def track_with(ids, n=2, h=4, w=6):
    builder = TrackBuilder(n, h, w)
    builder.ensure_objects(ids)
    builder.add(0, ids, torch.ones(len(ids), h, w, dtype=torch.bool))
    return builder.build()


def test_selection_by_ids_and_ranges():
    track = track_with([1, 2, 4, 700])
    assert track.select("") == track.select("all") == [1, 2, 4, 700]
    assert track.select("4, 1") == [4, 1] and track.select("2;4 1") == [2, 4, 1]
    assert track.select("1-3") == [1, 2]  # a range picks the track's ids inside it
    assert track.select("4,0-5") == [4, 1, 2]  # in the order given, once each
    with pytest.raises(ValueError, match=r"object id\(s\) 3, 5-9 are not in this track \(it has 1, 2, 4, 700\)"):
        track.select("1,3,5-9")
    with pytest.raises(ValueError, match='runs backwards; write it low-high, e.g. "1-3"'):
        track.select("3-1")
    with pytest.raises(ValueError, match="cannot read object ids"):
        track.select("1-x")


def test_huge_range_is_never_expanded():
    track = track_with([1, 2, 4, 700])
    tracemalloc.start()
    try:
        assert track.select("0-2000000") == [1, 2, 4, 700]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 100_000  # expanded, the range alone would be ~2,000,000 ints (tens of MB)
    t0 = time.perf_counter()
    assert track.select("0-999999999") == [1, 2, 4, 700]
    assert track.select("5-999999999999999999999") == [700]
    assert time.perf_counter() - t0 < 1.0


def test_unknown_ids_message_stays_short():
    track = track_with(list(range(50)))
    spec = ",".join(str(i) for i in range(100, 20000))
    with pytest.raises(ValueError) as e:
        track.select(spec)
    message = str(e.value)
    assert len(message) < 200 and "\n" not in message, message
    assert "100, 101," in message and "and 19890 more" in message and "it has 0, 1," in message
    assert "and 40 more" in message
    with pytest.raises(ValueError) as e:
        track.select("1-" + "x" * 100_000)
    assert len(str(e.value)) < 200
