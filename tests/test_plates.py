"""Plates: image sequences written with OpenImageIO, read back through `open_frames`,
and every matte format read back with OpenImageIO."""

from __future__ import annotations

import os
import stat
import sys

import numpy as np
import pytest
from PIL import Image

from sam2long.errors import FrameError
from sam2long.media.frames import open_frames
from sam2long.media.colour import cineon_to_linear, quantise, srgb_oetf, srgb_to_linear
from sam2long.media.plates import PlateFrames
from sam2long.media.writers import MATTE_FORMATS, MatteWriter

oiio = pytest.importorskip("OpenImageIO")

W, H = 48, 32


def srgb_image(i=0, w=W, h=H):
    """Every 8-bit code appears (a ramp) plus per-frame texture."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (xx * w + yy + 7 * i) % 256
    img[..., 1] = (yy * 8 + xx * 3 + 11 * i) % 256
    img[..., 2] = (xx * 5 + i) % 256
    return img


def write_image(path, pixels, fmt, channels=("R", "G", "B"), compression=None, bits=None, attrs=(),
                display=None, origin=(0, 0)):
    """Write `pixels` [h, w, c] with OpenImageIO; `display` (w, h) sets a larger display window."""
    h, w, c = pixels.shape
    spec = oiio.ImageSpec(w, h, c, fmt)
    spec.channelnames = tuple(channels)
    spec.x, spec.y = origin
    if display:
        spec.full_x, spec.full_y = 0, 0
        spec.full_width, spec.full_height = display
    if compression:
        spec.attribute("compression", compression)
    if bits:
        spec.attribute("oiio:BitsPerSample", bits)
    for a in attrs:
        spec.attribute(*a)
    out = oiio.ImageOutput.create(str(path))
    assert out.open(str(path), spec), out.geterror()
    assert out.write_image(np.ascontiguousarray(pixels)), out.geterror()
    out.close()
    return path


def linear_of(img):
    return srgb_to_linear(img / 255.0)


def frames_of(src):
    return {i: np.asarray(f) for i, f in src.frames(range(src.first_index, src.first_index + len(src)))}


def diff_stats(a, b):
    d = np.abs(a.astype(int) - b.astype(int))
    return int(d.max()), float((d == 0).mean())


# --- EXR ---------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt,compression", [("half", "zip"), ("half", "piz"), ("float", "zip"),
                                             ("float", "piz"), ("half", "none")])
def test_linear_exr_decodes_back_to_its_srgb_image(tmp_path, fmt, compression):
    for i in range(3):
        write_image(tmp_path / f"plate.{1001 + i}.exr", linear_of(srgb_image(i)).astype(np.float32), fmt,
                    compression=compression)
    src = open_frames(tmp_path / "plate.####.exr")
    assert isinstance(src, PlateFrames)
    assert (src.first_index, len(src), src.padding, src.width, src.height) == (1001, 3, 4, W, H)
    assert "EXR" in src.colour and "scene-linear" in src.colour
    got = frames_of(src)
    for i in range(3):
        f = got[1001 + i]
        assert f.shape == (H, W, 3) and f.dtype == np.uint8
        # exact, half included: half's 11-bit mantissa is finer than half an 8-bit sRGB step
        # in linear light at every one of the 256 codes (the ramp holds them all)
        assert np.array_equal(f, srgb_image(i))


def test_exr_rgba_and_data_window_inside_display_window(tmp_path):
    img = srgb_image(0, 20, 10)
    rgba = np.concatenate([linear_of(img), np.full((10, 20, 1), 0.5)], axis=2).astype(np.float32)
    # channels stored A first: the reader goes by name
    write_image(tmp_path / "p.0001.exr", rgba[..., [3, 0, 1, 2]], "half", channels=("A", "R", "G", "B"),
                display=(40, 30), origin=(5, 4), attrs=[("FramesPerSecond", oiio.TypeDesc("rational"), (24000, 1001))])
    src = open_frames(tmp_path / "p.0001.exr")
    assert (src.width, src.height, src.first_index, src.padding) == (40, 30, 1, 4)
    assert abs(src.fps - 23.976) < 1e-3
    (_, f), = src.frames([1])
    assert diff_stats(f[4:14, 5:25], img)[0] <= 1
    outside = np.ones((30, 40), bool)
    outside[4:14, 5:25] = False
    assert not f[outside].any()  # black outside the data window


def test_exr_data_window_larger_than_display_window_is_cropped(tmp_path):
    img = srgb_image(0, 30, 20)
    write_image(tmp_path / "p.1.exr", linear_of(img).astype(np.float32), "float", display=(20, 10),
                origin=(-3, -2))
    (_, f), = open_frames(tmp_path / "p.1.exr").frames([1])
    assert f.shape == (10, 20, 3) and np.array_equal(f, img[2:12, 3:23])


def test_exr_values_above_one_are_clipped_and_grey_is_repeated(tmp_path):
    grey = np.linspace(-0.5, 4.0, W * H, dtype=np.float32).reshape(H, W, 1)
    write_image(tmp_path / "g.1001.exr", grey, "half", channels=("Y",))
    (_, f), = open_frames(tmp_path / "g.1001.exr").frames([1001])
    expect = quantise(srgb_oetf(grey[..., 0].astype(np.float16).astype(np.float64)))
    assert np.array_equal(f[..., 0], expect) and np.array_equal(f[..., 0], f[..., 2])
    assert f.min() == 0 and f.max() == 255


# --- DPX, TIFF, PNG ------------------------------------------------------------------------


def cineon_codes(linear):
    """Linear -> Cineon log code value in 0..1 of 1023 (the inverse of the reader's)."""
    black = 10.0 ** ((95 - 685) * 0.002 / 0.6)
    return (685.0 + np.log10(linear * (1 - black) + black) * 0.6 / 0.002) / 1023.0


def test_dpx_10bit_cineon_log_default(tmp_path):
    img = srgb_image(0)
    lin = np.maximum(linear_of(img), 1e-4)
    codes = np.round(cineon_codes(lin) * 1023) / 1023  # 10-bit
    write_image(tmp_path / "s.1001.dpx", codes.astype(np.float32), "uint16", bits=10,
                attrs=[("dpx:Transfer", "Printing density")])
    src = open_frames(tmp_path / "s.1001.dpx")
    assert "Cineon log" in src.colour and "Printing density" in src.colour
    spec = oiio.ImageInput.open(str(tmp_path / "s.1001.dpx")).spec()
    assert spec.get_int_attribute("oiio:BitsPerSample") == 10
    (_, f), = src.frames([1001])
    # the expected frame, computed from the 10-bit codes with the same formula
    expect = quantise(srgb_oetf(cineon_to_linear(codes)))
    assert diff_stats(f, expect)[0] <= 1
    # and the original image within one code (measured: exact), 10-bit log being finer than 8-bit sRGB
    assert diff_stats(f, img)[0] <= 1


def test_dpx_header_linear_is_taken_as_linear(tmp_path):
    img = srgb_image(0)
    write_image(tmp_path / "s.1.dpx", linear_of(img).astype(np.float32), "uint16", bits=16,
                attrs=[("dpx:Transfer", "Linear")])
    src = open_frames(tmp_path / "s.1.dpx")
    assert "header: linear" in src.colour and "scene-linear" in src.colour
    (_, f), = src.frames([1])
    assert diff_stats(f, img)[0] <= 1  # 16-bit linear is coarse only in the deepest darks


@pytest.mark.parametrize("name,fmt", [("t.0001.tif", "uint16"), ("t.0001.png", "uint16"), ("t.0001.tif", "uint8")])
def test_integer_tiff_and_png16_are_srgb(tmp_path, name, fmt):
    rng = np.random.default_rng(0)
    top = 65535 if fmt == "uint16" else 255
    codes = rng.integers(0, top + 1, (H, W, 3)).astype(np.uint16 if fmt == "uint16" else np.uint8)
    write_image(tmp_path / name, codes, fmt)
    src = open_frames(tmp_path / name)
    assert "taken as sRGB" in src.colour
    (_, f), = src.frames([1])
    assert np.array_equal(f, np.floor(codes / top * 255 + 0.5).astype(np.uint8))


def test_float_tiff_is_linear(tmp_path):
    img = srgb_image(0)
    write_image(tmp_path / "t.1001.tif", linear_of(img).astype(np.float32), "float")
    src = open_frames(tmp_path / "t.1001.tif")
    assert "float TIFF" in src.colour and "scene-linear" in src.colour
    (_, f), = src.frames([1001])
    assert np.array_equal(f, img)


# --- sequence syntax and numbering ----------------------------------------------------------


def png_sequence(folder, numbers, digits=4, prefix="plate.", size=(W, H)):
    folder.mkdir(exist_ok=True)
    for k, n in enumerate(numbers):
        Image.fromarray(srgb_image(k, *size)).save(folder / f"{prefix}{n:0{digits}d}.png")
    return folder


@pytest.mark.parametrize("spec", ["plate.####.png", "plate.%04d.png", "plate.@@@@.png", "", "plate.1003.png"])
def test_sequence_syntax(tmp_path, spec):
    d = png_sequence(tmp_path / "shot", range(1001, 1006))
    (d / "notes.txt").write_text("not a frame")
    src = open_frames(d / spec if spec else d)
    assert (src.first_index, len(src), src.padding, src.pattern) == (1001, 5, 4, "plate.####.png")
    got = frames_of(src)
    assert sorted(got) == list(range(1001, 1006))
    assert all(np.array_equal(got[1001 + k], srgb_image(k)) for k in range(5))  # 8-bit PNG: exact


def test_unpadded_and_over_padding_numbers(tmp_path):
    d = png_sequence(tmp_path / "a", range(8, 13), digits=1)  # plate.8 ... plate.12
    src = open_frames(d)
    assert (src.first_index, len(src), src.padding) == (8, 5, 1)
    assert [f.name for f in src.files] == [f"plate.{n}.png" for n in range(8, 13)]
    d = png_sequence(tmp_path / "b", range(9998, 10002))  # #### grows past 9999
    src = open_frames(d / "plate.####.png")
    assert (src.first_index, len(src), src.padding) == (9998, 4, 4)
    assert len(open_frames(d / "plate.%d.png")) == 4  # no leading zero: fits unpadded too
    png_sequence(tmp_path / "c", range(8, 13))
    with pytest.raises(FrameError, match="no files match"):
        open_frames(tmp_path / "c" / "plate.%d.png")  # 0008 is padded


def test_gap_names_the_missing_frames(tmp_path):
    d = png_sequence(tmp_path / "s", [1001, 1002, 1005, 1006, 1008])
    with pytest.raises(FrameError, match=r"gap: frame\(s\) 1003-1004, 1007 missing between 1001 and 1008"):
        open_frames(d)


def test_mixed_sizes_corrupt_and_truncated_files(tmp_path):
    d = png_sequence(tmp_path / "s", range(1, 4))
    Image.fromarray(np.zeros((H + 1, W, 3), np.uint8)).save(d / "plate.0003.png")
    with pytest.raises(FrameError, match=rf"plate\.0003\.png.*{W}x{H + 1}.*{W}x{H}.*same size"):
        open_frames(d)
    e = tmp_path / "e"
    e.mkdir()
    for n in (1, 2):
        write_image(e / f"p.{n}.exr", np.zeros((H, W, 3), np.float32), "half")
    (e / "p.3.exr").write_bytes(b"this is not an exr" * 10)
    with pytest.raises(FrameError, match=r"p\.3\.exr.*corrupt or truncated"):
        open_frames(e)
    # header whole, pixels cut off: found when the frame is read, named
    write_image(e / "p.3.exr", linear_of(srgb_image(0)).astype(np.float32), "float", compression="none")
    data = (e / "p.3.exr").read_bytes()
    (e / "p.3.exr").write_bytes(data[: len(data) - 2000])
    src = open_frames(e)
    with pytest.raises(FrameError, match=r"p\.3\.exr.*corrupt or truncated"):
        list(src.frames([1, 2, 3]))


def test_unsupported_channels_and_bad_names(tmp_path):
    write_image(tmp_path / "xyz.1.exr", np.zeros((H, W, 3), np.float32), "half", channels=("X", "Y", "Z"))
    with pytest.raises(FrameError, match=r"channels X, Y, Z, not R, G, B"):
        open_frames(tmp_path / "xyz.1.exr")
    with pytest.raises(FrameError, match="no files match"):
        open_frames(tmp_path / "nothing.####.exr")
    with pytest.raises(FrameError, match="exactly one"):
        open_frames(tmp_path / "a.##.b.##.exr")
    d = png_sequence(tmp_path / "two", range(1, 3))
    png_sequence(d, range(1, 3), prefix="other_")
    with pytest.raises(FrameError, match=r"several sequences \(other_####\.png, plate\.####\.png\)"):
        open_frames(d)
    Image.fromarray(srgb_image(0)).save(tmp_path / "still.png")
    with pytest.raises(FrameError, match="no frame number"):
        open_frames(tmp_path / "still.png")


def test_frame_outside_the_shot(tmp_path):
    src = open_frames(png_sequence(tmp_path / "s", range(1001, 1004)))
    with pytest.raises(IndexError, match="frame 12 is not in this shot: its frames are 1001-1003"):
        list(src.frames([12]))


# --- OCIO -----------------------------------------------------------------------------------


def test_ocio_builtin_config(tmp_path, monkeypatch):
    monkeypatch.delenv("OCIO", raising=False)
    img = srgb_image(0)
    write_image(tmp_path / "p.1.exr", linear_of(img).astype(np.float32), "float")
    src = open_frames(tmp_path / "p.1.exr", colorspace="lin_rec709")
    assert "OCIO 'lin_rec709'" in src.colour and "ocio://default" in src.colour
    (_, f), = src.frames([1])
    assert diff_stats(f, img)[0] <= 1  # OCIO's sRGB curve against ours
    aces = open_frames(tmp_path / "p.1.exr", colorspace="ACEScg")
    (_, g), = aces.frames([1])
    assert g.shape == f.shape and not np.array_equal(g, f)  # another input space, another picture


def test_ocio_errors(tmp_path, monkeypatch):
    write_image(tmp_path / "p.1.exr", np.zeros((H, W, 3), np.float32), "half")
    with pytest.raises(FrameError, match="no colour space 'nope'.*ACEScg"):
        open_frames(tmp_path / "p.1.exr", colorspace="nope")
    with pytest.raises(FrameError, match="OCIO config '.*missing.ocio' does not exist"):
        open_frames(tmp_path / "p.1.exr", colorspace="ACEScg", ocio_config=str(tmp_path / "missing.ocio"))
    monkeypatch.setenv("OCIO", str(tmp_path / "env.ocio"))
    with pytest.raises(FrameError, match="env.ocio' does not exist"):
        open_frames(tmp_path / "p.1.exr", colorspace="ACEScg")


# --- without OpenImageIO ------------------------------------------------------------------------


def test_without_openimageio_8bit_sequences_still_work(tmp_path, monkeypatch):
    d = png_sequence(tmp_path / "s", range(1, 3))
    write_image(tmp_path / "p.1.exr", np.zeros((H, W, 3), np.float32), "half")
    monkeypatch.setitem(sys.modules, "OpenImageIO", None)  # import fails
    assert len(open_frames(d)) == 2
    with pytest.raises(FrameError, match="needs OpenImageIO: pip install openimageio"):
        open_frames(tmp_path / "p.1.exr")
    with pytest.raises(ValueError, match="needs OpenImageIO"):
        MatteWriter(tmp_path / "m", [1], fmt="exr")


# --- bounded allocations ------------------------------------------------------------------------


def _refused_before_allocating(path_or_call):
    """The FrameError of opening and reading a source, and the memory peak it took."""
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(FrameError) as e:
            src = open_frames(path_or_call)
            frames_of(src)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return str(e.value), peak


@pytest.mark.parametrize("side", [10_000, 100_000])
def test_exr_display_window_is_checked_before_allocating(tmp_path, monkeypatch, side):
    """A few hundred bytes: a 1x1 data window in a huge display window, the frame we would allocate."""
    f = write_image(tmp_path / "bomb.1001.exr", np.ones((1, 1, 3), np.float32), "half", display=(side, side))
    assert f.stat().st_size < 1000
    if side == 10_000:  # 10^8 pixels is within the defaults (2^28): refused once the limit is lowered
        assert open_frames(f).width == side  # the header alone; nothing decoded
        monkeypatch.setenv("SAM2LONG_MAX_FRAME_PIXELS", "50000000")
    message, peak = _refused_before_allocating(f)
    assert f"is {side}x{side} ({side * side:,} pixels)" in message and "display window" in message
    assert "SAM2LONG_MAX_FRAME_SIDE" in message and "SAM2LONG_MAX_FRAME_PIXELS" in message
    assert ("16384 pixels a side" if side == 100_000 else "50,000,000 in all") in message
    assert peak < 10_000_000  # a 10000x10000 RGB frame alone is 300 MB


def test_exr_data_window_is_checked_too(tmp_path, monkeypatch):
    f = write_image(tmp_path / "p.1.exr", np.zeros((300, 300, 3), np.float32), "half", display=(10, 10))
    monkeypatch.setenv("SAM2LONG_MAX_FRAME_PIXELS", "50000")
    message, _ = _refused_before_allocating(f)
    assert "300x300" in message and "data window" in message


def _png_header(width, height):
    """A PNG that claims `width` x `height` (8-bit grey) and holds one tiny compressed row."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + chunk(b"IEND", b""))


@pytest.mark.parametrize("width,height,words", [
    (100_000, 100_000, ["too large to decode", "decompression bomb"]),  # Pillow's own guard, as a FrameError
    (20_000, 10, ["is 20000x10", "16384 pixels a side"]),  # ours, from the header
])
def test_png_claiming_a_huge_size_is_refused_from_its_header(tmp_path, width, height, words):
    f = tmp_path / "plate.1001.png"
    f.write_bytes(_png_header(width, height))
    message, peak = _refused_before_allocating(f)
    for w in words:
        assert w in message
    assert peak < 10_000_000


def test_limits_from_the_environment(tmp_path, monkeypatch):
    f = tmp_path / "plate.1001.png"
    f.write_bytes(_png_header(2000, 2000))
    monkeypatch.setenv("SAM2LONG_MAX_FRAME_PIXELS", "1000000")
    message, _ = _refused_before_allocating(f)
    assert "2000x2000 (4,000,000 pixels)" in message and "1,000,000 in all" in message
    monkeypatch.setenv("SAM2LONG_MAX_FRAME_PIXELS", "lots")
    with pytest.raises(FrameError, match=r"\$SAM2LONG_MAX_FRAME_PIXELS='lots' is not a whole number"):
        open_frames(f)
    monkeypatch.delenv("SAM2LONG_MAX_FRAME_PIXELS")
    monkeypatch.setenv("SAM2LONG_MAX_FRAME_SIDE", "1024")
    with pytest.raises(FrameError, match="1024 pixels a side"):
        open_frames(f)


def test_pillow_bomb_warning_as_error_is_a_frame_error(tmp_path):
    """Between Pillow's warning (89M pixels) and its error, where warnings are errors."""
    import warnings

    f = tmp_path / "plate.1001.png"
    f.write_bytes(_png_header(10_000, 10_000))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(FrameError, match="too large to decode"):
            open_frames(f)


def test_memory_error_while_decoding_is_a_frame_error(tmp_path, monkeypatch):
    import sam2long.media.plates as plates

    write_image(tmp_path / "p.1.exr", np.zeros((H, W, 3), np.float32), "float")
    Image.fromarray(srgb_image()).save(tmp_path / "q.1.png")

    def no_memory(*args, **kwargs):
        raise MemoryError

    monkeypatch.setattr(plates, "quantise", no_memory)  # float pixels to 8 bit
    with pytest.raises(FrameError, match=r"out of memory decoding frame .*p.1.exr' \(48x32\).*SAM2LONG_MAX_FRAME_PIXELS"):
        frames_of(open_frames(tmp_path / "p.1.exr"))
    monkeypatch.setattr(Image.Image, "convert", no_memory)
    with pytest.raises(FrameError, match="out of memory decoding frame"):
        frames_of(open_frames(tmp_path / "q.1.png"))


def test_frame_grown_on_disk_after_opening_is_refused(tmp_path):
    f = write_image(tmp_path / "p.1.exr", np.zeros((H, W, 3), np.float32), "half")
    src = open_frames(f)
    write_image(f, np.zeros((1, 1, 3), np.float32), "half", display=(100_000, 100_000))
    with pytest.raises(FrameError, match="changed on disk after the shot was opened"):
        frames_of(src)


# --- mattes ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", MATTE_FORMATS)
def test_matte_formats_read_back_with_openimageio(tmp_path, fmt):
    rng = np.random.default_rng(1)
    soft = rng.random((H, W)).astype(np.float32)
    hard = soft > 0.5
    w = MatteWriter(tmp_path, [3], padding=4, fmt=fmt, prefix="matte")
    p_hard = w.write(3, 1001, hard)
    p_soft = w.write(3, 1002, soft)
    ext = {"png": "png", "png16": "png", "exr": "exr", "tif16": "tif"}[fmt]
    assert p_hard == tmp_path / "3" / f"matte.1001.{ext}" and p_soft.name == f"matte.1002.{ext}"
    assert sorted(f.name for f in (tmp_path / "3").iterdir()) == [p_hard.name, p_soft.name]  # no temp files
    top = {"png": 255, "png16": 65535, "tif16": 65535}.get(fmt)
    for path, values in ((p_hard, hard.astype(np.float32)), (p_soft, soft)):
        inp = oiio.ImageInput.open(str(path))
        spec = inp.spec()
        pixels = inp.read_image(oiio.FLOAT)
        inp.close()
        assert (spec.width, spec.height, spec.nchannels) == (W, H, 1)
        if fmt == "exr":
            assert spec.channelnames == ("A",) and str(spec.format) == "half"
            expect = values.astype(np.float16).astype(np.float32)
        else:
            assert str(spec.format) == ("uint8" if fmt == "png" else "uint16")
            expect = np.floor(values * top + 0.5) / top
        assert np.abs(pixels[..., 0] - expect).max() < 1e-6
    assert np.array_equal(w.read(3, 1001), hard)
    assert np.abs(w.read(3, 1002, soft=True) - soft).max() <= (0.5 / 255 + 1e-6 if fmt == "png" else 5e-4)


def test_matte_writer_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="unknown matte format 'jpg'.*png, png16, exr, tif16"):
        MatteWriter(tmp_path, [1], fmt="jpg")


