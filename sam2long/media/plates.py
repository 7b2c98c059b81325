"""Plates: numbered image sequences read one frame at a time, with their frame numbers.

A shot on disk is `plate.1001.exr ... plate.1240.exr`. It can be named by a
pattern (`plate.####.exr`, `plate.%04d.exr`, `plate.@@@@.exr`: one `#`/`@` per
digit), by its folder, or by any one of its files. Frame numbers come from the
file names and are kept: the source's `first_index` is the first frame number,
so the engine's frame indices are the plate's frame numbers. A sequence must be
contiguous (a gap is an error naming the missing numbers) and of one size.

Every frame comes out as uint8 RGB [H, W, 3], display-referred, because the
network was trained on 8-bit sRGB-like images. The colour default per file type:
  EXR, float TIFF     scene-linear Rec.709 -> sRGB OETF, clipped to 0..1
  DPX                 Cineon log (ref. black 95, white 685 of 1023) -> linear -> sRGB,
                      unless its header says linear (then as EXR) or a video curve
                      (then taken as display-encoded)
  PNG/TIFF 8/16-bit, JPEG, WebP   taken as sRGB (only rescaled to 8 bit)
With an OCIO config (`$OCIO`, the `ocio_config` argument, or OpenImageIO's
built-in config) and a named input colour space, OpenImageIO's colorconvert
takes the frame from that space to sRGB instead. Values are quantised to 8 bit
with round-half-up, as an 8-bit file write would.

8-bit JPEG/PNG/WebP are decoded with Pillow, as SAM 2's own loader does; EXR,
DPX, TIFF and 16-bit PNG need the `openimageio` wheel (imported lazily).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from ..errors import FrameError, first_line
from ..limits import check_frame_size, open_image, out_of_memory
from .colour import DESCRIPTIONS, TRANSFERS, default_transfer, quantise, transfer_lut

PIL_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
OIIO_EXTENSIONS = (".exr", ".dpx", ".tif", ".tiff")
IMAGE_EXTENSIONS = PIL_EXTENSIONS + OIIO_EXTENSIONS

_TOKEN = re.compile(r"#+|@+|%0?(\d*)d")  # a frame-number placeholder in a pattern
_NUMBERED = re.compile(r"^(.*?)(\d+)(\.[A-Za-z0-9]+)$")  # name = prefix, frame number, extension


def oiio():
    """The OpenImageIO module, or a FrameError naming the fix."""
    try:
        import OpenImageIO
    except ImportError:
        raise FrameError(
            "reading EXR, DPX, TIFF or 16-bit PNG plates needs OpenImageIO: pip install openimageio "
            "(or convert the plates to 8-bit PNG/JPEG)"
        ) from None
    return OpenImageIO


# --------------------------------------------------------------------------------------
# Finding the files of a sequence.


def is_sequence_path(path: Path) -> bool:
    """Whether `path` names a sequence by a pattern (which need not exist as a file)."""
    return _TOKEN.search(path.name) is not None


def _compact(numbers: list[int]) -> str:
    """1001, 1002, 1003, 1007 -> '1001-1003, 1007' (first 8 runs)."""
    runs: list[list[int]] = []
    for n in numbers:
        if runs and n == runs[-1][1] + 1:
            runs[-1][1] = n
        else:
            runs.append([n, n])
    text = ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs[:8])
    return text + (f" and {len(runs) - 8} more runs" if len(runs) > 8 else "")


def _from_pattern(path: Path):
    """Files matching `plate.####.exr` / `%04d` / `@@@@` in the pattern's folder."""
    name = path.name
    tokens = list(_TOKEN.finditer(name))
    if len(tokens) != 1:
        raise FrameError(f"{str(path)!r} has {len(tokens)} frame-number placeholders: use exactly one "
                         f"(plate.####.exr, plate.%04d.exr or plate.@@@@.exr)")
    t = tokens[0]
    if t.group(0).startswith("%"):
        padding = int(t.group(1) or 1)
    else:
        padding = len(t.group(0))
    prefix, suffix = name[: t.start()], name[t.end():]
    # exactly `padding` digits, or more without a leading zero (frame 10000 of ####)
    digits = rf"(\d{{{padding}}}|[1-9]\d{{{padding},}})"
    rx = re.compile("^" + re.escape(prefix) + digits + re.escape(suffix) + "$")
    folder = path.parent
    if not folder.is_dir():
        raise FrameError(f"the folder of {str(path)!r} does not exist: give the path of the plates")
    found = {}
    for f in folder.iterdir():
        m = rx.match(f.name)
        if m and f.is_file():
            found[int(m.group(1))] = f
    if not found:
        raise FrameError(f"no files match {str(path)!r}: check the name and the padding "
                         f"(one # or @ per digit, or %04d)")
    return found, padding, prefix + "#" * padding + suffix


