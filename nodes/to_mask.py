"""SAM2Long Track To Mask: pick objects from a track result without re-tracking."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from .sockets import CATEGORY, TrackType
from .track import intermediate_device

MODES = ["union", "per_object"]


def select_masks(track, object_ids: str = "", mode: str = "union") -> tuple[torch.Tensor, int]:
    """(float32 MASK, number of objects). union: [F, H, W]; per_object: the frames of
    the first selected object, then those of the next, ... -> [F * K, H, W]."""
    ids = track.select(object_ids)
    if mode == "union":
        out = track.union(ids)
    elif mode == "per_object":
        if ids:
            out = torch.cat([track.object_masks(i) for i in ids], 0)
        else:
            out = torch.zeros((track.num_frames, track.height, track.width), dtype=torch.bool)
    else:
        raise ValueError(f"SAM2Long: mode must be one of {MODES}, got {mode!r}")
    return out.to(device=intermediate_device(), dtype=torch.float32), len(ids)


class SAM2LongTrackToMask(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAM2LongTrackToMask",
            display_name="SAM2Long Track To Mask",
            category=CATEGORY,
            description=(
                "Masks of chosen objects from a track, without re-tracking. union: one mask per frame. "
                "per_object: all frames of the first object, then all frames of the next, ..."),
            inputs=[
                TrackType.Input("track"),
                io.String.Input("object_ids", default="",
                                tooltip='Objects to output: "" = all, "0,2" or "1-3".'),
                io.Combo.Input("mode", options=MODES, default="union"),
            ],
            outputs=[
                io.Mask.Output("masks", display_name="masks"),
                io.Int.Output("object_count", display_name="object_count", tooltip="Number of objects selected."),
                io.Int.Output("frame_count", display_name="frame_count", tooltip="Frames per object."),
            ],
        )

    @classmethod
    def execute(cls, track, object_ids="", mode="union") -> io.NodeOutput:
        masks, count = select_masks(track, object_ids, mode)
        return io.NodeOutput(masks, count, int(track.num_frames))
