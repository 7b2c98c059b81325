"""Object-pointer positions follow SAM 2's num_frames: distance / (min(T, 16) - 1),
with T the shot's length (tests/test_sam2_equivalence.py checks the 9-frame case
against SAM 2 itself)."""

import pytest
import torch

from sam2long import TensorFrames, Tracker, TreeConfig

from conftest import moving_square_clip


def run(model, frames, shot_length=None, tracker=None, first_index=0):
    tracker = tracker or Tracker(model, TreeConfig.sam2())
    if not tracker.prompts.by_object:
        tracker.add_points(0, 1, [(30, 20)], [1])
    out = {r.frame_idx: r.logits for r in
           tracker.propagate(TensorFrames(frames, first_index), return_logits=True, shot_length=shot_length)}
    return out, tracker


def test_the_source_length_is_the_shot_length(micro_model):
    clip = moving_square_clip(n=9)
    default, tracker = run(micro_model, clip)
    assert tracker.state().run.shot_length == 9
    explicit, _ = run(micro_model, clip, shot_length=9)
    long_shot, _ = run(micro_model, clip, shot_length=16)
    assert all(torch.equal(default[t], explicit[t]) for t in range(9))
    # Frame 1 attends to the prompt's pointer at distance 1: 1/8 here, 1/15 in a long shot.
    assert not torch.equal(default[1], long_shot[1])
    longer, _ = run(micro_model, clip, shot_length=40)
    assert all(torch.equal(long_shot[t], longer[t]) for t in range(9))  # 16 frames or more: all the same


def test_a_continued_run_extends_the_length_to_each_new_chunk(micro_model):
    clip = moving_square_clip(n=12)
    _, tracker = run(micro_model, clip[:6])
    assert tracker.state().run.shot_length == 6
    resumed = Tracker.resume(micro_model, tracker.state())
    _, resumed = run(micro_model, clip[6:], tracker=resumed, first_index=6)
    assert resumed.state().run.shot_length == 12
    # Declared up front, the length carries through the state unchanged.
    _, declared = run(micro_model, clip[:6], shot_length=100)
    _, declared = run(micro_model, clip[6:], tracker=Tracker.resume(micro_model, declared.state()), first_index=6)
    assert declared.state().run.shot_length == 100


def test_a_shot_length_shorter_than_the_frames_is_refused(micro_model):
    with pytest.raises(ValueError, match="shot_length 5 is shorter"):
        run(micro_model, moving_square_clip(n=9), shot_length=5)
