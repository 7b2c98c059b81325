"""How large a frame may be, checked from a file's header before any pixel is allocated.

A few hundred bytes can claim an enormous picture (an EXR display window, a PNG
header), and decoding it would take all the machine's memory. Every decoder path
(PyAV for video, Pillow, OpenImageIO) checks the size it is about to allocate here
first. The defaults, 16384 pixels on a side and 2^28 pixels in all, hold any real
plate (16K full aperture is 15360 x 8640); a server's owner can raise or lower them
with the environment variables below.
"""

from __future__ import annotations

import os

from .errors import FrameError, first_line

MAX_SIDE_ENV = "SAM2LONG_MAX_FRAME_SIDE"
MAX_PIXELS_ENV = "SAM2LONG_MAX_FRAME_PIXELS"
DEFAULT_MAX_SIDE = 16384
DEFAULT_MAX_PIXELS = 2 ** 28


def _limit(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise FrameError(f"${name}={text!r} is not a whole number >= 1: set it to a number of pixels, "
                         f"or unset it for the default {default}")
    return value


def frame_limits() -> tuple[int, int]:
    """(most pixels on a side, most pixels in all), from the environment or the defaults."""
    return _limit(MAX_SIDE_ENV, DEFAULT_MAX_SIDE), _limit(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS)


def check_frame_size(width: int, height: int, what: str, depth: int = 1, error=FrameError) -> None:
    """Refuse (with `error`) a picture of this size before it is allocated; `what` names it."""
    width, height, depth = int(width), int(height), int(depth)
    size = f"{width}x{height}" + (f"x{depth}" if depth != 1 else "")
    if width < 1 or height < 1 or depth < 1:
        raise error(f"{what} claims an empty size {size}: the file is corrupt; replace or re-render it")
    side, pixels = frame_limits()
    count = width * height * depth
    if max(width, height, depth) > side or count > pixels:
        raise error(f"{what} is {size} ({count:,} pixels), over the limit of {side} pixels a side and "
                    f"{pixels:,} in all: give smaller frames, or raise the limit with ${MAX_SIDE_ENV} and "
                    f"${MAX_PIXELS_ENV}")


def out_of_memory(what: str, error=FrameError) -> Exception:
    """The error for a MemoryError while decoding `what` (raise it `from None`)."""
    return error(f"out of memory decoding {what}: free memory, or lower ${MAX_PIXELS_ENV} "
                 f"(now {frame_limits()[1]:,}) so that frames this large are refused up front")


def open_image(path, what: str, error=FrameError):
    """A Pillow image of `path`, its header read and its size checked; nothing decoded yet.
    Pillow's own guard against decompression bombs (an error, or its warning where warnings
    are errors) becomes `error` too."""
    from PIL import Image

    try:
        im = Image.open(path)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise error(f"{what} is too large to decode ({first_line(e)}): give smaller frames") from None
    try:
        check_frame_size(im.width, im.height, what, error=error)
    except BaseException:
        im.close()
        raise
    return im
