"""Track re-queued with a late correction (issue 20), through the fake ComfyUI: it resumes
from the last snapshot the correction cannot affect, tracks fewer frames, and its masks
equal a fresh run's with all the prompts; other directions track from the start and say
so; the cache of earlier runs stays bounded."""

from __future__ import annotations

import gc
import logging
import os

import numpy as np
import pytest
import torch

from test_nodes import _prompt, comfy, handle, run  # noqa: F401  (module-scoped fixtures)
from test_nodes_longshot import _clip, _dirs, _write_mp4

N = 22


@pytest.fixture(scope="module")
def shot(comfy):
    os.makedirs(_dirs()[0], exist_ok=True)
    _write_mp4(os.path.join(_dirs()[0], "resume.mp4"), _clip(N, seed=4))
    (s, *_), _ = run(comfy, "SAM2LongLoadShot", video="resume.mp4")
    return s


@pytest.fixture
def counted(monkeypatch):
    """Frames the core encodes (one per frame tracked), and small snapshot settings."""
    import nodes.track as track_node
    from sam2long.engine.core import InferenceCore

    monkeypatch.setattr(track_node, "SNAPSHOT_EVERY", 4)
    monkeypatch.setattr(track_node, "_RUNS", None)
    encoded = []
    orig = InferenceCore.encode_image

    def spy(self, image):
        encoded.append(1)
        return orig(self, image)

    monkeypatch.setattr(InferenceCore, "encode_image", spy)
    return encoded


def _same(a, b):
    assert a.obj_ids == b.obj_ids
    assert torch.equal(a.union(), b.union())
    for o in a.obj_ids:
        assert np.array_equal(a.present[o], b.present[o])
        assert np.array_equal(a.scores[o], b.scores[o], equal_nan=True)
        assert torch.equal(a.object_masks(o), b.object_masks(o))
        assert a.soft_bits == b.soft_bits and torch.equal(a.object_soft(o), b.object_soft(o))  # soft mattes too


def _fresh(comfy, handle, shot, prompts, monkeypatch, **kw):
    import nodes.track as track_node

    monkeypatch.setattr(track_node, "_RUNS", None)  # nothing to resume from
    (t, masks, _), _ = run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=prompts, **kw)
    return t, masks


@pytest.mark.parametrize("pathways", [1, 3])
def test_requeue_with_a_late_correction_resumes(comfy, handle, shot, counted, monkeypatch, caplog, pathways):
    p1 = _prompt(comfy, positive_coords='[{"x": 12, "y": 22}]')
    p1 = _prompt(comfy, prompts=p1, object_id=1, frame_index=2, positive_coords='[{"x": 40, "y": 30}]')
    (t1, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p1, pathways=pathways)
    assert len(counted) == N
    p2 = _prompt(comfy, prompts=p1, frame_index=17, positive_coords='[{"x": 50, "y": 20}]')
    counted.clear()
    with caplog.at_level(logging.INFO, logger="SAM2Long"):
        (t2, m2, _), _ = run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p2, pathways=pathways)
    assert "resuming from the snapshot at frame 16" in caplog.text
    assert len(counted) == N - 16  # frames 16..21, from the snapshot that continues at frame 16
    fresh, fresh_masks = _fresh(comfy, handle, shot, p2, monkeypatch, pathways=pathways)
    _same(t2, fresh)
    assert torch.equal(m2, fresh_masks)
    assert not torch.equal(t1.union(), fresh.union())  # the correction changed something
    # The resumed track outlives the earlier one's folder (its masks are links of its own).
    t1.remove()
    assert not t1.folder.exists()
    _same(t2, fresh)


def test_a_second_correction_earlier_resumes_from_an_earlier_snapshot(comfy, handle, shot, counted,
                                                                      monkeypatch):
    p1 = _prompt(comfy, positive_coords='[{"x": 12, "y": 22}]')
    run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p1)
    p2 = _prompt(comfy, prompts=p1, frame_index=18, positive_coords='[{"x": 50, "y": 20}]')
    run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p2)
    p3 = _prompt(comfy, prompts=p2, frame_index=9, positive_coords='[{"x": 30, "y": 20}]')
    counted.clear()
    (t3, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p3)
    assert len(counted) == N - 8  # the snapshot at 8 was linked into the second run's store
    _same(t3, _fresh(comfy, handle, shot, p3, monkeypatch)[0])


