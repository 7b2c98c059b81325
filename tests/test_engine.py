"""The engine on a real (random-weight) SAM 2.1 network: batching, chunks, both
directions, bounded state, prompts and outputs."""

import pickle

import pytest
import torch

from sam2long import FrameError, PromptError, TensorFrames, Tracker, TreeConfig

from conftest import moving_square_clip


def track(model, frames, prompts, tree=None, direction="forward", first_index=0, tracker=None, **kw):
    tracker = tracker or Tracker(model, tree or TreeConfig())
    for args in prompts:
        getattr(tracker, args[0])(*args[1:])
    results = list(tracker.propagate(TensorFrames(frames, first_index), direction=direction, return_logits=True, **kw))
    return {r.frame_idx: r for r in results}, tracker


def assert_results_equal(a, b, frames, exact=False):
    for t in frames:
        assert a[t].obj_ids == b[t].obj_ids, t
        assert torch.equal(a[t].masks, b[t].masks), f"masks differ on frame {t}"
        if exact:
            assert torch.equal(a[t].logits, b[t].logits), t
        else:
            torch.testing.assert_close(a[t].logits, b[t].logits, atol=1e-4, rtol=1e-4)


def test_outputs_at_source_resolution(micro_model, clip):
    out, tracker = track(micro_model, clip, [("add_points", 0, 1, [(30, 20)], [1]), ("add_box", 5, 2, (40, 30, 80, 60))])
    assert sorted(out) == list(range(len(clip)))
    assert out[4].obj_ids == [1] and out[5].obj_ids == [1, 2]  # object 2 starts on its prompt frame
    r = out[10]
    assert r.masks.dtype == torch.bool and r.masks.shape == (2, 72, 96) and r.masks.device.type == "cpu"
    assert r.logits.shape == (2, 72, 96)
    assert torch.equal(r.masks, r.logits > 0)
    assert len(r.object_scores) == len(r.pathway_scores) == 2
    assert out[1].pathway_scores == [0.0]  # the seed frame is not scored
    assert out[10].pathway_scores[0] < 0  # cumulative log IoU afterwards


def test_batched_equals_unbatched(micro_model, clip):
    # Two objects started on different frames, and a threshold that makes pathways keep
    # memories of different lengths, so the batch is padded and masked.
    tree = TreeConfig(iou_threshold=0.52)
    a = ("add_points", 0, 1, [(30, 20)], [1])
    b = ("add_points", 4, 2, [(70, 50)], [1])
    together, tracker = track(micro_model, clip, [a, b], tree)
    alone_a, _ = track(micro_model, clip, [a], tree)
    alone_b, _ = track(micro_model, clip, [b], tree)
    for t in range(len(clip)):
        split = {1: alone_a[t]}
        if t >= 4:
            split[2] = alone_b[t]
        assert together[t].obj_ids == sorted(split)
        for i, o in enumerate(together[t].obj_ids):
            j = split[o].obj_ids.index(o)
            assert torch.equal(together[t].masks[i], split[o].masks[j]), (t, o)
            torch.testing.assert_close(together[t].logits[i], split[o].logits[j], atol=1e-4, rtol=1e-4)


def test_padding_is_exercised(micro_model, clip, monkeypatch):
    import sam2long.engine.core as core_mod

    seen = []
    real = core_mod.memory_attention

    def spy(*args):
        seen.append(args[-1] is not None)  # key_valid given: the batch was padded
        return real(*args)

    monkeypatch.setattr(core_mod, "memory_attention", spy)
    track(micro_model, clip[:10], [("add_points", 0, 1, [(30, 20)], [1]), ("add_points", 4, 2, [(70, 50)], [1])],
          TreeConfig(iou_threshold=0.52))
    assert any(seen)


@pytest.mark.parametrize("tree", [TreeConfig(), TreeConfig.sam2()], ids=["P3", "sam2"])
def test_chunked_and_resumed_equals_uninterrupted(micro_model, clip, tree):
    prompt = [("add_points", 0, 1, [(30, 20)], [1])]
    whole, _ = track(micro_model, clip, prompt, tree)
    # The first chunk is shorter than 16 frames: it needs the shot's length for SAM 2's
    # pointer positions (min(T, 16) - 1); later chunks inherit it from the state.
    first, tracker = track(micro_model, clip[:12], prompt, tree, shot_length=len(clip))
    state = tracker.state()
    resumed = Tracker.resume(micro_model, state)
    second, _ = track(micro_model, clip[12:], [], tracker=resumed, first_index=12)
    assert sorted(second) == list(range(12, len(clip)))
    assert_results_equal(second, whole, range(12, len(clip)), exact=True)
    # Frames committed before the cut are the same too (all of them without a tree).
    committed = range(12) if tree.pathways == 1 else range(2)
    assert_results_equal(first, whole, committed, exact=True)
    # The state handed over was not changed by resuming from it.
    again, _ = track(micro_model, clip[12:], [], tracker=Tracker.resume(micro_model, state), first_index=12)
    assert_results_equal(again, second, range(12, len(clip)), exact=True)
    # A pickled state (ComfyUI may cache it) resumes exactly as well.
    unpickled = pickle.loads(pickle.dumps(state))
    thawed, _ = track(micro_model, clip[12:], [], tracker=Tracker.resume(micro_model, unpickled), first_index=12)
    assert_results_equal(thawed, second, range(12, len(clip)), exact=True)