def _group(files: list[Path]):
    """Group numbered files by (prefix, extension): {key: [(digits, file)]}."""
    groups: dict[tuple[str, str], list[tuple[str, Path]]] = {}
    for f in files:
        m = _NUMBERED.match(f.name)
        if m:
            groups.setdefault((m.group(1), m.group(3).lower()), []).append((m.group(2), f))
    return groups


def _from_files(entries: list[tuple[str, Path]], prefix: str, suffix: str):
    """Frame numbers and padding from numbered names (padding = fewest digits)."""
    padding = min(len(d) for d, _ in entries)
    found = {}
    for digits, f in entries:
        n = int(digits)
        if digits != f"{n:0{padding}d}" or n in found:
            other = found.get(n)
            raise FrameError(
                f"{str(f)!r} does not fit the numbering of its sequence (padding {padding}"
                + (f", frame {n} is also {other.name!r}" if other else "")
                + "): give one sequence with one padding, e.g. as a pattern plate.####.exr"
            )
        found[n] = f
    return found, padding, prefix + "#" * padding + suffix


def find_sequence(path) -> tuple[dict[int, Path], int, str]:
    """(frame number -> file, padding, display pattern) for a pattern, folder or one file."""
    p = Path(path).expanduser()
    if is_sequence_path(p):
        return _from_pattern(p)
    if p.is_dir():
        files = [f for f in p.iterdir()
                 if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_EXTENSIONS]
        if not files:
            raise FrameError(f"no frames in folder {str(p)!r}: it must hold images named with their frame "
                             f"number ({' '.join(IMAGE_EXTENSIONS)})")
        groups = _group(files)
        if not groups:
            raise FrameError(f"the images in folder {str(p)!r} have no frame number in their names "
                             f"(e.g. {files[0].name!r}): name them plate.1001.png, plate.1002.png, ...")
        if len(groups) > 1:
            names = ", ".join(sorted(pre + "#" * min(len(d) for d, _ in g) + ext for (pre, ext), g in groups.items()))
            raise FrameError(f"folder {str(p)!r} holds several sequences ({names}): give one of them as a "
                             f"pattern, e.g. {str(p / sorted(groups)[0][0])}####{sorted(groups)[0][1]}")
        (prefix, ext), entries = next(iter(groups.items()))
        return _from_files(entries, prefix, ext)
    m = _NUMBERED.match(p.name)
    if m is None:
        raise FrameError(f"{str(path)!r} is a single image with no frame number: give the shot's folder, "
                         f"a pattern such as plate.####.exr, or one numbered file of the sequence")
    prefix, ext = m.group(1), m.group(3).lower()
    siblings = [f for f in p.parent.iterdir() if f.is_file() and f.suffix.lower() == ext]
    entries = _group(siblings).get((prefix, ext), [])
    return _from_files(entries, prefix, m.group(3))


# --------------------------------------------------------------------------------------
# The source.


class _Header:
    """What one file's header says, read without its pixels."""

    def __init__(self, f: Path, use_oiio: bool):
        self.file = f
        self.oiio = use_oiio
        if not use_oiio:
            try:
                with open_image(f, f"frame {str(f)!r}") as im:
                    self.width, self.height = im.size
            except FrameError:
                raise
            except Exception as e:
                raise FrameError(f"cannot read frame {str(f)!r} ({first_line(e)}): replace or remove it") from None
            self.format, self.channels, self.fps, self.dpx_transfer = "uint8", None, None, ""
            return
        io = oiio()
        inp = io.ImageInput.open(str(f))
        if inp is None:
            raise FrameError(f"cannot read frame {str(f)!r} ({first_line(io.geterror())}): "
                             f"the file is corrupt or truncated; replace or re-render it")
        try:
            s = inp.spec()
        finally:
            inp.close()
        self.layout = _layout(s)
        if s.depth != 1:
            raise FrameError(f"{str(f)!r} is a volume image ({s.depth} slices deep), not a frame: "
                             f"give plates of flat images")
        # Both windows are allocated when the frame is read: the display window (the frame)
        # and the data window (the pixels stored), which may be far larger or smaller.
        check_frame_size(s.full_width, s.full_height, f"frame {str(f)!r} (its display window)")
        check_frame_size(s.width, s.height, f"frame {str(f)!r} (its data window)")
        self.width, self.height = s.full_width, s.full_height
        self.window = (s.x - s.full_x, s.y - s.full_y, s.width, s.height)  # data window in display coords
        self.format = str(s.format)
        self.channels = _rgb_channels(list(s.channelnames), f)
        self.dpx_transfer = s.get_string_attribute("dpx:Transfer")
        fps = s.getattribute("FramesPerSecond")
        if isinstance(fps, tuple) and len(fps) == 2 and fps[1]:
            fps = fps[0] / fps[1]
        self.fps = float(fps) if isinstance(fps, (int, float)) and fps > 0 else None


