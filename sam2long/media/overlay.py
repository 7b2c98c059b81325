"""The colour overlay: every object tinted and outlined in its own colour.

One palette for the whole product, indexed by object id, so an object has the
same colour in the command line's preview.mp4 and in the ComfyUI preview node.
"""

from __future__ import annotations

import numpy as np

# Distinct colours (RGB 0..255), picked by object id.
PALETTE = (
    (230, 25, 74), (61, 181, 74), (66, 99, 217), (255, 224, 25), (245, 130, 48), (145, 30, 180),
    (70, 240, 240), (240, 50, 230), (188, 246, 12), (250, 190, 212), (0, 128, 128), (153, 99, 36),
)


def colour(obj_id: int) -> np.ndarray:
    """float32 RGB in 0..1 of an object."""
    return np.asarray(PALETTE[int(obj_id) % len(PALETTE)], np.float32) / 255.0


def outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of `mask` that touch a pixel outside it (4-neighbourhood)."""
    inner = np.roll(mask, 1, 0) & np.roll(mask, -1, 0) & np.roll(mask, 1, 1) & np.roll(mask, -1, 1)
    return mask & ~inner


def draw_overlay(image: np.ndarray, masks: dict, opacity: float = 0.5, show_ids: bool = False) -> np.ndarray:
    """`image` [H, W, 3] float32 0..1 (modified in place and returned): each object's
    mask (bool [H, W], or None) tinted with `opacity`, outlined, optionally labelled."""
    for obj_id, m in masks.items():
        if m is None or not m.any():
            continue
        rgb = colour(obj_id)
        image[m] = image[m] * (1.0 - opacity) + rgb * opacity
        image[outline(m)] = rgb  # a solid outline keeps thin parts visible at low opacity
        if show_ids:
            ys, xs = np.nonzero(m)
            _label(image, str(obj_id), int(xs.mean()), int(ys.mean()), rgb)
    return image


def _label(img: np.ndarray, text: str, x: int, y: int, rgb: np.ndarray) -> None:
    from PIL import Image, ImageDraw, ImageFont

    h, w = img.shape[:2]
    size = max(10, min(h, w) // 24)
    try:
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
