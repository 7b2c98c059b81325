"""SAM2Long Preview: colour overlay of the tracked objects, with their ids."""

from __future__ import annotations

import torch
from comfy_api.latest import io, ui

from sam2long.media.overlay import draw_overlay

from .sockets import CATEGORY, ShotType, TrackType
from .runtime import intermediate_device
from .widgets import real, whole
from .selection import select_objects

MAX_PREVIEW = 10_000


def _check_size(count: int, height: int, width: int, track, what: str) -> None:
    if count != track.num_frames or (height, width) != (track.height, track.width):
        raise ValueError(
            f"SAM2Long: the {what} ({count} frames of {width}x{height}) do not match the track "
            f"({track.num_frames} frames of {track.width}x{track.height}); connect the {what} the Track node got")


def render_overlay(frames, track, obj_ids=None, opacity: float = 0.5, show_ids: bool = True) -> torch.Tensor:
    """IMAGE [F, H, W, 3] float 0..1 from (position in the track, frame) pairs: each frame
    with each object's mask tinted and its id drawn. Frames are uint8 or float 0..1."""
    ids = track.obj_ids if obj_ids is None else obj_ids
    out = []
    for j, frame in frames:
        img = torch.as_tensor(frame)[..., :3].detach().cpu()
        img = (img.float() if img.is_floating_point() else img.float() / 255.0).numpy().copy()
        draw_overlay(img, track.frame_masks(j, ids), float(opacity), show_ids)
        out.append(torch.from_numpy(img))
    return torch.stack(out)


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
            description=("Colour overlay of the tracked objects on the frames, with object ids. With a shot, "
                         "only the frames shown are decoded and the overlay output holds just those."),
            inputs=[
                TrackType.Input("track"),
                io.Image.Input("images", optional=True, tooltip="The images the Track node got."),
                ShotType.Input("shot", optional=True, tooltip="The shot the Track node got (instead of images)."),
                io.Float.Input("opacity", default=0.5, min=0.0, max=1.0, step=0.05),
                io.String.Input("object_ids", default="", tooltip='"" = all, or "0,2".'),
                io.Boolean.Input("show_ids", default=True),
                io.Int.Input("preview_frames", default=16, min=0, max=MAX_PREVIEW,
                             tooltip="Frames shown in the node (evenly spaced); 0 = all. With images the "
                                     "overlay output has every frame; with a shot only the frames shown."),
            ],
            outputs=[io.Image.Output("overlay", display_name="overlay")],
            is_output_node=True,
        )

    @classmethod
    def execute(cls, track, images=None, shot=None, opacity=0.5, object_ids="", show_ids=True,
                preview_frames=16) -> io.NodeOutput:
        if (images is None) == (shot is None):
            raise ValueError("SAM2Long: connect either images or shot to the Preview node (the frames the "
                             "Track node got), not both")
        opacity = real(opacity, "opacity", 0.0, 1.0)
        ids = select_objects(track, object_ids)
        shown_at = preview_indices(track.num_frames, whole(preview_frames, "preview_frames", 0, MAX_PREVIEW))
        if shot is not None:
            _check_size(shot.count, shot.height, shot.width, track, "shot")
            overlay = render_overlay(shot.read(shown_at), track, ids, opacity, show_ids)
            shown = overlay
        else:
            _check_size(int(images.shape[0]), int(images.shape[1]), int(images.shape[2]), track, "images")
            overlay = render_overlay(enumerate(images), track, ids, opacity, show_ids)
            shown = overlay[shown_at]
        return io.NodeOutput(overlay.to(intermediate_device()), ui=ui.PreviewImage(shown, cls=cls))
