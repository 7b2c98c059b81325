"""SAM2Long Track To Mask: pick objects from a track result without re-tracking."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from .sockets import CATEGORY, TrackType
from .runtime import intermediate_device
from .widgets import MAX_FRAMES, whole
from .selection import select_objects

MODES = ["union", "per_object"]


def select_masks(track, object_ids: str = "", mode: str = "union", first_frame: int = 0,
                 frame_count: int = 0, soft: bool = False) -> tuple[torch.Tensor, int, int]:
    """(float32 MASK, number of objects, frames per object) over a frame range of the
    track (frame_count 0 = to the end). union: [F, H, W]; per_object: the frames of the
    first selected object, then those of the next, ... -> [F * K, H, W]. `soft`: the
    model's probability in 0..1 (the union: the largest per pixel) instead of 0/1."""
    ids = select_objects(track, object_ids)
    try:
        frames = track.frame_range(whole(first_frame, "first_frame", 0, MAX_FRAMES),
                                   whole(frame_count, "frame_count", 0, MAX_FRAMES))
    except ValueError as e:
        if str(e).startswith("SAM2Long:"):  # a widget's own message
            raise
        raise ValueError(f"SAM2Long: {e} (first_frame, frame_count)") from None
    first, count = frames.start, len(frames)
    if mode == "union":
        out = track.union_soft(ids, first, count) if soft else track.union(ids, first, count)
    elif mode == "per_object":
        if ids:
            one = track.object_soft if soft else track.object_masks
            out = torch.cat([one(i, first, count) for i in ids], 0)
        else:
            out = torch.zeros((count, track.height, track.width), dtype=torch.bool)
    else:
        raise ValueError(f"SAM2Long: mode must be one of {MODES}, got {mode!r}")
    return out.to(device=intermediate_device(), dtype=torch.float32), len(ids), count


class SAM2LongTrackToMask(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAM2LongTrackToMask",
            display_name="SAM2Long Track To Mask",
            category=CATEGORY,
            description=(
                "Masks of chosen objects from a track, without re-tracking. union: one mask per frame. "
                "per_object: all frames of the first object, then all frames of the next, ... A frame "
                "range keeps the MASK small: take a long shot's track 100 frames at a time."),
            inputs=[
                TrackType.Input("track"),
                io.String.Input("object_ids", default="",
                                tooltip='Objects to output: "" = all, "0,2" or "1-3".'),
                io.Combo.Input("mode", options=MODES, default="union"),
                # optional: workflows saved before the range existed stay valid
                io.Int.Input("first_frame", default=0, min=0, max=MAX_FRAMES, optional=True,
                             tooltip="First frame of the output, counted from the track's first frame."),
                io.Int.Input("frame_count", default=0, min=0, max=MAX_FRAMES, optional=True,
                             tooltip="Frames to output; 0 = to the end of the track."),
                io.Boolean.Input("soft", default=False, optional=True,
                                 tooltip="The model's probability (soft edges, 0..1) instead of 0/1 masks."),
            ],
            outputs=[
                io.Mask.Output("masks", display_name="masks"),
                io.Int.Output("object_count", display_name="object_count", tooltip="Number of objects selected."),
                io.Int.Output("frames_out", display_name="frame_count", tooltip="Frames per object."),
            ],
        )

    @classmethod
    def execute(cls, track, object_ids="", mode="union", first_frame=0, frame_count=0,
                soft=False) -> io.NodeOutput:
        masks, count, frames = select_masks(track, object_ids, mode, first_frame, frame_count, bool(soft))
        return io.NodeOutput(masks, count, frames)
