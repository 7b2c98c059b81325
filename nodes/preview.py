"""SAM2Long Preview: colour overlay of the tracked objects, with their ids."""

from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from sam2long.overlay import draw_overlay

from .sockets import CATEGORY, TrackType
from .track import intermediate_device


def render_overlay(images: torch.Tensor, track, obj_ids=None, opacity: float = 0.5,
                   show_ids: bool = True) -> torch.Tensor:
    """IMAGE [F, H, W, 3] float 0..1: frames with each object's mask tinted and its id drawn."""
    frames = images[..., :3].detach().to("cpu", torch.float32)
    if frames.shape[0] != track.num_frames or tuple(frames.shape[1:3]) != (track.height, track.width):
        raise ValueError(
            f"SAM2Long: the images ({frames.shape[0]} frames of {frames.shape[2]}x{frames.shape[1]}) do not "
            f"match the track ({track.num_frames} frames of {track.width}x{track.height}); connect the "
            "images the Track node got")
    out = frames.numpy().copy()
    ids = track.obj_ids if obj_ids is None else obj_ids
    masks = {oid: track.object_masks(oid).numpy() for oid in ids}
    for j in range(track.num_frames):
        on_frame = {oid: masks[oid][j] for oid in ids if track.present[oid][j]}
        draw_overlay(out[j], on_frame, float(opacity), show_ids)
    return torch.from_numpy(out)


def preview_indices(n: int, count: int) -> list[int]:
    if count <= 0 or count >= n:
        return list(range(n))
    return sorted({round(i * (n - 1) / (count - 1)) for i in range(count)}) if count > 1 else [0]


class SAM2LongPreview(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAM2LongPreview",
            display_name="SAM2Long Preview",
            category=CATEGORY,
            description="Colour overlay of the tracked objects on the frames, with object ids.",
            inputs=[
                TrackType.Input("track"),
                io.Image.Input("images", tooltip="The images the Track node got."),
                io.Float.Input("opacity", default=0.5, min=0.0, max=1.0, step=0.05),
                io.String.Input("object_ids", default="", tooltip='"" = all, or "0,2".'),
                io.Boolean.Input("show_ids", default=True),
                io.Int.Input("preview_frames", default=16, min=0, max=10_000,
                             tooltip="Frames shown in the node (evenly spaced); 0 = all. The overlay "
                                     "output always has every frame."),
            ],
            outputs=[io.Image.Output("overlay", display_name="overlay")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, track, images, opacity=0.5, object_ids="", show_ids=True, preview_frames=16) -> io.NodeOutput:
        overlay = render_overlay(images, track, track.select(object_ids), opacity, show_ids)
        shown = overlay[preview_indices(overlay.shape[0], int(preview_frames))]
        overlay = overlay.to(intermediate_device())
        return io.NodeOutput(overlay, ui=ui.PreviewImage(shown, cls=cls))
