"""The tree inside the tracker, driven by a scripted decoder: seed frame, shared
duplicate pathways, splitting and merging, exact streaming, max-lag and finalisation."""

import pickle

import pytest

from sam2long.engine.step import TreeStep
from sam2long.engine.tracker import Tracker
from sam2long.engine.tree import TreeConfig

from scripted import ScriptedCore, frames

CERTAIN, UNSURE = 5.0, 0.5


def run(script, n, tiny_model, tree=None, max_lag=None, offline=False):
    tracker = Tracker(tiny_model, tree or TreeConfig(), max_lag=max_lag)
    core = tracker.core = ScriptedCore(script)
    tracker.add_points(0, 1, [(1, 1)], [1])
    emitted_at, out = {}, {}
    step = {"t": None}

    def on_step(t):
        step["t"] = t

    with pytest.MonkeyPatch.context() as mp:
        if offline:  # nothing commits early: everything comes from the final best pathway
            mp.setattr(TreeStep, "_commit", lambda self, obj: None)
        for r in tracker.propagate(frames(n), on_step=on_step, return_logits=True):
            emitted_at[r.frame_idx] = step["t"]
            out[r.frame_idx] = (core.path_of_output(r.logits[0]), r.pathway_scores[0])
    return out, emitted_at, core, tracker


def certain_script(t, path):
    return [0.7, 0.9, 0.8], CERTAIN


def test_seed_frame_is_greedy_single_path_and_unscored(tiny_model):
    out, _, core, tracker = run(certain_script, 5, tiny_model)
    # Frame 1 (s+1): SAM 2's greedy best IoU, score 0; scoring starts at s+2.
    assert out[1] == ((1,), 0.0)
    assert out[2][1] == pytest.approx(0 + __import__("math").log(0.9 + 1e-5))
    # Certain frames: all pathways are copies, so each frame is computed once.
    assert [n for _, n in core.track_calls] == [1, 1, 1, 1]
    assert [o[0] for t, o in sorted(out.items())][1:] == [(1,), (1, 1), (1, 1, 1), (1, 1, 1, 1)]
    assert len(set(tracker._run.objects[1].pathways)) == 1


def split_then_merge(t, path):
    """Frame 2 is uncertain: the pathways split by IoU (0.9 / 0.6 / 0.3). Each then keeps
    one strong child, until the pathway that took candidate 2 on frame 2 — worst at
    first — wins on its steady high IoU, takes every slot, and the pathways merge."""
    if t == 2:
        return [0.9, 0.6, 0.3], UNSURE
    via = path[1] if len(path) >= 2 else 0
    return {0: [0.5, 0.01, 0.01], 1: [0.6, 0.01, 0.01], 2: [0.95, 0.9, 0.85]}[via], CERTAIN


def test_pathways_split_and_merge_and_streaming_equals_offline(tiny_model):
    streamed, emitted_at, core, _ = run(split_then_merge, 12, tiny_model)
    offline, _, _, _ = run(split_then_merge, 12, tiny_model, offline=True)
    assert streamed == offline
    # They really split: distinct pathways were computed on frames 3..5.
    widths = dict(core.track_calls)
    assert widths[3] == 3 and widths[4] == 3
    # The winning path took candidate 2 on frame 2, not the greedy candidate 0.
    assert offline[11][0][1] == 2
    # Streaming: frames 2 and 3 wait until the pathways merge on frame 4, long before the end.
    assert emitted_at[2] == emitted_at[3] == 4


def test_max_lag_forces_commits_to_the_best_pathway(tiny_model):
    def always_unsure(t, path):
        # Each pathway keeps a key of its own (0.90 / 0.88 / 0.86): they never merge.
        via = path[1] if len(path) >= 2 else 0
        return ([0.9, 0.6, 0.3] if t == 2 else [0.9 - 0.02 * via, 0.05, 0.04]), UNSURE

    exact, exact_at, _, _ = run(always_unsure, 14, tiny_model)
    assert all(at == 13 for f, at in exact_at.items() if f >= 2)  # never merged: all at the end
    lagged, lagged_at, _, tracker = run(always_unsure, 14, tiny_model, max_lag=3)
    assert sorted(lagged) == list(range(14))
    for frame, at in lagged_at.items():
        assert at - frame <= 3 or at == 13
    # All remaining pathways pass through the last forced commit.
    obj = tracker._run.objects[1]
    assert obj.frontier.frame >= 13 - 3