def test_removing_a_late_object_resumes_without_it(comfy, handle, shot, counted, monkeypatch):
    p1 = _prompt(comfy, positive_coords='[{"x": 12, "y": 22}]')
    p2 = _prompt(comfy, prompts=p1, object_id=1, frame_index=13, positive_coords='[{"x": 40, "y": 30}]')
    (t2, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p2)
    assert t2.obj_ids == (0, 1)
    counted.clear()
    (t1, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p1)
    assert len(counted) == N - 12 and t1.obj_ids == (0,)
    _same(t1, _fresh(comfy, handle, shot, p1, monkeypatch)[0])


def test_what_cannot_resume_tracks_from_the_start(comfy, handle, shot, counted, monkeypatch, caplog):
    p1 = _prompt(comfy, positive_coords='[{"x": 12, "y": 22}]', frame_index=3)
    p2 = _prompt(comfy, prompts=p1, frame_index=15, positive_coords='[{"x": 50, "y": 20}]')
    with caplog.at_level(logging.INFO, logger="SAM2Long"):
        run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p1, direction="both")
        counted.clear()
        run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p2, direction="both")
    assert "tracking both from the start" in caplog.text and len(counted) == (N - 3) + 4
    # A changed tree setting is another key: from the start.
    run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p1)
    counted.clear()
    (t, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p2, iou_threshold=0.5)
    assert len(counted) == N - 3
    # A prompt changed before the first snapshot (frame 3 < 4): from the start, and said so.
    p3 = _prompt(comfy, positive_coords='[{"x": 14, "y": 22}]', frame_index=3)
    counted.clear()
    with caplog.at_level(logging.INFO, logger="SAM2Long"):
        run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p3)
    assert "before the first snapshot" in caplog.text and len(counted) == N - 3


def test_run_cache_is_bounded(comfy, handle, shot, counted, monkeypatch):
    from nodes import track as track_node

    monkeypatch.setattr(track_node, "RESUMABLE_RUNS", 2)
    p = _prompt(comfy, positive_coords='[{"x": 12, "y": 22}]')
    folders = []
    for v in (0.1, 0.2, 0.3):
        (track, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p, iou_threshold=v)
        folders.append(track_node._run_cache()._runs[-1].folder)
        # The cache keeps links of its own: the result's folder still goes once ComfyUI drops it.
        result_folder = track.folder
        del track
        gc.collect()
        assert not result_folder.exists()
    cache = track_node._run_cache()
    assert len(cache) == 2 and [r.folder for r in cache._runs] == folders[1:]
    assert not folders[0].exists()  # the oldest run is deleted at once
    # each frame's mask and soft matte (issue 23: `.s8.z` beside the mask's `.z`)
    assert all((f / "snapshots").is_dir() and len([p for p in f.rglob("*.z") if ".s8." not in p.name]) == N
               and len(list(f.rglob("*.s8.z"))) == N for f in folders[1:])
    assert all(r.remove.atexit and r.remove.alive for r in cache._runs)  # deleted at exit too
    # A disk budget smaller than one run keeps none.
    monkeypatch.setattr(track_node, "_RUNS", None)
    monkeypatch.setattr(track_node, "SNAPSHOT_DISK_BUDGET", 1)
    run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p)
    assert len(track_node._run_cache()) == 0


def test_push_back_with_resume_equals_a_fresh_push(comfy, handle, shot, counted, monkeypatch, caplog):
    """push_back on: the re-queue resumes, pushes the new correction back, and gives what a
    fresh run with push_back gives; the masks before the pushed frames are the forward ones."""
    import nodes.track as track_node

    monkeypatch.setattr(track_node, "PUSH_IOU", 0.999)  # a random net's masks cover most of the frame
    p1 = _prompt(comfy, positive_coords='[{"x": 12, "y": 22}]')
    p1 = _prompt(comfy, prompts=p1, frame_index=6, positive_coords='[{"x": 30, "y": 22}]')
    (plain, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p1)
    (t1, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p1, push_back=2)
    assert not torch.equal(plain.union(), t1.union())  # frames before 6 were replaced
    assert torch.equal(plain.union(first=6), t1.union(first=6))  # from the correction on: forward
    p2 = _prompt(comfy, prompts=p1, frame_index=17, positive_coords='[{"x": 50, "y": 20}]')
    counted.clear()
    with caplog.at_level(logging.INFO, logger="SAM2Long"):
        (t2, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p2, push_back=2)
    assert "resuming from the snapshot at frame 16" in caplog.text
    assert "1 correction(s) pushed back" in caplog.text and " 0 masks replaced" not in caplog.text
    resumed_frames = len(counted)
    fresh, _ = _fresh(comfy, handle, shot, p2, monkeypatch, push_back=2)
    _same(t2, fresh)
    assert resumed_frames < N
