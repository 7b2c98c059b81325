"""Writers: mattes and previews to disk, each file complete or absent.

Every file is written under a temporary name in its final folder and renamed
when complete, so an interrupted run never leaves a half-written file behind.
The command line and the ComfyUI save node share these writers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np


def temp_path(final: Path) -> Path:
    """A hidden sibling of `final`, unique to this process."""
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


class MatteWriter:
    """One matte file per (object, frame): `root/<object id>/<prefix>.<frame, padded>.png`
    (`<frame, padded>.png` without a prefix). The object id `None` stands for a single
    sequence (e.g. the union of objects) written in `root` itself.

    Masks are bool [H, W] (written 0 / 255) or uint8 [H, W]. `in_flight` is the
    temporary file being written, removed by `cleanup()` after an interruption."""

    def __init__(self, root: Path, obj_ids, padding: int = 5, prefix: str = ""):
        self.root = Path(root)
        self.obj_ids = list(obj_ids)
        self.padding = int(padding)
        self.prefix = str(prefix)
        self.in_flight: Path | None = None
        self.written = 0
        for obj in self.obj_ids:
            self._folder(obj).mkdir(parents=True, exist_ok=True)

    def _folder(self, obj) -> Path:
        return self.root if obj is None else self.root / str(obj)

    def path(self, obj, frame: int) -> Path:
        number = f"{frame:0{self.padding}d}"
        return self._folder(obj) / (f"{self.prefix}.{number}.png" if self.prefix else f"{number}.png")

    def write(self, obj: int, frame: int, mask) -> Path:
        from PIL import Image

        m = np.asarray(mask)
        if m.dtype == bool:
            m = m.astype(np.uint8) * 255
        final = self.path(obj, frame)
        tmp = temp_path(final)
        self.in_flight = tmp
        Image.fromarray(np.ascontiguousarray(m, np.uint8), mode="L").save(tmp, format="PNG", compress_level=3)
        os.replace(tmp, final)
        self.in_flight = None
        self.written += 1
        return final

    def read(self, obj: int, frame: int) -> np.ndarray:
        """The written matte back as bool [H, W]."""
        from PIL import Image

        with Image.open(self.path(obj, frame)) as im:
            return np.asarray(im) > 127

    def cleanup(self) -> None:
        if self.in_flight is not None:
            self.in_flight.unlink(missing_ok=True)
            self.in_flight = None


def _even(n: int) -> int:
    return n + (n % 2)


class PreviewWriter:
    """An overlay video (H.264, else MPEG-4) written frame by frame to a temporary
    file, renamed into place by `close()`; `abort()` removes it."""

    def __init__(self, path: Path, width: int, height: int, fps: float, opacity: float = 0.55):
        import av

        self.path = Path(path)
        self.tmp = temp_path(self.path)
        self.width, self.height = width, height
        self.opacity = opacity
        self.container = av.open(str(self.tmp), mode="w", format="mp4")
        rate = max(1, int(round(fps))) if fps and fps > 0 else 24
        self.stream = None
        for codec in ("libx264", "h264", "mpeg4"):
            try:
                stream = self.container.add_stream(codec, rate=rate)
            except Exception:
                continue
            self.stream = stream
            break
        if self.stream is None:  # pragma: no cover - PyAV always ships mpeg4
            self.container.close()
            raise RuntimeError("no H.264 or MPEG-4 encoder in this PyAV build")
        self.codec = self.stream.codec_context.name
        self.stream.width, self.stream.height = _even(width), _even(height)
        self.stream.pix_fmt = "yuv420p"
        if self.codec in ("libx264", "h264"):
            self.stream.options = {"crf": "20", "preset": "veryfast"}
        else:
            self.stream.bit_rate = max(2_000_000, width * height * 8)
        self.frames = 0

    def add(self, image, masks: dict) -> None:
        """`image` uint8 [H, W, 3]; `masks` object id -> bool [H, W] (or None)."""
        import av

        from .overlay import draw_overlay

        img = np.asarray(image)[..., :3].astype(np.float32) / 255.0
        draw_overlay(img, masks, self.opacity)
        out = (img * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
        if out.shape[0] % 2 or out.shape[1] % 2:
            out = np.pad(out, ((0, out.shape[0] % 2), (0, out.shape[1] % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(out), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass
        self.tmp.unlink(missing_ok=True)
