"""Our side of the equivalence tests (tests/test_sam2_equivalence.py, test_sam3_equivalence.py):
the engine tracking a frame folder with the tree off, and the comparison with a reference."""

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from sam2long.engine.tracker import Tracker
from sam2long.media.frames import open_frames

LOGIT_TOL = 1e-5


def our_run(model, video_path, prompts, tree, direction="forward"):
    """prompts: [(kind "points" | "box" | "mask", frame, obj_id, value)] -> {frame: {obj: logits}}"""
    tracker = Tracker(model, tree)
    for kind, frame, obj, value in prompts:
        if kind == "points":
            tracker.add_points(frame, obj, *value)
        elif kind == "box":
            tracker.add_box(frame, obj, value)
        else:
            tracker.add_mask(frame, obj, value)
    out = {}
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        for r in tracker.propagate(open_frames(video_path), direction=direction, return_logits=True):
            out[r.frame_idx] = {o: r.logits[i] for i, o in enumerate(r.obj_ids)}
    return out


def assert_same(ours, ref, frames, exact=False):
    """Logits bit-equal (`exact`), or within LOGIT_TOL with a mask pixel differing only
    where the reference logit is within LOGIT_TOL of 0."""
    assert sorted(ours) == sorted(ref) == sorted(frames)
    for t in frames:
        assert sorted(ours[t]) == sorted(ref[t]), t
        for o, logits in ref[t].items():
            mine = ours[t][o]
            if exact:
                assert torch.equal(mine, logits), f"frame {t} object {o}: logits differ by {(mine - logits).abs().max()}"
                continue
            torch.testing.assert_close(mine, logits, atol=LOGIT_TOL, rtol=0)
            flipped = (mine > 0) != (logits > 0)
            assert (logits[flipped].abs() <= LOGIT_TOL).all(), f"frame {t} object {o}: masks differ"
