"""The one prompt model and validator (`sam2long/prompts.py`), without a model."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sam2long.errors import PromptError
from sam2long.prompts import PromptSet, read_mask


def test_coordinate_rule_both_edges_inside():
    p = PromptSet()
    p.add_points(0, 1, [(0, 0), (64, 48)], [1, 0])  # the two corners of a 64x48 frame
    p.add_box(1, 1, (0, 0, 64, 48))
    p.check(48, 64, 0, 1)
    for bad in [(64.01, 10), (10, 48.5), (-0.5, 3)]:
        q = PromptSet()
        q.add_points(0, 1, [bad])
        with pytest.raises(PromptError, match=r"outside the 64x48 frame; use pixel coordinates with "
                                              r"0 <= x <= 64 and 0 <= y <= 48"):
            q.check(48, 64, 0, 0)
    q = PromptSet()
    q.add_box(0, 2, (1, 1, 65, 10))
    with pytest.raises(PromptError, match=r"box \(1, 1, 65, 10\) for object 2 on frame 0 is outside"):
        q.check(48, 64, 0, 0)


def test_frames_checked_with_their_range():
    p = PromptSet()
    p.add_points(7, 3, [(1, 1)])
    with pytest.raises(PromptError, match=r"object 3 on frame 7: frame 7 is not in this shot: its frames are 0-4"):
        p.check(48, 64, 0, 4)
    p.check(48, 64, 0, 4, frames=False)  # a continued run checks the place only
    p.check_frames(5, 9)


def test_form_checks_when_added():
    p = PromptSet()
    with pytest.raises(PromptError, match="2 points but 1 labels"):
        p.add_points(0, 1, [(1, 1), (2, 2)], [1])
    for label in (2, -1, 0.5, float("inf"), float("nan")):  # never rounded, never int(inf)
        with pytest.raises(PromptError, match="labels must be 1"):
            p.add_points(0, 1, [(1, 1)], [label])
    with pytest.raises(PromptError, match="four numbers"):
        p.add_box(0, 1, (0, 0, float("inf"), 9))
    with pytest.raises(PromptError, match="finite"):
        p.add_points(0, 1, [(1, float("nan"))])
    with pytest.raises(PromptError, match="empty box"):
        p.add_box(0, 1, (5, 5, 5, 9))
    with pytest.raises(PromptError, match="frame index"):
        p.add_points(-1, 1, [(1, 1)])
    with pytest.raises(PromptError, match="'shot.png' for object 1 on frame 2 is empty"):
        p.add_mask(2, 1, np.zeros((4, 4), bool), name="shot.png")
    assert p.by_object == {}  # nothing half-added
    p.add_mask(2, 1, np.ones((4, 4), bool), name="shot.png")
    with pytest.raises(PromptError, match="already has a mask"):
        p.add_points(2, 1, [(1, 1)])
    with pytest.raises(PromptError, match=r"the mask 'shot.png' for object 1 on frame 2 is 4x4 but the frames "
                                          r"are 64x48"):
        p.check(48, 64, 0, 9)
    q = PromptSet()
    q.add_points(0, 1, [(1, 1)], [0])
    with pytest.raises(PromptError, match="only negative points"):
        q.check(48, 64, 0, 0)


def test_add_to_keeps_order_and_shifts_frames():
    calls = []

    class Recorder:  # the tracker's add_* methods, recorded
        def __getattr__(self, name):
            return lambda **kw: calls.append((name.removeprefix("add_"), kw))

    p = PromptSet()
    p.add_points(3, 2, [(1, 2)])
    p.add_box(0, 1, (1, 1, 9, 9), points=[(4, 4)], labels=[0])
    p.add_box(1, 1, (2, 2, 8, 8))
    mask = np.zeros((6, 6), bool)
    mask[1:3, 1:3] = True
    p.add_mask(5, 2, mask)
    assert p.obj_ids == [1, 2] and p.frames == [0, 1, 3, 5]
    p.add_to(Recorder(), frame_offset=10)
    assert [(k, kw["frame"], kw["obj_id"]) for k, kw in calls] == [
        ("points", 13, 2), ("mask", 15, 2), ("box", 10, 1), ("box", 11, 1)]
    assert calls[0][1] == {"frame": 13, "obj_id": 2, "points": [(1.0, 2.0)], "labels": [1]}
    assert calls[2][1] == {"frame": 10, "obj_id": 1, "box": (1.0, 1.0, 9.0, 9.0), "points": [(4.0, 4.0)],
                           "labels": [0]}
    assert calls[3][1] == {"frame": 11, "obj_id": 1, "box": (2.0, 2.0, 8.0, 8.0)}
    assert np.array_equal(calls[1][1]["mask"], mask)


def test_read_mask(tmp_path):
    a = np.zeros((5, 7), np.uint8)
    a[1:3, 2:5] = 255
    Image.fromarray(a).save(tmp_path / "l.png")
    assert np.array_equal(read_mask(tmp_path / "l.png"), a > 0)
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[..., :3] = 255  # white everywhere: the alpha channel carries the mask
    rgba[1:3, 2:5, 3] = 255
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert np.array_equal(read_mask(tmp_path / "a.png"), a > 0)
    with pytest.raises(PromptError, match="does not exist"):
        read_mask(tmp_path / "none.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(PromptError, match="cannot read mask"):
        read_mask(tmp_path / "bad.png")
    Image.fromarray(np.zeros((10, 20000), np.uint8)).save(tmp_path / "wide.png")  # compresses to a few KB
    with pytest.raises(PromptError, match=r"mask .*wide.png' is 20000x10 .*16384 pixels a side"):
        read_mask(tmp_path / "wide.png")
