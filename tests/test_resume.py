"""Snapshots and resume (issue 20): a run keeps snapshots every K frames; a tracker
restored from the last snapshot a correction cannot affect, given all the prompts,
yields exactly what a fresh run with all the prompts yields (masks, logits, scores),
on random clips and random corrections, P=1 and P=3, plain SAM 2 and the reduced SAM 3,
corrections inside the tree's undecided lag included."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
import torch

from sam2long import PromptError, TensorFrames, Tracker, TreeConfig
from sam2long.engine.snapshots import SnapshotDir

from conftest import moving_square_clip
from scripted import ScriptedCore, frames
from test_tree_tracking import split_then_merge

TREES = {"P3": TreeConfig(), "P1": TreeConfig(pathways=1), "sam2": TreeConfig.sam2()}


def _track(model, clip, prompts, tree, tracker=None, max_lag=None, **kw):
    tracker = tracker or Tracker(model, tree, max_lag=max_lag)
    for frame, obj_id, point in prompts:
        tracker.add_points(frame, obj_id, [point])
    return {r.frame_idx: r for r in tracker.propagate(TensorFrames(clip), return_logits=True, **kw)}


def _same(a, b):
    assert sorted(a) == sorted(b)
    for t in a:
        assert a[t].obj_ids == b[t].obj_ids, t
        assert torch.equal(a[t].masks, b[t].masks), f"masks differ on frame {t}"
        assert torch.equal(a[t].logits, b[t].logits), f"logits differ on frame {t}"
        assert a[t].object_scores == b[t].object_scores and a[t].pathway_scores == b[t].pathway_scores, t


def _random_case(rng, n, objects, h, w):
    """First prompts early, then 1-3 corrections (or a new object) on later frames."""
    first = [(rng.randrange(0, 3), o, [rng.uniform(5, w - 5), rng.uniform(5, h - 5)]) for o in range(objects)]
    corrections = [(rng.randrange(n // 3, n), rng.randrange(objects + 1), [rng.uniform(0, w), rng.uniform(0, h)])
                   for _ in range(rng.randrange(1, 4))]
    return first, corrections


def _resume_equals_fresh(model, clip, tree, first, corrections, k, tmp_path, max_lag=None):
    """Track with `first`, keeping snapshots; resume with all the prompts from the rule's
    snapshot; compare with a fresh run. -> (frames re-tracked, lags seen at snapshots)."""
    tracked = []
    store = SnapshotDir(tmp_path / "snaps")
    old = _track(model, clip, first, tree, max_lag=max_lag, snapshot_every=k, snapshot_dir=store)
    fresh = _track(model, clip, first + corrections, tree, max_lag=max_lag)
    n_change = min(f for f, _, _ in corrections)
    usable = [s for s in store.frames() if s <= n_change]  # nothing at or after the change consumed
    lags = {s: s - store.load(s).head for s in store.frames()}
    if not usable:
        return None, lags
    snap = store.load(usable[-1])
    tracker = Tracker.from_snapshot(model, store.path(usable[-1]))
    resumed = _track(model, clip, first + corrections, tree, tracker=tracker,
                     on_step=tracked.append)
    assert min(resumed) == snap.head and tracked[0] == snap.next_frame
    _same({**{t: r for t, r in old.items() if t < snap.head}, **resumed}, fresh)
    # A later snapshot, which consumed the changed frame, is refused.
    later = [s for s in store.frames() if s > n_change]
    if later:
        with pytest.raises(PromptError, match=f"prompts on frame {n_change} differ"):
            _track(model, clip, first + corrections, tree, tracker=Tracker.from_snapshot(model, store.path(later[0])))
    return len(tracked), lags


@pytest.mark.parametrize("tree", list(TREES), ids=list(TREES))
@pytest.mark.parametrize("objects", [1, 2])
def test_resume_equals_a_fresh_run_with_all_prompts(micro_model, tree, objects, tmp_path):
    rng = random.Random(f"{tree}{objects}")
    for case in range(3):
        n = rng.randrange(14, 22)
        clip = moving_square_clip(n=n, h=48, w=64, size=12, seed=rng.randrange(1000))
        first, corrections = _random_case(rng, n, objects, 48, 64)
        k = rng.randrange(2, 5)
        retracked, _ = _resume_equals_fresh(micro_model, clip, TREES[tree], first, corrections, k,
                                            tmp_path / str(case))
        if retracked is not None:
            assert retracked < n


def _scripted_run(model, core, corrections, tracker=None, max_lag=None, **kw):
    tracker = tracker or Tracker(model, TreeConfig(), max_lag=max_lag)
    tracker.core = core  # one scripted core for every run: it numbers the paths it has seen
    tracker.add_points(0, 1, [(1, 1)], [1])
    for frame in corrections:
        tracker.add_points(frame, 1, [(2, 2)], [1])
    return {r.frame_idx: (core.path_of_output(r.logits[0]), r.pathway_scores[0])
            for r in tracker.propagate(frames(12), return_logits=True, **kw)}


@pytest.mark.parametrize("max_lag", [None, 1])
def test_corrections_inside_the_undecided_lag(micro_model, max_lag, tmp_path):
    """Scripted pathways split on frame 2 and merge on frame 4, so frames 2 and 3 are
    handed out only after frame 4: the snapshot that continues at frame 4 (head 2) has
    consumed frame 3. A correction on frame 3 (inside that lag) must resume from the
    snapshot at frame 3, and the one at 4 is refused; with max_lag=1 forcing commits too."""
    core = ScriptedCore(split_then_merge)
    store = SnapshotDir(tmp_path)
    old = _scripted_run(micro_model, core, [], max_lag=max_lag, snapshot_every=1, snapshot_dir=store)
    heads = {s: store.load(s).head for s in store.frames()}
    if max_lag is None:
        assert heads[4] == 2 and heads[5] == 4  # the lag
    for correction in (3, 5, 9):
        fresh = _scripted_run(micro_model, core, [correction], max_lag=max_lag)
        assert fresh != old
        snap = store.load(correction)  # the last snapshot that consumed nothing at or after it
        resumed = _scripted_run(micro_model, core, [correction], max_lag=max_lag,
                                tracker=Tracker.from_snapshot(micro_model, snap))
        assert min(resumed) == snap.head
        assert {**{t: v for t, v in old.items() if t < snap.head}, **resumed} == fresh
        with pytest.raises(PromptError, match=f"prompts on frame {correction} differ"):
            _scripted_run(micro_model, core, [correction], tracker=Tracker.from_snapshot(
                micro_model, store.load(correction + 1)))


def test_snapshot_refusals(micro_model, tmp_path):
    clip = moving_square_clip(n=10, h=48, w=64, size=12)
    with pytest.raises(ValueError, match="both snapshot_every"):
        _track(micro_model, clip, [(0, 0, [12.0, 16.0])], TreeConfig(), snapshot_every=3)
    with pytest.raises(ValueError, match="one direction"):
        _track(micro_model, clip, [(0, 0, [12.0, 16.0])], TreeConfig(), snapshot_every=3,
               snapshot_dir=tmp_path, direction="both")
    _track(micro_model, clip, [(0, 0, [12.0, 16.0])], TreeConfig(), snapshot_every=3, snapshot_dir=tmp_path)
    store = SnapshotDir(tmp_path)
    assert store.frames() == [3, 6, 9]
    tracker = Tracker.from_snapshot(micro_model, store.path(6))
    tracker.add_points(0, 0, [[12.0, 16.0]])
    with pytest.raises(Exception, match="ends at frame 9, not 7"):
        list(tracker.propagate(TensorFrames(clip), end=7))


sam3 = pytest.importorskip("sam2long.models.sam3.network")


@pytest.fixture(scope="module")
def sam3_model():
    try:
        from sam2long.models.sam3 import shims

        shims.sam3_modules()
    except Exception as e:  # pragma: no cover
        pytest.skip(f"sam3 is not importable: {e}")
    from sam3_testing import REDUCED

    from sam2long.models.model import LoadedModel

    torch.manual_seed(1)
    net = sam3.build_tracker_net(replace(REDUCED, image_size=112))
    return LoadedModel.from_net(net, "sam3", device="cpu")


@pytest.mark.parametrize("tree", [TreeConfig(), TreeConfig.sam3()], ids=["P3", "sam3"])
def test_resume_with_reduced_sam3(sam3_model, tree, tmp_path):
    rng = random.Random(7)
    for case in range(2):
        n = rng.randrange(10, 14)
        clip = moving_square_clip(n=n, h=48, w=64, size=12, seed=rng.randrange(1000))
        first, corrections = _random_case(rng, n, 2, 48, 64)
        _resume_equals_fresh(sam3_model, clip, tree, first, corrections, 3, tmp_path / str(case))


def test_snapshot_dir_thins_out_to_max_kept(micro_model, tmp_path):
    clip = moving_square_clip(n=26, h=48, w=64, size=12)
    store = SnapshotDir(tmp_path, max_kept=4)
    _track(micro_model, clip, [(0, 0, [12.0, 16.0])], TreeConfig(pathways=1), snapshot_every=2, snapshot_dir=store)
    # 2, 4, 6, 8, 10 -> spacing 4: 4, 8, then 12, 16 -> 20 is a 5th: spacing 8: 8, 16, 24
    assert store.frames() == [8, 16, 24] and store.spacing == 4
    assert store.nbytes() == sum(store.path(f).stat().st_size for f in store.frames())


def test_push_back_replaces_only_the_frames_before_agreement(micro_model):
    from sam2long.engine.pushback import agreement, push_back

    clip = moving_square_clip(n=16, h=48, w=64, size=12, seed=2)
    correction = torch.zeros(48, 64, dtype=torch.bool)
    correction[5:40, 30:60] = True
    tracker = Tracker(micro_model, TreeConfig())
    tracker.add_points(0, 0, [[12.0, 16.0]])
    tracker.add_mask(12, 0, correction)
    forward = {r.frame_idx: r.masks[0] for r in tracker.propagate(TensorFrames(clip))}
    back = Tracker(micro_model, TreeConfig())
    back.add_mask(12, 0, correction)
    backward = {r.frame_idx: r.masks[0] for r in back.propagate(TensorFrames(clip), direction="backward",
                                                                   start=1, end=12)}
    # A random net's masks cover most of the frame: a strict IoU makes some frames disagree.
    iou = 0.995
    agrees = {t: agreement(backward[t].numpy(), forward[t].numpy()) >= iou for t in range(1, 12)}
    assert any(agrees.values()) and not all(agrees.values())

    def pushed(agree):
        return [(t, bool(torch.equal(m, backward[t])), f) for t, _, m, _, _, f in push_back(
            micro_model, TreeConfig(), tracker.prompts, TensorFrames(clip), lambda o, t: forward[t].numpy(),
            agree, iou=iou)]

    seen = set()
    for agree in (1, 2, 20):
        out = pushed(agree)
        frames = [t for t, _, _ in out]
        assert all(same and f == 12 for _, same, f in out)  # the backward masks, from the correction
        # Down from frame 11, stopping before the first `agree` agreeing frames in a row (or at frame 1).
        expected, run = [], []
        for t in range(11, 0, -1):
            run = run + [t] if agrees[t] else []
            expected.append(t)
            if len(run) == agree:
                break
        expected = expected[: len(expected) - len(run)]
        assert frames == expected
        seen.add(tuple(frames))
    assert len(seen) > 1  # the stopping rule mattered
