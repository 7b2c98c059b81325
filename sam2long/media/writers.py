"""Writers: mattes and previews to disk, each file complete or absent.

Every file is written under a temporary name in its final folder and renamed
when complete, so an interrupted run never leaves a half-written file behind.
The temporary files are made as `files.py` says (never written through a link).
The command line and the ComfyUI save node share these writers.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .files import name_of_open, open_temp


MATTE_FORMATS = ("png", "png16", "exr", "tif16")  # one file per object and frame (MatteWriter)
CRYPTOMATTE = "cryptomatte"  # one file per frame holding every object (media/cryptomatte.py)
FORMATS = MATTE_FORMATS + (CRYPTOMATTE,)  # everything open_writer writes
_EXTENSIONS = {"png": "png", "png16": "png", "exr": "exr", "tif16": "tif"}


def check_matte_format(fmt: str) -> None:
    """A ValueError naming the fix unless `fmt` is a matte format this install can write."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown matte format {fmt!r}: give one of {', '.join(FORMATS)}")
    if fmt != "png":
        try:
            import OpenImageIO  # noqa: F401
        except ImportError:
            raise ValueError(f"matte format {fmt!r} needs OpenImageIO: pip install openimageio "
                             f"(or write 8-bit png mattes)") from None


class MatteWriter:
    """One matte file per (object, frame): `root/<object id>/<prefix>.<frame, padded>.<ext>`
    (`<frame, padded>.<ext>` without a prefix). The object id `None` stands for a single
    sequence (e.g. the union of objects) written in `root` itself.

    `fmt` is one of MATTE_FORMATS: "png" (8-bit grey, written with Pillow), "png16"
    and "tif16" (16-bit grey), "exr" (one half-float channel named "A", which Nuke
    reads as alpha); the last three need OpenImageIO. A matte is bool [H, W] (hard:
    0 or full scale), float [H, W] in 0..1 (soft, e.g. a probability) or uint8
    [H, W] (0..255). `in_flight` is the temporary file being written, removed by
    `cleanup()` after an interruption."""

    def __init__(self, root: Path, obj_ids, padding: int = 5, fmt: str = "png", prefix: str = ""):
        check_matte_format(fmt)
        if fmt not in MATTE_FORMATS:
            raise ValueError(f"matte format {fmt!r} holds all of a frame's objects in one file: "
                             f"open it with open_writer() and write it with write_frame()")
        self.root = Path(root)
        self.obj_ids = list(obj_ids)
        self.padding = int(padding)
        self.fmt = fmt
        self.prefix = str(prefix)
        self.in_flight: Path | None = None
        for obj in self.obj_ids:
            self._folder(obj).mkdir(parents=True, exist_ok=True)

    def _folder(self, obj) -> Path:
        return self.root if obj is None else self.root / str(obj)

    def path(self, obj, frame: int) -> Path:
        number = f"{frame:0{self.padding}d}"
        name = f"{self.prefix}.{number}" if self.prefix else number
        return self._folder(obj) / f"{name}.{_EXTENSIONS[self.fmt]}"

    def write(self, obj: int, frame: int, matte) -> Path:
        m = np.asarray(matte)
        if m.ndim != 2:
            raise ValueError(f"a matte is [H, W], got shape {m.shape}")
        if m.dtype == np.uint8:
            m = m.astype(np.float32) / 255.0
        final = self.path(obj, frame)
        values = np.clip(m.astype(np.float32), 0.0, 1.0)
        fd, tmp = open_temp(final)
        self.in_flight = tmp
        if self.fmt == "png":
            from PIL import Image

            img = Image.fromarray(np.floor(values * 255.0 + 0.5).astype(np.uint8), mode="L")
            with os.fdopen(fd, "wb") as f:
                img.save(f, format="PNG", compress_level=3)
        else:
            try:
                self._write_oiio(final, name_of_open(fd, tmp), values)
            finally:
                os.close(fd)
        os.replace(tmp, final)
        self.in_flight = None
        return final

    def write_frame(self, frame: int, mattes: dict, shape) -> list[Path]:
        """All of a frame's objects at once (as CryptomatteWriter takes them): obj_id ->
        matte; an object not in `mattes` gets an empty matte of `shape` (H, W)."""
        empty = None
        paths = []
        for obj in self.obj_ids:
            m = mattes.get(obj)
            if m is None:
                empty = np.zeros(tuple(shape), bool) if empty is None else empty
                m = empty
            paths.append(self.write(obj, frame, m))
        return paths

    def _write_oiio(self, final: Path, tmp: str, values: np.ndarray) -> None:
        import OpenImageIO as oiio

        h, w = values.shape
        if self.fmt == "exr":
            spec = oiio.ImageSpec(w, h, 1, "half")
            spec.channelnames = ("A",)
            spec.attribute("compression", "zip")
            pixels = values.astype(np.float16)
        else:
            spec = oiio.ImageSpec(w, h, 1, "uint16")
            spec.channelnames = ("Y",)
            if self.fmt == "tif16":
                spec.attribute("compression", "zip")
            pixels = np.floor(values * 65535.0 + 0.5).astype(np.uint16)
        out = oiio.ImageOutput.create(str(final))  # the plugin follows the final name, not the temp one
        if out is None or not out.open(tmp, spec) or not out.write_image(pixels[..., None]):
            error = out.geterror() if out is not None else oiio.geterror()
            if out is not None:
                out.close()
            raise OSError(f"cannot write matte {str(final)!r}: {error}")
        out.close()

    def read(self, obj: int, frame: int, soft: bool = False) -> np.ndarray:
        """The written matte back: bool [H, W] (above half), or float32 0..1 with `soft`."""
        f = self.path(obj, frame)
        if self.fmt == "png":
            from PIL import Image

            with Image.open(f) as im:
                values = np.asarray(im, np.float32) / 255.0
        else:
            import OpenImageIO as oiio

            inp = oiio.ImageInput.open(str(f))
            if inp is None:
                raise OSError(f"cannot read matte {str(f)!r}: {oiio.geterror()}")
            values = inp.read_image(oiio.FLOAT)[..., 0]
            inp.close()
        return values if soft else values > 0.5

    def cleanup(self) -> None:
        if self.in_flight is not None:
            self.in_flight.unlink(missing_ok=True)
            self.in_flight = None