@pytest.mark.parametrize("fmt", ["exr", "png16"])
def test_interrupted_matte_write_leaves_nothing(tmp_path, fmt, monkeypatch):
    import sam2long.media.writers as writers

    w = MatteWriter(tmp_path, [1], fmt=fmt)

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(writers.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        w.write(1, 7, np.ones((H, W), bool))
    assert w.in_flight is not None and w.in_flight.exists()  # complete under its temporary name only
    w.cleanup()
    assert list((tmp_path / "1").iterdir()) == []


def _contents(folder):
    """Every entry under `folder` with what it holds: a change anywhere shows."""
    return sorted((str(p.relative_to(folder)), p.is_symlink(), p.read_bytes() if p.is_file() else None)
                  for p in folder.rglob("*"))


def _umask():
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("fmt", MATTE_FORMATS)
def test_matte_write_never_follows_a_planted_link(tmp_path, fmt):
    outside = tmp_path / "outside"
    outside.mkdir()
    victim = outside / "victim.txt"
    victim.write_text("precious")
    w = MatteWriter(tmp_path / "m", [1], fmt=fmt)
    final = w.path(1, 7)
    # links at the temporary names this writer once used (and near them), and at the final name
    (final.parent / f".{final.name}.{os.getpid()}.tmp").symlink_to(outside / "created")  # dangling
    for name in (f".{final.name}.tmp", f".{final.name}.{os.getpid() + 1}.tmp", final.name):
        (final.parent / name).symlink_to(victim)
    before = _contents(outside)
    mask = np.zeros((H, W), bool)
    mask[4:20, 8:30] = True
    assert w.write(1, 7, mask) == final
    assert _contents(outside) == before  # nothing written, created or followed outside
    assert not final.is_symlink() and stat.S_ISREG(final.lstat().st_mode)  # the link was replaced
    assert np.array_equal(w.read(1, 7), mask)
    assert stat.S_IMODE(final.stat().st_mode) == 0o666 & ~_umask()  # as an ordinary write, not mkstemp's 0600
    links = sorted(p.name for p in final.parent.iterdir() if p.is_symlink())
    assert len(links) == 3 and len(list(final.parent.iterdir())) == 4  # no temporary file of ours is left


def test_preview_never_follows_a_planted_link(tmp_path):
    from sam2long.media.writers import PreviewWriter

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.mp4").write_bytes(b"precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / f".preview.mp4.{os.getpid()}.tmp").symlink_to(outside / "victim.mp4")
    (out / "preview.mp4").symlink_to(outside / "victim.mp4")
    before = _contents(outside)
    p = PreviewWriter(out / "preview.mp4", W, H, 12.0)
    for i in range(3):
        p.add(srgb_image(i), {1: np.ones((H, W), bool)})
    p.close()
    assert _contents(outside) == before
    assert stat.S_ISREG((out / "preview.mp4").lstat().st_mode)
    import av

    with av.open(str(out / "preview.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == 3
    assert sorted(f.name for f in out.iterdir()) == [f".preview.mp4.{os.getpid()}.tmp", "preview.mp4"]


def test_temporary_file_swapped_for_a_link_is_refused_by_name(tmp_path, monkeypatch):
    """Where /proc/self/fd is missing (macOS, Windows), OpenImageIO gets the temporary file's
    name: it is checked to still be the file we made."""
    import sam2long.media.writers as writers

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    fd, tmp = writers.open_temp(tmp_path / "a.exr")
    try:
        real_exists = os.path.exists
        monkeypatch.setattr(writers.os.path, "exists", lambda p: False if str(p).startswith("/proc/") else real_exists(p))
        assert writers.name_of_open(fd, tmp) == str(tmp)
        tmp.unlink()
        tmp.symlink_to(victim)
        with pytest.raises(OSError, match="was replaced while being written"):
            writers.name_of_open(fd, tmp)
    finally:
        os.close(fd)
    assert victim.read_text() == "precious"


# --- end to end through the command line ------------------------------------------------------


def test_exr_plate_and_png_frames_give_the_same_mattes(tmp_path, tiny_model, monkeypatch, capsys):
    """The same 5 frames as 8-bit PNGs (shot.0..4) and as a scene-linear half EXR plate
    numbered from 1001: the EXR decodes to the PNGs' bytes, so a random-weight model gives
    the same mattes, and the EXR run's mattes carry the plate's numbers."""
    from sam2long.app import cli
    from sam2long.app import run as app_run

    monkeypatch.setattr(app_run, "load_model_for", lambda settings, progress=False: tiny_model)
    pngs, exrs = tmp_path / "pngs", tmp_path / "exrs"
    pngs.mkdir(), exrs.mkdir()
    clip = [srgb_image(i, 72, 56) for i in range(5)]
    for i, img in enumerate(clip):
        img[15:35, 10 + 4 * i:28 + 4 * i] = (230, 60, 40)  # a block moving right
        Image.fromarray(img).save(pngs / f"shot.{i}.png")
        write_image(exrs / f"plate.{1001 + i}.exr", linear_of(img).astype(np.float32), "half", compression="piz")
    common = ["--checkpoint", "random", "--quiet", "--no-preview", "--box", "8,12,32,38"]

    def run(*argv):
        rc = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        assert rc == 0, err
        return err

    run("track", pngs, "--out", tmp_path / "a", *common)
    err = run("track", exrs / "plate.####.exr", "--out", tmp_path / "b", "--format", "exr", "--frame", "1001",
              *common)
    assert "scene-linear" in err  # the colour default, said once
    run("track", exrs / "plate.1003.exr", "--out", tmp_path / "c", "--format", "exr", "--soft", *common)
    a = MatteWriter(tmp_path / "a", [1], padding=1)
    b = MatteWriter(tmp_path / "b", [1], padding=4, fmt="exr")
    c = MatteWriter(tmp_path / "c", [1], padding=4, fmt="exr")
    assert sorted(p.name for p in (tmp_path / "b" / "1").iterdir()) == [f"{n}.exr" for n in range(1001, 1006)]
    decoded = frames_of(open_frames(exrs))
    agree = []
    for i in range(5):
        assert np.array_equal(decoded[1001 + i], clip[i])
        hard_a, hard_b = a.read(1, i), b.read(1, 1001 + i)
        agree.append(float((hard_a == hard_b).mean()))
        soft = c.read(1, 1001 + i, soft=True)
        assert soft.dtype == np.float32 and 0 <= soft.min() and soft.max() <= 1
        assert ((soft > 0) & (soft < 1)).any()  # probabilities, not 0/1
        # the soft matte is the probability behind the hard one: they differ only where half
        # precision (steps of 2^-11 at 0.5) rounds a probability next to 0.5 onto or across it
        differ = (soft > 0.5) != hard_b
        assert np.abs(soft[differ] - 0.5).max(initial=0) <= 2 ** -11
    assert agree == [1.0] * 5  # measured: every pixel of every frame agrees
    assert any(b.read(1, 1001 + i).any() for i in range(5))


def test_cli_plate_errors_before_writing(tmp_path, capsys, monkeypatch):
    from sam2long.app import cli

    for n in range(1001, 1004):
        write_image(tmp_path / f"plate.{n}.exr", np.zeros((H, W, 3), np.float32), "half")
    out = tmp_path / "out"
    cases = [
        (["--frame", "12", "--point", "5,5"], "frame 12 is not in this shot: its frames are 1001-1003"),
        (["--point", "5,5", "--start", "12"], "--start 12: frame 12 is not in this shot: its frames are 1001-1003"),
        (["--point", "5,5", "--colorspace", "nope"], "no colour space 'nope'"),
        (["--point", "5,5", "--colorspace", "ACEScg", "--ocio", str(tmp_path / "no.ocio")], "does not exist"),
    ]
    for extra, message in cases:
        rc = cli.main(["track", str(tmp_path / "plate.####.exr"), "--checkpoint", "x", "--out", str(out), *extra])
        err = capsys.readouterr().err
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
        assert not out.exists()
    monkeypatch.setitem(sys.modules, "OpenImageIO", None)
    rc = cli.main(["track", str(tmp_path), "--checkpoint", "x", "--out", str(out), "--point", "5,5"])
    assert rc == 2 and "pip install openimageio" in capsys.readouterr().err and not out.exists()
    pngs = tmp_path / "pngs"
    png_sequence(pngs, range(1, 3))
    rc = cli.main(["track", str(pngs), "--checkpoint", "x", "--out", str(out), "--point", "5,5", "--format", "exr"])
    assert rc == 2 and "'exr' needs OpenImageIO" in capsys.readouterr().err and not out.exists()
    assert cli.main(["track", "--help"]) == 0
    assert "is frame 1001" in capsys.readouterr().out