def test_both_directions_from_a_key_frame(micro_model, clip):
    prompt = [("add_points", 12, 1, [(40, 20)], [1])]
    both, _ = track(micro_model, clip, prompt, direction="both")
    forward, _ = track(micro_model, clip, prompt, direction="forward")
    backward, _ = track(micro_model, clip, prompt, direction="backward")
    assert sorted(both) == list(range(len(clip)))  # every frame once
    assert sorted(forward) == list(range(12, len(clip)))
    assert sorted(backward) == list(range(0, 13))
    assert_results_equal(both, forward, range(12, len(clip)), exact=True)
    assert_results_equal(both, backward, range(0, 12), exact=True)


def test_correction_prompt_takes_effect_on_its_frame(micro_model, clip):
    mask = torch.zeros(72, 96, dtype=torch.bool)
    mask[20:50, 30:70] = True
    out, _ = track(micro_model, clip, [("add_points", 0, 1, [(30, 20)], [1]), ("add_mask", 8, 1, mask)])
    ref, _ = track(micro_model, clip, [("add_points", 0, 1, [(30, 20)], [1])])
    assert_results_equal(out, ref, range(8), exact=True)  # causal: nothing changes before it
    iou = (out[8].masks[0] & mask).sum() / (out[8].masks[0] | mask).sum()
    assert iou > 0.9  # the prompt's mask is the output on its frame (up to 64px resampling)


@pytest.mark.parametrize("tree", [TreeConfig(), TreeConfig.sam2()], ids=["P3", "sam2"])
def test_state_size_does_not_grow_with_length(micro_model, tree):
    frames = moving_square_clip(n=301, h=48, w=64, size=12)
    sizes, held = {}, {}
    tracker = Tracker(micro_model, tree)
    tracker.add_points(0, 1, [(12, 16)], [1])

    def on_step(t):
        if t in (50, 300):
            sizes[t] = tracker.state_nbytes()
            tensors = tracker.state_tensors()
            assert len({id(x) for x in tensors}) == len(tensors)  # each held tensor once
            assert sum(x.numel() * x.element_size() for x in tensors) == sizes[t]
            held[t] = sorted((tuple(x.shape), str(x.dtype)) for x in tensors)

    for _ in tracker.propagate(TensorFrames(frames), on_step=on_step):
        pass
    assert sizes[50] > 0
    assert sizes[300] == sizes[50]
    assert held[300] == held[50]  # the same kinds and numbers of memories, pointers, pending masks


def test_prompt_errors_name_the_problem(micro_model, clip):
    tracker = Tracker(micro_model)
    with pytest.raises(PromptError, match="no points"):
        tracker.add_points(0, 1, [], [])
    with pytest.raises(PromptError, match="empty box"):
        tracker.add_box(0, 1, (10, 10, 5, 20))
    with pytest.raises(PromptError, match="mask .* is empty"):
        tracker.add_mask(0, 1, torch.zeros(72, 96))
    with pytest.raises(PromptError, match="no prompts"):
        list(tracker.propagate(TensorFrames(clip)))

    def fails(prompt, match):
        t = Tracker(micro_model)
        getattr(t, prompt[0])(*prompt[1:])
        with pytest.raises(PromptError, match=match):
            list(t.propagate(TensorFrames(clip)))

    fails(("add_points", 0, 1, [(200, 20)], [1]), r"outside the 96x72 frame")
    fails(("add_box", 0, 1, (0, 0, 97, 10)), r"outside the 96x72 frame")
    fails(("add_points", 99, 1, [(20, 20)], [1]), r"frame 99 is not in this shot: its frames are 0-23")
    fails(("add_mask", 0, 1, torch.ones(10, 10)), r"is 10x10 but the frames are 96x72")
    fails(("add_points", 0, 1, [(20, 20)], [0]), r"only negative points")


def test_frame_size_mismatch_on_resume(micro_model, clip):
    _, tracker = track(micro_model, clip[:6], [("add_points", 0, 1, [(30, 20)], [1])])
    small = moving_square_clip(n=6, h=40, w=40, size=8)
    with pytest.raises(FrameError, match="same shot"):
        list(tracker.propagate(TensorFrames(small, first_index=6)))
    with pytest.raises(FrameError, match="contains frame 6"):
        list(tracker.propagate(TensorFrames(clip[8:], first_index=8)))


def test_stopping_from_on_step_stops_promptly(micro_model, clip):
    tracker = Tracker(micro_model)
    tracker.add_points(0, 1, [(30, 20)], [1])
    seen = []

    def on_step(t):
        seen.append(t)
        if t == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        list(tracker.propagate(TensorFrames(clip), on_step=on_step))
    assert seen == [0, 1, 2, 3]