def open_writer(root: Path, obj_ids, padding: int = 5, fmt: str = "png", prefix: str = "",
                names: dict | None = None):
    """The writer for `fmt`: a MatteWriter (a file per object and frame) or a CryptomatteWriter
    (a file per frame; `names` obj_id -> name for its manifest, default `object_<id>`). Both
    take a frame's objects with `write_frame(frame, {obj_id: matte}, (H, W))`, and have
    `path`, `read`, `cleanup` and `in_flight`."""
    check_matte_format(fmt)
    if fmt == CRYPTOMATTE:
        from .cryptomatte import CryptomatteWriter

        return CryptomatteWriter(root, obj_ids, padding=padding, prefix=prefix, names=names)
    return MatteWriter(root, obj_ids, padding=padding, fmt=fmt, prefix=prefix)


def _even(n: int) -> int:
    return n + (n % 2)


class PreviewWriter:
    """An overlay video (H.264, else MPEG-4) written frame by frame to a temporary
    file, renamed into place by `close()`; `abort()` removes it."""

    def __init__(self, path: Path, width: int, height: int, fps: float, opacity: float = 0.55):
        import av

        self.path = Path(path)
        fd, self.tmp = open_temp(self.path)
        self.file = os.fdopen(fd, "w+b")  # the muxer seeks back to finish the mp4
        self.width, self.height = width, height
        self.opacity = opacity
        try:
            self.container = av.open(self.file, mode="w", format="mp4")
        except BaseException:
            self.file.close()
            self.tmp.unlink(missing_ok=True)
            raise
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
            self.abort()
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
        self.file.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass
        self.file.close()
        self.tmp.unlink(missing_ok=True)
