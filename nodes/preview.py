"""SAM2Long Preview: colour overlay of the tracked objects, with their ids."""

from __future__ import annotations

import numpy as np
import torch
from comfy_api.latest import io, ui

from .sockets import CATEGORY, TrackType
from .track import intermediate_device

# Distinct colours (0..1 RGB), picked by object id.
PALETTE = np.array([
    (0.90, 0.10, 0.29), (0.24, 0.71, 0.29), (0.26, 0.39, 0.85), (1.00, 0.88, 0.10),
    (0.96, 0.51, 0.19), (0.57, 0.12, 0.71), (0.27, 0.94, 0.94), (0.94, 0.20, 0.90),
    (0.74, 0.96, 0.05), (0.98, 0.75, 0.83), (0.00, 0.50, 0.50), (0.60, 0.39, 0.14),
], dtype=np.float32)


def colour(obj_id: int) -> np.ndarray:
    return PALETTE[int(obj_id) % len(PALETTE)]


def _label(img: np.ndarray, text: str, x: int, y: int, rgb: np.ndarray) -> None:
    from PIL import Image, ImageDraw

    h, w = img.shape[:2]
    size = max(10, min(h, w) // 24)
    try:
        from PIL import ImageFont

        font = ImageFont.load_default(size=size)
    except TypeError:  # older Pillow
        font = None
    pil = Image.fromarray((img * 255).clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    box = draw.textbbox((0, 0), text, font=font)
    tw, th = box[2] - box[0], box[3] - box[1]
    x0 = int(min(max(0, x - tw // 2 - 2), max(0, w - tw - 4)))
    y0 = int(min(max(0, y - th // 2 - 2), max(0, h - th - 4)))
    draw.rectangle((x0, y0, x0 + tw + 4, y0 + th + 4), fill=tuple(int(c * 255) for c in rgb))
    draw.text((x0 + 2 - box[0], y0 + 2 - box[1]), text, fill=(0, 0, 0), font=font)
    img[:] = np.asarray(pil, dtype=np.float32) / 255.0


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
    a = float(opacity)
    for oid in ids:
        masks = track.object_masks(oid).numpy()
        rgb = colour(oid)
        for j in np.flatnonzero(track.present[oid]):
            m = masks[j]
            if not m.any():
                continue
            out[j][m] = out[j][m] * (1 - a) + rgb * a
            # a thin outline keeps edges readable at low opacity
            edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
            out[j][edge] = rgb
            if show_ids:
                ys, xs = np.nonzero(m)
                _label(out[j], str(oid), int(xs.mean()), int(ys.mean()), rgb)
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
