"""Soft mattes and Cryptomatte through the nodes (fake ComfyUI): Track keeps each object's
probability, Track To Mask gives it as a MASK, Save Mattes writes it (PNG16/EXR/TIFF) and
as Cryptomatte EXRs that the PyPI decoders read back by name."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from PIL import Image

from test_nodes import _prompt, comfy, handle, run  # noqa: F401  (module-scoped fixtures)
from test_nodes_longshot import H, W, _cancel_at_check, _dirs, _files, media, two_objects  # noqa: F401

oiio = pytest.importorskip("OpenImageIO")


def _png16(path):
    with Image.open(path) as im:
        return np.asarray(im, np.float32) / 65535.0


def test_track_keeps_soft_mattes_and_to_mask_gives_them(comfy, two_objects):
    _, spilled, memory = two_objects
    assert spilled.soft_bits == memory.soft_bits == 8
    for t in (spilled, memory):
        (soft, cnt, nf), _ = run(comfy, "SAM2LongTrackToMask", track=t, mode="per_object", soft=True)
        (hard, _, _), _ = run(comfy, "SAM2LongTrackToMask", track=t, mode="per_object")
        assert soft.shape == hard.shape == (2 * 5, H, W) and soft.dtype == torch.float32 and (cnt, nf) == (2, 5)
        assert 0 <= soft.min() and soft.max() <= 1 and ((soft > 0) & (soft < 1)).any()  # soft edges
        assert torch.equal(soft > 0.5, hard.bool())  # the hard mask is the probability above a half
        assert torch.equal(soft, torch.cat([t.object_soft(0), t.object_soft(4)]))
        # streamed and from IMAGE: the same probabilities, up to float noise at a level's edge
        assert (soft - torch.cat([memory.object_soft(0), memory.object_soft(4)])).abs().max() <= 1.01 / 255
        (union, _, _), _ = run(comfy, "SAM2LongTrackToMask", track=t, soft=True, first_frame=1, frame_count=2)
        assert torch.equal(union, torch.maximum(soft[1:3], soft[6:8]))


def test_save_mattes_soft_formats(comfy, two_objects):
    _, spilled, _ = two_objects
    (folder,), _ = run(comfy, "SAM2LongSaveMattes", track=spilled, folder="soft/png16", format="png16", soft=True)
    (exr,), _ = run(comfy, "SAM2LongSaveMattes", track=spilled, folder="soft/exr", format="exr", soft=True,
                    mode="union", object_ids="4")
    for j in range(5):
        for oid in (0, 4):  # 8-bit levels are exact in 16 bits (65535 = 255 * 257)
            got = _png16(os.path.join(folder, str(oid), f"matte.{3 + j:04d}.png"))
            assert np.array_equal(got, spilled.soft_mask(oid, j))
        inp = oiio.ImageInput.open(os.path.join(exr, f"matte.{3 + j:04d}.exr"))
        values = inp.read_image(oiio.FLOAT)[..., 0]
        inp.close()
        expect = spilled.soft_mask(4, j).astype(np.float16).astype(np.float32)
        assert np.array_equal(values, expect) and ((values > 0) & (values < 1)).any()


def _check_cryptomatte(path, expect: dict, tol=1e-6):
    """Decode one frame by name with both PyPI decoders and compare with `expect` (name -> matte)."""
    api = pytest.importorskip("cryptomatte_api")
    decryptomatte = pytest.importorskip("decryptomatte")
    from sam2long.media.cryptomatte import id_hex

    (matte,) = api.Cryptomatte.load(str(path))
    assert dict(matte.metadata().manifest().mapping_hex()) == {n: id_hex(n) for n in expect}
    for name, m in expect.items():
        assert np.abs(matte.mask(name) - m).max() < tol, (path, name)
    d = decryptomatte.Decrypt(path)
    decoded = d.get_mattes_by_names(d.list_layers())
    d.shutdown()
    for name, m in expect.items():
        got = decoded.get(f"CryptoObject.{id_hex(name)}.{name}", np.zeros_like(m))  # empty mattes are left out
        assert np.abs(got - m).max() < tol, (path, name)


def test_save_mattes_cryptomatte(comfy, two_objects):
    _, spilled, memory = two_objects
    (folder,), ui = run(comfy, "SAM2LongSaveMattes", track=spilled, folder="crypto/a", prefix="sh010",
                        format="cryptomatte", object_names="4=boy")
    assert _files(folder) == [f"sh010.{n:04d}.exr" for n in range(3, 8)] and ui.image.shape[-1] == 3
    for j in range(5):
        _check_cryptomatte(os.path.join(folder, f"sh010.{3 + j:04d}.exr"),
                           {"object_0": spilled.soft_mask(0, j), "boy": spilled.soft_mask(4, j)})
    # one object: its file still names only it
    (one,), _ = run(comfy, "SAM2LongSaveMattes", track=memory, folder="crypto/b", object_ids="0",
                    format="cryptomatte", first_number=1001)
    assert _files(one)[0] == "matte.1001.exr"
    _check_cryptomatte(os.path.join(one, "matte.1003.exr"), {"object_0": memory.soft_mask(0, 2)})


def test_save_mattes_cryptomatte_errors_before_writing(comfy, two_objects):
    _, _, memory = two_objects
    out = _dirs()[1]
    for kw, message in (({"mode": "union"}, "has no union: set mode to per_object"),
                        ({"object_names": "2=car"}, "object_names: object 2 is named but is not among"),
                        ({"object_names": "0=car, 4=car"}, "both named 'car'"),
                        ({"object_names": "car"}, "write id=name pairs")):
        with pytest.raises(ValueError, match=message):
            run(comfy, "SAM2LongSaveMattes", track=memory, folder="crypto/bad", format="cryptomatte", **kw)
    assert not os.path.exists(os.path.join(out, "crypto", "bad"))


def test_save_mattes_cryptomatte_cancelled_leaves_complete_files(comfy, two_objects):
    _, spilled, _ = two_objects
    with _cancel_at_check(comfy, 2):
        run(comfy, "SAM2LongSaveMattes", track=spilled, folder="crypto/cancel", format="cryptomatte")
    folder = os.path.join(_dirs()[1], "crypto", "cancel")
    assert sorted(os.listdir(folder)) == ["matte.0003.exr", "matte.0004.exr"]


def test_exr_plate_to_cryptomatte_keeps_its_numbers_and_matches_png16(comfy, handle, media):
    """An EXR plate sequence in, Cryptomatte out with the plate's frame numbers; decoded by name
    they equal the per-object soft PNG16 mattes of the same run."""
    inp, _, _ = _dirs()
    os.makedirs(os.path.join(inp, "plate_c"), exist_ok=True)
    srgb = media.clip[:5].astype(np.float32) / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    for i, f in enumerate(linear):
        out = oiio.ImageOutput.create("exr")
        out.open(os.path.join(inp, "plate_c", f"sh020.{1001 + i:04d}.exr"), oiio.ImageSpec(W, H, 3, oiio.HALF))
        out.write_image(np.ascontiguousarray(f))
        out.close()
    (shot, *_), _ = run(comfy, "SAM2LongLoadShot", video="", path="plate_c/sh020.####.exr")
    p = _prompt(comfy, positive_coords='[{"x": 14, "y": 22}]', frame_index=0)
    p = _prompt(comfy, prompts=p, object_id=2, positive_coords='[{"x": 50, "y": 40}]')
    (track, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p)
    (crypto,), _ = run(comfy, "SAM2LongSaveMattes", track=track, folder="plate_c/crypto", format="cryptomatte",
                       object_names="0=hero, 2=cup")
    (png,), _ = run(comfy, "SAM2LongSaveMattes", track=track, folder="plate_c/png16", format="png16", soft=True)
    numbers = range(1001, 1006)
    assert _files(crypto) == [f"matte.{n:04d}.exr" for n in numbers]
    for oid in (0, 2):
        assert _files(os.path.join(png, str(oid))) == [f"matte.{n:04d}.png" for n in numbers]
    soft_seen = False
    for n in numbers:
        expect = {name: _png16(os.path.join(png, str(oid), f"matte.{n:04d}.png"))
                  for oid, name in ((0, "hero"), (2, "cup"))}
        soft_seen |= any(((m > 0) & (m < 1)).any() for m in expect.values())
        _check_cryptomatte(os.path.join(crypto, f"matte.{n:04d}.exr"), expect)
    assert soft_seen
