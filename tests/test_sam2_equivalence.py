"""With the tree switched off, the engine is SAM 2: same masks as the `sam2`
package's own SAM2VideoPredictor on the same weights, frames and prompts."""

import pytest
import torch

import sam2.sam2_video_predictor as svp
from sam2long.core import InferenceCore
from sam2long.frames import TensorFrames
from sam2long.model import LoadedModel
from sam2long.tracker import Tracker
from sam2long.tree import TreeConfig

from conftest import small_net

PREDICTOR = "sam2.sam2_video_predictor.SAM2VideoPredictor"


def reference_run(variant, frames, prompts, monkeypatch, reverse=False, start=None):
    """Run SAM 2's predictor on `frames`, preprocessed exactly as our engine does."""
    net = small_net(variant)
    predictor = small_net(variant, target=PREDICTOR)
    predictor.load_state_dict(net.state_dict())
    model = LoadedModel.from_net(net, variant, device="cpu")
    core = InferenceCore(model)
    images = torch.cat([core.preprocess(f) for f in frames])
    h, w = frames.shape[1:3]
    monkeypatch.setattr(svp, "load_video_frames", lambda **kw: (images, h, w))
    with torch.inference_mode():
        state = predictor.init_state(video_path="unused")
        for kind, frame, obj, value in prompts:
            if kind == "points":
                pts, labels = value
                predictor.add_new_points_or_box(state, frame, obj, points=pts, labels=labels)
            elif kind == "box":
                predictor.add_new_points_or_box(state, frame, obj, box=value)
            else:
                predictor.add_new_mask(state, frame, obj, value)
        out = {}
        for t, obj_ids, masks in predictor.propagate_in_video(state, start_frame_idx=start, reverse=reverse):
            out[t] = {o: masks[i, 0].clone() for i, o in enumerate(obj_ids)}
    return model, out


def our_run(model, frames, prompts, direction="forward"):
    tracker = Tracker(model, TreeConfig.sam2())
    for kind, frame, obj, value in prompts:
        if kind == "points":
            tracker.add_points(frame, obj, *value)
        elif kind == "box":
            tracker.add_box(frame, obj, value)
        else:
            tracker.add_mask(frame, obj, value)
    out = {}
    for r in tracker.propagate(TensorFrames(frames), direction=direction, return_logits=True):
        out[r.frame_idx] = {o: r.logits[i] for i, o in enumerate(r.obj_ids)}
    return out


def assert_same(ours, ref, frames):
    assert sorted(ours) == sorted(ref) == sorted(frames)
    for t in frames:
        assert sorted(ours[t]) == sorted(ref[t]), t
        for o, logits in ref[t].items():
            mine = ours[t][o]
            assert torch.equal(mine > 0, logits > 0), f"frame {t} object {o}: masks differ"
            torch.testing.assert_close(mine, logits, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("variant", ["sam2.1_hiera_tiny", "sam2_hiera_tiny"])
def test_tree_off_equals_sam2_predictor_points(variant, clip, monkeypatch):
    # Two objects prompted on the same frame (SAM 2 tracks both from there).
    prompts = [
        ("points", 0, 1, ([(30, 20)], [1])),
        ("points", 0, 2, ([(70, 50), (10, 60)], [1, 0])),
    ]
    model, ref = reference_run(variant, clip, prompts, monkeypatch)
    ours = our_run(model, clip, prompts)
    assert_same(ours, ref, range(len(clip)))


def test_tree_off_equals_sam2_predictor_box_and_mask(clip, monkeypatch):
    mask = torch.zeros(clip.shape[1:3], dtype=torch.bool)
    mask[10:30, 5:25] = True
    prompts = [("box", 3, 1, (4, 8, 28, 32)), ("mask", 3, 5, mask)]
    model, ref = reference_run("sam2.1_hiera_tiny", clip, prompts, monkeypatch)
    ours = our_run(model, clip, prompts)
    assert_same(ours, ref, range(3, len(clip)))


def test_tree_off_equals_sam2_predictor_reverse(clip, monkeypatch):
    prompts = [("points", 20, 1, ([(60, 20)], [1]))]
    model, ref = reference_run("sam2.1_hiera_tiny", clip, prompts, monkeypatch, reverse=True, start=20)
    ours = our_run(model, clip, prompts, direction="backward")
    assert_same(ours, ref, range(0, 21))