def _layout(spec) -> tuple:
    """What decides the allocations of a read: the windows, channels and pixel type."""
    return (spec.full_x, spec.full_y, spec.full_width, spec.full_height, spec.x, spec.y, spec.width,
            spec.height, spec.depth, spec.nchannels, str(spec.format))


def _rgb_channels(names: list[str], f: Path) -> list[int]:
    """Indices of R, G, B (a single grey channel, optionally with alpha, is repeated)."""
    upper = [n.upper() for n in names]
    if all(c in upper for c in "RGB"):
        return [upper.index(c) for c in "RGB"]
    if len(names) == 1 or (len(names) == 2 and upper[1] == "A"):
        return [0, 0, 0]
    raise FrameError(
        f"{str(f)!r} has channels {', '.join(names)}, not R, G, B: give plates with R, G, B (and A) "
        f"channels or one grey channel; for a multi-layer EXR write out the layer to track as R, G, B"
    )


def _needs_oiio(f: Path) -> bool:
    ext = f.suffix.lower()
    if ext in OIIO_EXTENSIONS:
        return True
    if ext == ".png":  # 16-bit PNGs: Pillow would drop their low byte
        with open(f, "rb") as fh:
            head = fh.read(25)
        return len(head) == 25 and head[24] == 16
    return False


class PlateFrames:
    """A numbered image sequence as a streaming `FrameSource` (see the module doc).

    `first_index` is the first frame number, `padding` the digits of the names,
    `fps` the rate the headers state (None if they do not), `colour` the colour
    conversion applied, in words. `colorspace` names the input colour space for an
    OCIO conversion (config: `ocio_config`, else $OCIO, else OpenImageIO's built-in)."""

    def __init__(self, path, colorspace: str | None = None, ocio_config: str | None = None):
        found, self.padding, self.pattern = find_sequence(path)
        self.path = Path(path)
        numbers = sorted(found)
        first, last = numbers[0], numbers[-1]
        if len(numbers) != last - first + 1:
            missing = sorted(set(range(first, last + 1)) - set(numbers))
            raise FrameError(
                f"the sequence {self.pattern} has a gap: frame(s) {_compact(missing)} missing between "
                f"{first} and {last}: render or copy the missing frames (every frame of a shot is needed)"
            )
        self.first_index = first
        self.files = [found[n] for n in numbers]
        self._headers = [_Header(f, _needs_oiio(f)) for f in self.files]
        h0 = self._headers[0]
        for h in self._headers[1:]:
            if (h.width, h.height) != (h0.width, h0.height):
                raise FrameError(
                    f"frame {str(h.file)!r} is {h.width}x{h.height} but {h0.file.name!r} is "
                    f"{h0.width}x{h0.height}: every frame of a shot must have the same size"
                )
        self.width, self.height = int(h0.width), int(h0.height)
        self.fps = h0.fps
        ext = h0.file.suffix.lower()
        self._ocio = None
        if colorspace:
            self._ocio = _ocio_setup(colorspace, ocio_config)
            self.colour = f"{self.pattern}: OCIO {colorspace!r} -> {self._ocio[1]!r} (config {self._ocio[0]})"
        else:
            transfer, why = default_transfer(ext, h0.format, h0.dpx_transfer)
            self.colour = f"{self.pattern}: {why}, {DESCRIPTIONS[transfer]}"

    def __len__(self) -> int:
        return len(self.files)

    def __repr__(self) -> str:
        return (f"PlateFrames({self.pattern!r}, {self.width}x{self.height}, frames {self.first_index}-"
                f"{self.first_index + len(self) - 1})")

    def _read(self, h: _Header) -> np.ndarray:
        what = f"frame {str(h.file)!r}"
        changed = (f"{what} changed on disk after the shot was opened (it is another size or layout now): "
                   f"open the shot again")
        try:
            if not h.oiio:
                try:
                    with open_image(h.file, what) as im:
                        if im.size != (h.width, h.height):
                            raise FrameError(changed)
                        return np.array(im.convert("RGB"), dtype=np.uint8)  # a writable copy
                except (FrameError, MemoryError):
                    raise
                except Exception as e:
                    raise FrameError(f"cannot read {what} ({first_line(e)}): replace or remove it") from None
            return self._read_oiio(h, what, changed)
        except MemoryError:
            raise out_of_memory(f"{what} ({self.width}x{self.height})") from None

    def _read_oiio(self, h: _Header, what: str, changed: str) -> np.ndarray:
        io = oiio()
        half = h.format == "half" and self._ocio is None
        small_int = h.format in ("uint8", "uint16", "int8", "int16") and self._ocio is None
        kind = "half" if half else "uint16" if small_int else "float"
        inp = io.ImageInput.open(str(h.file))
        if inp is None:
            error, pixels = io.geterror(), None
        else:
            try:
                if _layout(inp.spec()) != h.layout:  # sizes were checked on the header read then
                    raise FrameError(changed)
                lo, hi = min(h.channels), max(h.channels) + 1
                pixels = inp.read_image(0, 0, lo, hi, kind)
                error = inp.geterror()
            finally:
                inp.close()
        if pixels is None:
            raise FrameError(f"cannot read {what} ({first_line(error)}): the file is "
                             f"corrupt or truncated; replace or re-render it")
        pixels = pixels.reshape(h.window[3], h.window[2], hi - lo)
        if h.channels != [0, 1, 2]:  # grey, or R, G, B not first and in order
            pixels = pixels[..., [c - lo for c in h.channels]]
        # the data window may be smaller (or larger) than the frame: crop, then place
        x, y, w, hgt = h.window
        x0, y0 = max(0, -x), max(0, -y)
        x1, y1 = min(w, self.width - x), min(hgt, self.height - y)
        out = np.zeros((self.height, self.width, 3), np.uint8)  # black outside the data window
        if x1 <= x0 or y1 <= y0:
            return out
        data = pixels[y0:y1, x0:x1]  # a view
        if self._ocio is not None:
            display = self._ocio_convert(data, io)
        elif kind == "float":
            transfer, _ = default_transfer(h.file.suffix.lower(), h.format, h.dpx_transfer)
            display = quantise(TRANSFERS[transfer](np.nan_to_num(data.astype(np.float64))))
        else:
            transfer, _ = default_transfer(h.file.suffix.lower(), h.format, h.dpx_transfer)
            display = np.take(transfer_lut(transfer, kind), np.ascontiguousarray(data).view(np.uint16))
        if display.shape[:2] == (self.height, self.width):
            return display
        out[y + y0:y + y1, x + x0:x + x1] = display
        return out

    def _ocio_convert(self, data: np.ndarray, io) -> np.ndarray:
        config, target, source = self._ocio
        buf = io.ImageBuf(np.ascontiguousarray(data, np.float32))
        res = io.ImageBufAlgo.colorconvert(buf, source, target, colorconfig=config)
        if res.has_error:
            raise FrameError(f"OCIO conversion {source!r} -> {target!r} failed ({res.geterror()}): "
                             f"check the colour space names in {config}")
        return quantise(res.get_pixels(io.FLOAT).reshape(data.shape))

    def frames(self, indices):
        first, last = self.first_index, self.first_index + len(self.files) - 1
        for i in indices:
            if not first <= i <= last:
                raise IndexError(f"frame {i} is not in this shot: its frames are {first}-{last}")
            yield i, self._read(self._headers[i - first])


