"""Cryptomatte files (sam2long/media/cryptomatte.py), checked by code nobody here wrote:
the PyPI decoders `cryptomatte-api` (C++) and `decryptomatte` (OpenImageIO + mmh3), the
`mmh3` hash, and a plain OpenImageIO read of the channels following the specification."""

from __future__ import annotations

import json
import os
import stat
import struct

import numpy as np
import pytest

from sam2long.media import cryptomatte as cm
from sam2long.media.writers import MatteWriter, open_writer

oiio = pytest.importorskip("OpenImageIO")

H, W = 40, 56
NAMES = {1: "car", 2: "person", 7: "vélo ünïcode"}


def spec_id_bits(name: str) -> int:
    """The specification's ID, from the independent mmh3: the hash with an exponent of 0 or
    255 moved to 1 or 254."""
    mmh3 = pytest.importorskip("mmh3")
    h = mmh3.hash(name.encode("utf-8"), 0, signed=False)
    exponent = (h >> 23) & 0xFF
    return (h & ~(0xFF << 23)) | (min(max(exponent, 1), 254) << 23)


def soft_mattes(seed=0):
    """Three overlapping soft objects, quantised to 8 bits as the track store keeps them."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    out = {}
    for obj, (cy, cx, r) in zip(NAMES, ((14, 18, 10), (22, 30, 12), (20, 24, 6))):
        d = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
        p = 1.0 / (1.0 + np.exp((d - r) * 1.5)) * rng.uniform(0.9, 1.0)
        out[obj] = np.floor(p * 255 + 0.5).astype(np.float32) / 255
    return out


def oiio_decode(path, layer, float_id):
    """An object's matte by the specification's rule: sum of its coverage over every rank."""
    inp = oiio.ImageInput.open(str(path))
    names = list(inp.spec().channelnames)
    px = inp.read_image(oiio.FLOAT)
    inp.close()
    out = np.zeros(px.shape[:2], np.float32)
    ranks = sorted(n[:-2] for n in names if n.startswith(layer) and n[len(layer):len(layer) + 2].isdigit()
                   and n.endswith(".R"))
    for base in ranks:
        for i, c in (("R", "G"), ("B", "A")):
            out += np.where(px[..., names.index(f"{base}.{i}")] == float_id, px[..., names.index(f"{base}.{c}")], 0)
    return out, names, px


def float_of(bits):
    return struct.unpack("<f", struct.pack("<I", bits))[0]


# --- the hash -----------------------------------------------------------------------------------


def test_murmurhash3_known_values_and_mmh3():
    # published MurmurHash3_x86_32 values, and the specification's own manifest example
    assert cm.murmurhash3_32(b"") == 0
    assert cm.murmurhash3_32(b"", 1) == 0x514E28B7
    assert cm.murmurhash3_32(b"hello") == 0x248BFA47
    assert cm.murmurhash3_32(b"The quick brown fox jumps over the lazy dog") == 0x2E4FF723
    assert cm.id_hex("bunny") == "13851a76" and cm.id_hex("default") == "42c9679f"
    mmh3 = pytest.importorskip("mmh3")
    for n in range(200):
        data = os.urandom(n % 23) + f"object_{n}".encode()
        assert cm.murmurhash3_32(data, n) == mmh3.hash(data, n, signed=False)


def test_ids_are_the_standards_and_never_inf_nan_or_denormal():
    fixed = []
    for n in range(5000):
        name = f"object_{n}"
        bits = cm.id_bits(name)
        assert bits == spec_id_bits(name)
        assert cm.id_hex(name) == f"{bits:08x}"
        f = np.float32(cm.id_float(name))
        assert np.isfinite(f) and (f == 0 or abs(f) >= np.finfo(np.float32).tiny)
        if cm.murmurhash3_32(name.encode()) != bits:
            fixed.append(name)
    assert fixed  # some names do hit an exponent of 0 or 255, and were moved
    decrypt_utils = pytest.importorskip("decryptomatte.decrpyt_utils")
    for name in [*fixed[:20], *NAMES.values()]:
        assert np.float32(decrypt_utils.mm3hash_float(name)) == cm.id_float(name)
    assert decrypt_utils.layer_hash("CryptoObject") == cm.layer_key("CryptoObject")


# --- files --------------------------------------------------------------------------------------


@pytest.fixture
def written(tmp_path):
    mattes = soft_mattes()
    w = open_writer(tmp_path / "crypto", list(NAMES), padding=4, fmt="cryptomatte", prefix="sh010", names=NAMES)
    p = w.write_frame(1001, mattes, (H, W))
    only = w.write_frame(1002, {2: mattes[2]}, (H, W))
    empty = w.write_frame(1003, {}, (H, W))
    return w, mattes, p, only, empty


def test_file_layout_metadata_and_ranking(written):
    w, mattes, path, _, _ = written
    assert path.name == "sh010.1001.exr"
    assert sorted(os.listdir(path.parent)) == ["sh010.1001.exr", "sh010.1002.exr", "sh010.1003.exr"]
    inp = oiio.ImageInput.open(str(path))
    spec = inp.spec()
    attrs = {a.name: a.value for a in spec.extra_attribs if a.name.startswith("cryptomatte/")}
    inp.close()
    key = cm.layer_key("CryptoObject")
    assert len(key) == 7 and attrs[f"cryptomatte/{key}/name"] == "CryptoObject"
    assert attrs[f"cryptomatte/{key}/hash"] == "MurmurHash3_32"
    assert attrs[f"cryptomatte/{key}/conversion"] == "uint32_to_float32"
    manifest = json.loads(attrs[f"cryptomatte/{key}/manifest"])
    assert manifest == {n: f"{spec_id_bits(n):08x}" for n in NAMES.values()}
    # three objects: ranks 0..3 in two layers, all float32 (an ID must keep its 32 bits)
    assert {n for n in spec.channelnames if n.startswith("CryptoObject0")} == \
        {f"CryptoObject0{k}.{c}" for k in (0, 1) for c in "RGBA"}
    assert {"CryptoObject.R", "CryptoObject.G", "CryptoObject.B"} <= set(spec.channelnames)
    assert spec.format == oiio.FLOAT and not spec.channelformats
    _, names, px = oiio_decode(path, "CryptoObject", 0.0)
    cov = [px[..., names.index(f"CryptoObject0{k // 2}.{'GA'[k % 2]}")] for k in range(4)]
    ids = [px[..., names.index(f"CryptoObject0{k // 2}.{'RB'[k % 2]}")] for k in range(4)]
    assert all((cov[k] >= cov[k + 1]).all() for k in range(3))  # ranked by coverage
    assert all(((ids[k] == 0) == (cov[k] == 0)).all() for k in range(4))  # no coverage, no entry
    overlap = (mattes[1] > 0) & (mattes[2] > 0) & (mattes[7] > 0)
    assert overlap.any() and (cov[2][overlap] > 0).all()  # a pixel shared by three objects holds all three
    preview = np.stack([px[..., names.index(f"CryptoObject.{c}")] for c in "RGB"], -1)
    assert preview[mattes[1] > 0.85].min() > 0.1 and preview[sum(mattes.values()) == 0].max() == 0


def test_decoded_by_name_with_cryptomatte_api(written):
    api = pytest.importorskip("cryptomatte_api")
    w, mattes, path, only, empty = written
    for f, expect in ((path, mattes), (only, {2: mattes[2]}), (empty, {})):
        (matte,) = api.Cryptomatte.load(str(f), load_preview=True)
        assert (matte.width(), matte.height()) == (W, H) and matte.num_levels() == 4 and matte.has_preview()
        assert matte.metadata().name() == "CryptoObject"
        assert dict(matte.metadata().manifest().mapping_hex()) == {n: cm.id_hex(n) for n in NAMES.values()}
        for obj, name in NAMES.items():
            decoded = matte.mask(name)
            assert decoded.shape == (H, W)
            assert np.abs(decoded - expect.get(obj, 0)).max() < 1e-6, (f.name, name)


def test_decoded_by_name_with_decryptomatte(written):
    decryptomatte = pytest.importorskip("decryptomatte")
    w, mattes, path, only, empty = written
    for f, expect in ((path, mattes), (only, {2: mattes[2]}), (empty, {})):
        d = decryptomatte.Decrypt(f)
        key = cm.layer_key("CryptoObject")
        assert sorted(d.list_layers()) == sorted(f"cryptomatte.{key}.manifest.{n}" for n in NAMES.values())
        decoded = d.get_mattes_by_names(d.list_layers())  # drops mattes with nothing in them
        assert decoded.keys() == {f"CryptoObject.{cm.id_hex(NAMES[o])}.{NAMES[o]}" for o in expect}
        for obj, m in expect.items():
            assert np.abs(decoded[f"CryptoObject.{cm.id_hex(NAMES[obj])}.{NAMES[obj]}"] - m).max() < 1e-6
        d.shutdown()


def test_decoded_with_openimageio_by_the_spec_and_read_back(written):
    w, mattes, path, _, empty = written
    for obj, name in NAMES.items():
        decoded, _, _ = oiio_decode(path, "CryptoObject", float_of(spec_id_bits(name)))
        assert np.abs(decoded - mattes[obj]).max() < 1e-6
        assert np.array_equal(w.read(obj, 1001, soft=True), decoded)
        assert np.array_equal(w.read(obj, 1001), mattes[obj] > 0.5)
        assert not w.read(obj, 1003).any()
    decoded, _, px = oiio_decode(empty, "CryptoObject", 0.0)
    assert not px.any()


def test_hard_and_8bit_mattes_and_many_objects(tmp_path):
    ids = list(range(9))
    w = cm.CryptomatteWriter(tmp_path, ids)
    hard = {o: np.zeros((H, W), bool) for o in ids}
    for o in ids:
        hard[o][:, o * 4:o * 4 + 20] = True  # up to five objects on one pixel
    hard[3] = hard[3].astype(np.uint8) * 255
    p = w.write_frame(7, hard, (H, W))
    assert p.name == "00007.exr" and w.ranks == 10
    for o in ids:
        decoded, _, _ = oiio_decode(p, "CryptoObject", cm.id_float(f"object_{o}"))
        assert np.array_equal(decoded, np.asarray(hard[o], bool).astype(np.float32))


def test_names_from_text():
    assert cm.parse_object_names("", [1, 2]) == {1: "object_1", 2: "object_2"}
    assert cm.parse_object_names(" 2 = person , 1=car", [1, 2, 3]) == {1: "car", 2: "person", 3: "object_3"}
    for spec, message in (("1:car", "write id=name pairs"), ("x=car", "write id=name pairs"),
                          ("1=", "write id=name pairs"), ("5=car", "object 5 is named but is not among"),
                          ("1=car,2=car", "objects 1 and 2 are both named 'car'"),
                          ("2=object_1", "both named 'object_1'")):
        with pytest.raises(ValueError, match=message):
            cm.parse_object_names(spec, [1, 2])


def test_frame_formats_and_the_per_object_writer(tmp_path):
    assert isinstance(open_writer(tmp_path / "a", [1], fmt="cryptomatte"), cm.CryptomatteWriter)
    with pytest.raises(ValueError, match="holds all of a frame's objects in one file.*write_frame"):
        MatteWriter(tmp_path / "b", [1], fmt="cryptomatte")
    w = open_writer(tmp_path / "c", [1, 2], fmt="png16", prefix="m")
    one = np.full((H, W), 0.25, np.float32)
    paths = w.write_frame(3, {2: one}, (H, W))  # object 1 is absent on this frame: an empty matte
    assert [p.relative_to(tmp_path / "c").as_posix() for p in paths] == ["1/m.00003.png", "2/m.00003.png"]
    assert not w.read(1, 3, soft=True).any() and np.allclose(w.read(2, 3, soft=True), 0.25, atol=1e-4)


def test_interrupted_write_leaves_nothing_and_links_are_never_followed(tmp_path, monkeypatch):
    import sam2long.media.cryptomatte as module

    w = cm.CryptomatteWriter(tmp_path / "m", [1])
    final = w.path(None, 4)
    outside = tmp_path / "victim.txt"
    outside.write_text("precious")
    final.symlink_to(outside)
    replace = os.replace
    monkeypatch.setattr(module.os, "replace", lambda a, b: (_ for _ in ()).throw(KeyboardInterrupt))
    with pytest.raises(KeyboardInterrupt):
        w.write_frame(4, {1: np.ones((H, W), bool)}, (H, W))
    assert w.in_flight is not None and w.in_flight.exists()
    w.cleanup()
    assert sorted(os.listdir(tmp_path / "m")) == [final.name]
    monkeypatch.setattr(module.os, "replace", replace)
    w.write_frame(4, {1: np.ones((H, W), bool)}, (H, W))
    assert outside.read_text() == "precious" and stat.S_ISREG(final.lstat().st_mode)
    assert w.read(1, 4).all()
