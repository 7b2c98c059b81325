"""Pushing a correction backward: a correction acts from its frame on, but drift usually
starts before the frame where it is noticed.

For a prompt of an object on frame M whose previous prompt is on frame P, `push_back`
tracks that object backward from M with M's prompt alone and compares each new mask with
the forward one on the same frame. It stops once `agree` frames in a row agree (IoU >=
`iou`, two empty masks agree), or at frame P + 1; the frames before that final agreeing
run (from M - 1 down) are the replacements. Frames at or before P never change: a prompt
there already decided them. Deterministic: the same forward masks and prompts give the
same replacements.
"""

from __future__ import annotations

import copy

import numpy as np

from ..prompts import PromptSet
from .tracker import Tracker


def agreement(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two bool masks (1.0 when both are empty)."""
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def push_back(model, tree, prompts: PromptSet, source, forward_mask, agree: int, iou: float = 0.9,
              since: int | None = None, within: tuple | None = None, shot_length: int | None = None,
              on_step=None):
    """Yield (frame, obj_id, mask bool [H, W] tensor, object score, logits [H, W], prompt frame)
    to replace,
    for every prompt on a frame >= `since` (None: all) that has an earlier prompt of its
    object, inside the frames `within` = (first, last) tracked (None: the source's).
    `forward_mask(obj_id, frame)`: the forward run's bool [H, W] numpy mask there."""
    if agree < 1:
        raise ValueError(f"agree must be >= 1 frame, got {agree!r}")
    low, high = within or (source.first_index, source.first_index + len(source) - 1)
    for obj_id in sorted(prompts.by_object):
        per_frame = prompts.by_object[obj_id]
        frames = sorted(per_frame)
        for prev, frame in zip(frames, frames[1:]):
            first = max(prev + 1, low)
            if (since is not None and frame < since) or frame > high or frame - first < 1:
                continue
            for item in _push_one(model, tree, obj_id, frame, copy.deepcopy(per_frame[frame]), first, source,
                                  forward_mask, agree, iou, shot_length, on_step):
                yield (*item, frame)


def _push_one(model, tree, obj_id, frame, prompt, first, source, forward_mask, agree, iou, shot_length, on_step):
    tracker = Tracker(model, tree)
    tracker.prompts.by_object[obj_id] = {frame: prompt}
    changed, in_a_row = [], 0
    results = tracker.propagate(source, direction="backward", start=first, end=frame, on_step=on_step,
                                shot_length=shot_length, return_logits=True)
    for r in results:
        if r.frame_idx == frame:  # the prompt frame: the forward run has the same mask
            continue
        mask = r.masks[0]
        in_a_row = in_a_row + 1 if agreement(mask.numpy(), forward_mask(obj_id, r.frame_idx)) >= iou else 0
        changed.append((r.frame_idx, obj_id, mask, r.object_scores[0], r.logits[0]))
        if in_a_row == agree:
            results.close()
            break
    # Frames of the final agreeing run (also one cut short by the previous prompt) stay as they are.
    yield from changed[: len(changed) - in_a_row]
