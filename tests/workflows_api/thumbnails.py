"""Renders the workflow thumbnails (workflows/<name>.jpg) from the demo clip:
the prompted frame with each object's click drawn in its SAM2Long Preview colour
and id, plus a caption.

    python tests/workflows_api/thumbnails.py [/path/to/bedroom.mp4]
"""

import os
import sys

import av
from PIL import ImageDraw, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, REPO)
PALETTE = [(230, 25, 74), (61, 181, 74), (66, 99, 217), (255, 224, 25)]

# name -> (frame, [(obj_id, x, y) normalized], caption)
THUMBS = {
    "sam2long_points_to_masks": (0, [(0, 0.41, 0.42)], "click -> track -> grow/feather"),
    "sam2long_keyframe_bidirectional": (100, [(0, 0.21, 0.59)], "key frame 100  <- both ->"),
    "sam2long_multi_object": (0, [(0, 0.41, 0.42), (1, 0.235, 0.48), (2, 0.625, 0.65)], "3 objects, per-object masks"),
    "sam2long_chunked_long_shot": (0, [(0, 0.41, 0.42)], "range 0-99 -> state -> range 100-199"),
    "sam2long_long_shot_to_disk": (0, [(0, 0.41, 0.42)], "shot on disk -> track -> mattes on disk"),
}


def frames(path, wanted):
    out = {}
    with av.open(path) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in wanted:
                out[i] = f.to_image()
            if i >= max(wanted):
                break
    return out


def main(clip):
    imgs = frames(clip, {t[0] for t in THUMBS.values()})
    for name, (idx, clicks, caption) in THUMBS.items():
        im = imgs[idx].convert("RGB").resize((480, 270))
        d = ImageDraw.Draw(im, "RGBA")
        font = ImageFont.load_default(size=18)
        for oid, x, y in clicks:
            cx, cy = x * im.width, y * im.height
            col = PALETTE[oid % len(PALETTE)]
            d.ellipse((cx - 30, cy - 30, cx + 30, cy + 30), fill=col + (90,), outline=col + (255,), width=3)
            d.ellipse((cx - 5, cy - 5, cx + 5, cy + 5), fill=(255, 255, 255, 255), outline=(0, 0, 0, 255))
            d.rectangle((cx + 12, cy - 34, cx + 34, cy - 12), fill=col + (255,))
            d.text((cx + 17, cy - 33), str(oid), fill=(0, 0, 0, 255), font=font)
        if "chunked" in name:
            d.rectangle((0, 0, im.width // 2, 8), fill=PALETTE[1] + (220,))
            d.rectangle((im.width // 2, 0, im.width, 8), fill=PALETTE[2] + (220,))
        d.rectangle((0, im.height - 34, im.width, im.height), fill=(0, 0, 0, 170))
        d.text((10, im.height - 29), "SAM2Long  " + caption, fill=(255, 255, 255, 255), font=font)
        im.save(os.path.join(REPO, "workflows", name + ".jpg"), quality=85)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/media/bedroom.mp4")