_SRGB_NAMES = ("sRGB", "srgb_tx", "srgb_rec709_scene", "sRGB - Texture", "Utility - sRGB - Texture")


def _ocio_setup(colorspace: str, ocio_config: str | None) -> tuple[str, str, str]:
    """(config, sRGB target space, source space), or a FrameError naming the fix."""
    io = oiio()
    config = ocio_config or os.environ.get("OCIO") or "ocio://default"
    if not config.startswith("ocio://") and not Path(config).is_file():
        raise FrameError(f"the OCIO config {config!r} does not exist: give the path of a config.ocio "
                         f"(--ocio or $OCIO), or leave both unset for OpenImageIO's built-in config")
    cfg = io.ColorConfig(config)
    error = cfg.geterror()
    if error or cfg.getNumColorSpaces() == 0:
        raise FrameError(f"cannot load the OCIO config {config!r} ({error or 'no colour spaces'}): "
                         f"give a valid config.ocio")
    names = list(cfg.getColorSpaceNames())
    if cfg.getColorSpaceIndex(colorspace) < 0 and not cfg.resolve(colorspace) in names:
        raise FrameError(f"the OCIO config {config!r} has no colour space {colorspace!r}: give one of "
                         f"{', '.join(names[:30])}{', ...' if len(names) > 30 else ''}")
    target = next((n for n in _SRGB_NAMES if cfg.getColorSpaceIndex(n) >= 0 or cfg.resolve(n) in names), None)
    if target is None:
        raise FrameError(f"the OCIO config {config!r} has no sRGB colour space to convert the plates to: "
                         f"add one named 'sRGB' to the config")
    return config, target, colorspace
