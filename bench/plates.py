"""bench/run.py section `plates`: what reading one frame of a plate costs, beside MP4.

Frames of cups.mp4 are upscaled (bicubic) to 1920x1080 and 3840x2160 with a little
seeded grain, as film plates have, then written as EXR (half, zip and piz), DPX 10-bit
Cineon log, PNG 8 and 16 bit (all with OpenImageIO) and H.264 MP4 (PyAV, crf 18). Each
is read back through `sam2long.media.frames.open_frames`, forward, as the engine reads it:
decode plus the colour default to uint8 RGB. Reported per frame: wall time and process
CPU time (all threads: OpenImageIO and FFmpeg decode in several), each the total over
the read divided by the frames (a video decoder's pipeline makes single-frame deltas
meaningless), bytes on disk, and the time `open_frames` takes (it reads every header).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = {"1080p": (1920, 1080), "4K": (3840, 2160)}
FORMATS = {  # name -> (extension, OIIO pixel format, attributes)
    "EXR half zip": (".exr", "half", {"compression": "zip"}),
    "EXR half piz": (".exr", "half", {"compression": "piz"}),
    "DPX 10-bit log": (".dpx", "uint16", {"oiio:BitsPerSample": 10, "dpx:Transfer": "Printing density"}),
    "PNG 16-bit": (".png", "uint16", {}),
    "PNG 8-bit": (".png", "uint8", {}),
}


def _frames(media: Path, n: int, size):
    from PIL import Image

    from sam2long.media.frames import open_frames

    src = open_frames(media / "cups.mp4")
    rng = np.random.default_rng(0)
    for _, f in src.frames(range(n)):
        img = np.asarray(Image.fromarray(np.asarray(f)).resize(size, Image.BICUBIC), np.float32)
        yield np.clip(img + rng.normal(0, 2.0, img.shape), 0, 255) / 255.0  # sRGB-encoded 0..1


def _encode(display: np.ndarray, fmt: str) -> np.ndarray:
    from sam2long.media.colour import srgb_to_linear

    if fmt.startswith("EXR"):
        return srgb_to_linear(display).astype(np.float32)
    if fmt.startswith("DPX"):  # linear -> Cineon log code values, 10 bit
        black = 10.0 ** ((95 - 685) * 0.002 / 0.6)
        lin = np.maximum(srgb_to_linear(display), 1e-4)
        return (np.round(685 + np.log10(lin * (1 - black) + black) * 300) / 1023).astype(np.float32)
    return display.astype(np.float32)


def _write(path: Path, pixels: np.ndarray, pixel_format: str, attrs: dict):
    import OpenImageIO as oiio

    h, w, c = pixels.shape
    spec = oiio.ImageSpec(w, h, c, pixel_format)
    for k, v in attrs.items():
        spec.attribute(k, v)
    out = oiio.ImageOutput.create(str(path))
    if out is None or not out.open(str(path), spec) or not out.write_image(pixels):
        raise RuntimeError(f"cannot write {path}: {oiio.geterror()}")
    out.close()


def _write_mp4(path: Path, frames: list, size):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = size[0], size[1], "yuv420p"
        s.options = {"crf": "18", "preset": "veryfast"}
        for f in frames:
            img = np.floor(f * 255 + 0.5).astype(np.uint8)
            for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _read_cost(path: Path) -> dict:
    from sam2long.media.frames import open_frames

    t0 = time.perf_counter()
    src = open_frames(path)
    open_s = time.perf_counter() - t0
    w0, c0 = time.perf_counter(), time.process_time()
    for _, frame in src.frames(range(src.first_index, src.first_index + len(src))):
        assert frame.dtype == np.uint8 and frame.shape == (src.height, src.width, 3)
    n = len(src)
    return dict(open_s=open_s, wall_s=(time.perf_counter() - w0) / n, cpu_s=(time.process_time() - c0) / n,
                load=os.getloadavg()[0], colour=getattr(src, "colour", "PyAV, sRGB"))


def section_plates(media: Path, frames: int) -> list[dict]:
    results = []
    for res_name, size in SIZES.items():
        display = list(_frames(media, frames, size))
        with tempfile.TemporaryDirectory(prefix="plates-bench-") as tmp:
            tmp = Path(tmp)
            cases = []
            for fmt, (ext, pixel_format, attrs) in FORMATS.items():
                d = tmp / fmt.replace(" ", "_")
                d.mkdir()
                for k, f in enumerate(display):
                    _write(d / f"plate.{1001 + k:04d}{ext}", _encode(f, fmt), pixel_format, attrs)
                cases.append((fmt, d, sum(p.stat().st_size for p in d.iterdir())))
            mp4 = tmp / "plate.mp4"
            _write_mp4(mp4, display, size)
            cases.append(("MP4 H.264 crf 18", mp4, mp4.stat().st_size))
            for fmt, path, nbytes in cases:
                r = _read_cost(path)
                r.update(size=res_name, format=fmt, frames=frames, bytes_per_frame=nbytes / frames)
                results.append(r)
                print(f"  {res_name} {fmt}: {r['wall_s'] * 1000:.0f} ms/frame wall, {r['cpu_s'] * 1000:.0f} CPU",
                      flush=True)
    return results


def render_plates(res: list[dict]) -> list[str]:
    import OpenImageIO as oiio

    L = [f"Forward read through `open_frames` (decode + colour default + 8-bit quantisation), "
         f"{res[0]['frames']} frames per case, OpenImageIO {oiio.__version__} with its default threads "
         f"({os.cpu_count()} cores here, shared with other jobs: on a busy box the CPU column is the "
         f"steadier figure), per frame over the whole read.", "",
         "| size | format | wall ms/frame | CPU ms/frame (all threads) | MB/frame | open_frames s (headers) | "
         "load | colour |", "|---|---|---|---|---|---|---|---|"]
    for r in res:
        L.append(f"| {r['size']} | {r['format']} | {r['wall_s'] * 1000:.0f} | {r['cpu_s'] * 1000:.0f} | "
                 f"{r['bytes_per_frame'] / 1e6:.2f} | {r['open_s']:.3f} | {r['load']:.1f} | "
                 f"{r['colour'].split(': ', 1)[-1]} |")
    return L