def test_identical_pathways_are_computed_once(tiny_model):
    # Uncertain from frame 2 on: 3 distinct pathways, never more units than that.
    def script(t, path):
        return [0.9, 0.6, 0.3], UNSURE if t >= 2 else CERTAIN

    _, _, core, _ = run(script, 8, tiny_model)
    assert [n for _, n in core.track_calls] == [1, 1, 3, 3, 3, 3, 3]


def test_absent_object_parent_still_competes_by_iou(tiny_model):
    # Logit <= 0: the parent's candidates keep competing by IoU (spec pitfall 11), and
    # the stored object score is the parent's, which keeps the frame out of memory.
    def script(t, path):
        return [0.9, 0.8, 0.7], -5.0

    out, _, core, tracker = run(script, 6, tiny_model)
    assert out[5][0] == (0, 0, 0, 0, 0)
    leaf = tracker._run.objects[1].pathways[0]
    assert leaf.reliable == ()
    assert leaf.object_score == -5.0


def test_memory_selection_reaches_the_network(tiny_model):
    # IoU 0.2 on odd frames keeps them out of memory (dIoU = 0.3) unless just previous.
    def script(t, path):
        return ([0.2, 0.1, 0.1] if t % 2 else [0.9, 0.8, 0.7]), CERTAIN

    _, _, core, _ = run(script, 12, tiny_model)
    frame, plans = core.plans[-1]
    assert frame == 11
    kept = [core.table[int(m.flatten()[0])] for m, _, _ in plans[0].spatial[1:]]
    # Spatial memory: the reliable (even) frames only; the previous frame 10 is one of them.
    assert [len(p) for p in kept] == [2, 4, 6, 8, 10]  # a path's length is its frame number


def test_state_copies_a_long_uncommitted_tree(tiny_model):
    # Pathways that never merge keep thousands of frames uncommitted; handing the state
    # over must still work (no recursion per frame) and resume exactly.
    def never_merge(t, path):
        # After the split, every candidate has the same key (0.90): diversity keeps one,
        # and the fill-up gives each other parent its best child, for ever.
        return ([0.9, 0.6, 0.3] if t == 2 else [0.9, 0.9, 0.9]), UNSURE

    tracker = Tracker(tiny_model, TreeConfig())
    tracker.core = ScriptedCore(never_merge)
    tracker.add_points(0, 1, [(1, 1)], [1])
    source = frames(3000)
    source.__class__.__len__ = lambda self: 1500  # the first chunk: frames 0..1499
    list(tracker.propagate(source))
    state = tracker.state()
    leaves = state.run.objects[1].pathways
    assert len({id(n) for n in leaves}) == 3
    depth, node = 0, leaves[0]
    while node.parent is not None:
        depth, node = depth + 1, node.parent
    assert depth > 1000
    # Pickled (as a cache may store it), it is the same tree and continues the same way.
    unpickled = pickle.loads(pickle.dumps(state))
    copies = unpickled.run.objects[1].pathways
    assert [leaves.index(n) for n in leaves] == [copies.index(n) for n in copies]
    source.__class__.__len__ = lambda self: 1520  # the next chunk: frames 1500..1519
    continued = []
    for s in (state, unpickled):
        resumed = Tracker.resume(tiny_model, s)
        resumed.core = tracker.core  # the scripted core knows the paths by number
        out = resumed.propagate(source, start=1500, return_logits=True)
        continued.append([(r.frame_idx, tracker.core.path_of_output(r.logits[0]), r.pathway_scores[0]) for r in out])
    assert [f for f, _, _ in continued[0]] == list(range(1500, 1520))
    assert continued[0] == continued[1]
