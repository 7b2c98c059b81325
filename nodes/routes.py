"""The HTTP routes of the Prompt Editor, on ComfyUI's own server (PromptServer's routes).

    GET /sam2long/palette                     the overlay colours by object id (JSON)
    GET /sam2long/frame?video=&path=&first_frame=&frame_count=&index=&max=
        one frame of the shot that Load Shot's widgets name, decoded alone and scaled down
        to at most `max` pixels a side (JPEG); `index` counts from the range's first frame
    GET /sam2long/frame?images=<id>&index=&max=  a frame of an IMAGE batch an editor got
    GET /sam2long/masks?track=<id>&index=&max=   that frame's masks of a Track result, as a
        transparent PNG in the overlay colours (a spilled track reads only that frame)

A shot is read under the pack's one path policy (nodes/access.py, through Load Shot's own
resolve): what Load Shot may not read is refused with the same message. Ids come from the
nodes' UI outputs (nodes/served.py). Frame size and count come back in headers
(X-SAM2Long-Width/-Height/-Frames), so the canvas works in source pixels.

Each route is a plain function of the query (`Reply`), wrapped for aiohttp only in
`register()`, so the tests call them without a server.
"""

from __future__ import annotations

import io as pyio
from dataclasses import dataclass, field

import numpy as np

from sam2long.errors import FrameError
from sam2long.media.overlay import PALETTE, outline

from . import access, served, shot
from .widgets import MAX_FRAMES, whole

MAX_SIDE = 4096  # the largest display size asked for
OVERLAY_ALPHA = 110  # 0..255 tint of a mask; its outline is opaque


@dataclass
class Reply:
    status: int
    body: bytes
    content_type: str = "text/plain"
    headers: dict = field(default_factory=dict)


def _text(status: int, message: str) -> Reply:
    return Reply(status, message.encode())


def _int(query, name: str, default: int, lo: int, hi: int) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        value = text
    return whole(value, name, lo, hi)


def _display_size(width: int, height: int, side: int) -> tuple[int, int]:
    scale = min(1.0, side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _sized(width: int, height: int, frames: int) -> dict:
    return {"X-SAM2Long-Width": str(width), "X-SAM2Long-Height": str(height), "X-SAM2Long-Frames": str(frames),
            "Cache-Control": "no-store"}


def _jpeg(rgb: np.ndarray, side: int, frames: int) -> Reply:
    from PIL import Image

    h, w = rgb.shape[:2]
    img = Image.fromarray(np.ascontiguousarray(rgb))
    size = _display_size(w, h, side)
    if size != (w, h):
        img = img.resize(size, Image.BILINEAR)
    buf = pyio.BytesIO()
    img.save(buf, "JPEG", quality=88)
    return Reply(200, buf.getvalue(), "image/jpeg", _sized(w, h, frames))


def palette() -> Reply:
    import json

    return Reply(200, json.dumps([list(c) for c in PALETTE]).encode(), "application/json")


def _shot_frame(query, index: int, side: int) -> Reply:
    from sam2long.media.frames import open_frames

    video, path = query.get("video", ""), query.get("path", "")
    first = _int(query, "first_frame", 0, 0, MAX_FRAMES)
    count = _int(query, "frame_count", 0, 0, MAX_FRAMES)
    real = shot.resolve(video, path)  # the path policy first, as Load Shot applies it
    shot._check_frame_links(real, shot._what(video, path))
    try:
        source = open_frames(real)
    except FrameError as e:
        raise FrameError(f"SAM2Long: {e}") from None
    total = len(source)
    if not first < total:
        raise ValueError(f"SAM2Long: first_frame {first} is outside the shot, which has frames 0..{total - 1}")
    frames = min(count, total - first) if count else total - first
    if not index < frames:
        raise ValueError(f"SAM2Long: frame {index} is outside the range, which has frames 0..{frames - 1}")
    ((_, rgb),) = source.frames([source.first_index + first + index])  # this frame only
    rgb = rgb.numpy() if hasattr(rgb, "numpy") else np.asarray(rgb)
    return _jpeg(rgb[..., :3], side, frames)


def _batch_frame(key: str, index: int, side: int) -> Reply:
    images = served.lookup(key)
    if images is None:
        return _text(404, "SAM2Long: these images are no longer held by the server; queue the graph again")
    n = int(images.shape[0])
    if not index < n:
        raise ValueError(f"SAM2Long: frame {index} is outside the images batch, which has frames 0..{n - 1}")
    rgb = (images[index, ..., :3].detach().float().clamp(0, 1) * 255 + 0.5).to("cpu").byte().numpy()
    return _jpeg(rgb, side, n)


def frame(query) -> Reply:
    """One frame for the canvas (see the module notes)."""
    try:
        index = _int(query, "index", 0, 0, MAX_FRAMES)
        side = _int(query, "max", 768, 16, MAX_SIDE)
        if query.get("images"):
            return _batch_frame(query["images"], index, side)
        return _shot_frame(query, index, side)
    except access.PathNotAllowed as e:
        return _text(403, str(e))
    except FileNotFoundError as e:
        return _text(404, str(e))
    except (ValueError, FrameError) as e:
        return _text(400, str(e))


def overlay_png(masks: dict, width: int, height: int, side: int) -> bytes:
    """RGBA PNG at the display size: each object's mask tinted and outlined in its colour."""
    from PIL import Image

    size = _display_size(width, height, side)
    rgba = np.zeros((size[1], size[0], 4), np.uint8)
    for obj_id, mask in masks.items():
        small = mask if size == (width, height) else \
            np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
        colour = PALETTE[int(obj_id) % len(PALETTE)]
        rgba[small] = (*colour, OVERLAY_ALPHA)
        rgba[outline(small)] = (*colour, 255)
    buf = pyio.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    return buf.getvalue()


def masks(query) -> Reply:
    """One frame's masks of a track result (see the module notes)."""
    try:
        index = _int(query, "index", 0, 0, MAX_FRAMES)
        side = _int(query, "max", 768, 16, MAX_SIDE)
    except ValueError as e:
        return _text(400, str(e))
    track = served.lookup(query.get("track", ""))
    if track is None:
        return _text(404, "SAM2Long: this track is no longer held by the server; queue the graph again")
    if not index < track.num_frames:
        return _text(400, f"SAM2Long: frame {index} is outside the track, which has frames 0..{track.num_frames - 1}")
    body = overlay_png(track.frame_masks(index), track.width, track.height, side)
    return Reply(200, body, "image/png", _sized(track.width, track.height, track.num_frames))


ROUTES = {"/sam2long/palette": lambda q: palette(), "/sam2long/frame": frame, "/sam2long/masks": masks}


def register() -> bool:
    """Adds the routes to ComfyUI's server; False (nothing done) outside ComfyUI."""
    try:
        from server import PromptServer
    except ImportError:
        return False
    routes = getattr(getattr(PromptServer, "instance", None), "routes", None)
    if routes is None:
        return False
    for path, serve in ROUTES.items():
        routes.get(path)(_handler(serve))
    return True


def _handler(serve):
    async def handle(request):
        import asyncio

        from aiohttp import web

        # decoding a frame takes a while: off the event loop, which serves every client
        reply = await asyncio.get_running_loop().run_in_executor(None, serve, dict(request.query))
        return web.Response(status=reply.status, body=reply.body, content_type=reply.content_type,
                            headers=reply.headers)

    return handle
