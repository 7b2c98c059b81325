"""Cryptomatte EXRs: every object of a frame in one file, picked by name in Nuke, Fusion, ...

Follows the public Cryptomatte specification (Psyop, v1.2.0):

- An object's ID is MurmurHash3 (x86, 32 bits, seed 0) of its UTF-8 name, stored as the
  float32 with those bits, except that an exponent of all zeros or all ones (denormals,
  inf, NaN) is nudged to 1 or 254. 0.0 means "no object".
- Channels `<layer>00.R/G/B/A`, `<layer>01.R/G/B/A`, ...: per pixel, the objects present
  ranked by coverage, two (ID, coverage) pairs per layer (R, G = rank 0; B, A = rank 1).
- Header metadata under `cryptomatte/<key>/`: name, hash (MurmurHash3_32), conversion
  (uint32_to_float32) and manifest, a JSON object of name -> 8 hex digits of the ID's bits.
- `<layer>.R/G/B`: the optional false-colour preview, so a plain viewer shows something.

Coverage is each object's own soft matte (the model's probability): where objects overlap a
pixel holds all of them, ranked by coverage, and picking one object returns exactly its
matte. The sequence keeps one channel layout for all its frames (the specification asks for
it): as many ranks as it has objects, so no object's coverage is ever dropped.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path

import numpy as np

from .files import name_of_open, open_temp

LAYER = "CryptoObject"


def murmurhash3_32(data: bytes, seed: int = 0) -> int:
    """MurmurHash3_x86_32 of `data`, as an unsigned 32-bit integer."""
    c1, c2, mask = 0xCC9E2D51, 0x1B873593, 0xFFFFFFFF
    h = seed & mask
    whole = len(data) // 4 * 4
    for (k,) in struct.iter_unpack("<I", data[:whole]):
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
        h = ((h << 13) | (h >> 19)) & mask
        h = (h * 5 + 0xE6546B64) & mask
    tail = data[whole:]
    if tail:
        k = int.from_bytes(tail, "little")
        k = (k * c1) & mask
        k = ((k << 15) | (k >> 17)) & mask
        h ^= (k * c2) & mask
    h ^= len(data)
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & mask
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & mask
    return h ^ (h >> 16)


def id_bits(name: str) -> int:
    """The bits of `name`'s float32 ID: its hash with the exponent kept off 0 and 255."""
    h = murmurhash3_32(name.encode("utf-8"))
    exponent = (h >> 23) & 0xFF
    if exponent in (0, 255):
        h ^= 1 << 23  # 0 -> 1, 255 -> 254: a normal, finite float
    return h


def id_float(name: str) -> np.float32:
    return np.array([id_bits(name)], np.uint32).view(np.float32)[0]


def id_hex(name: str) -> str:
    """The manifest's form of the ID: 8 lowercase hex digits of its bits."""
    return f"{id_bits(name):08x}"


def layer_key(layer: str) -> str:
    """The 7-character metadata key of a layer, from its name's ID (the specification's
    suggestion), so it is the same on every frame and every shot."""
    return id_hex(layer)[:7]


def default_names(obj_ids) -> dict:
    return {int(o): f"object_{int(o)}" for o in obj_ids}


def parse_object_names(spec: str | None, obj_ids) -> dict:
    """obj_id -> name: `object_<id>`, except those given as "1=car, 2=person". A clear
    ValueError for an id not among `obj_ids`, an empty name, or a name given twice."""
    names = default_names(obj_ids)
    for part in (spec or "").split(","):
        if not part.strip():
            continue
        key, sep, name = part.partition("=")
        name = name.strip()
        try:
            obj = int(key)
        except ValueError:
            obj = None
        if not sep or obj is None or not name:
            raise ValueError(f"cannot read object name {part.strip()[:40]!r}: write id=name pairs, e.g. "
                             f"\"1=car, 2=person\"")
        if obj not in names:
            raise ValueError(f"object {obj} is named but is not among the objects written "
                             f"({', '.join(str(o) for o in names)})")
        names[obj] = name
    check_names(names)
    return names


def check_names(names: dict) -> None:
    """Two objects with one name (or, rarely, one ID) could not be told apart in the file."""
    seen: dict = {}
    for obj, name in names.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"object {obj} needs a non-empty name")
        bits = id_bits(name)
        if bits in seen:
            other = seen[bits]
            same = names[other] == name
            raise ValueError(f"objects {other} and {obj} are both named {name!r}: give each its own name"
                             if same else f"the names {names[other]!r} and {name!r} have the same "
                             f"Cryptomatte ID: rename one")
        seen[bits] = obj


def _colour(bits: int) -> np.ndarray:
    """A false colour for the preview from the ID's bits (three of its bytes)."""
    return np.array([(bits >> 16) & 0xFF, (bits >> 8) & 0xFF, bits & 0xFF], np.float32) / 255.0 * 0.8 + 0.2


class CryptomatteWriter:
    """One Cryptomatte EXR per frame: `root/<prefix>.<frame, padded>.exr` (`<frame>.exr`
    without a prefix), each complete or absent (temporary file, then rename).

    `names`: obj_id -> name (default `object_<id>`); every file's manifest lists all of
    them, so a compositor's selection by name holds over the whole sequence. A matte is
    bool [H, W] (coverage 0 or 1), float in 0..1, or uint8 0..255; `write_frame` takes
    all of a frame's objects at once, objects not given are absent on that frame."""

    fmt = "cryptomatte"

    def __init__(self, root: Path, obj_ids, padding: int = 5, prefix: str = "", names: dict | None = None,
                 layer: str = LAYER):
        try:
            import OpenImageIO  # noqa: F401
        except ImportError:
            raise ValueError("matte format 'cryptomatte' needs OpenImageIO: pip install openimageio") from None
        self.root = Path(root)
        self.obj_ids = [int(o) for o in obj_ids]
        names = default_names(self.obj_ids) if names is None else {int(o): n for o, n in names.items()}
        missing = [o for o in self.obj_ids if o not in names]
        if missing:
            raise ValueError(f"objects {missing} have no Cryptomatte name")
        self.names = {o: names[o] for o in self.obj_ids}
        check_names(self.names)
        self.padding, self.prefix, self.layer = int(padding), str(prefix), str(layer)
        self.ids = np.array([id_bits(self.names[o]) for o in self.obj_ids], np.uint32).view(np.float32)
        self.colours = np.stack([_colour(id_bits(self.names[o])) for o in self.obj_ids]) \
            if self.obj_ids else np.zeros((0, 3), np.float32)
        self.ranks = max(2, len(self.obj_ids) + len(self.obj_ids) % 2)  # whole layers of two ranks
        key = f"cryptomatte/{layer_key(self.layer)}/"
        self.metadata = {
            key + "name": self.layer,
            key + "hash": "MurmurHash3_32",
            key + "conversion": "uint32_to_float32",
            key + "manifest": json.dumps({self.names[o]: id_hex(self.names[o]) for o in self.obj_ids},
                                         ensure_ascii=False),
        }
        self.in_flight: Path | None = None
        self.root.mkdir(parents=True, exist_ok=True)

    def channel_names(self) -> list[str]:
        names = [f"{self.layer}.{c}" for c in "RGB"]
        for layer in range(self.ranks // 2):
            names += [f"{self.layer}{layer:02d}.{c}" for c in "RGBA"]
        return names

    def path(self, obj, frame: int) -> Path:
        """The frame's file (`obj` is ignored: every object is in it)."""
        number = f"{frame:0{self.padding}d}"
        return self.root / f"{self.prefix}.{number}.exr" if self.prefix else self.root / f"{number}.exr"

    def pixels(self, mattes: dict, shape) -> np.ndarray:
        """float32 [H, W, channels] of one frame, in channel_names() order."""
        h, w = shape
        cover = np.zeros((len(self.obj_ids), h, w), np.float32)
        for k, obj in enumerate(self.obj_ids):
            m = mattes.get(obj)
            if m is None:
                continue
            m = np.asarray(m)
            if m.shape != (h, w):
                raise ValueError(f"the matte of object {obj} is {m.shape}, expected {(h, w)}")
            cover[k] = m / np.float32(255.0) if m.dtype == np.uint8 else np.clip(m.astype(np.float32), 0.0, 1.0)
        out = np.zeros((h * w, 3 + 2 * self.ranks), np.float32)
        covered = np.flatnonzero(cover.any(axis=0))  # background pixels stay all zero: no entry
        if covered.size:
            sub = cover.reshape(len(self.obj_ids), -1)[:, covered]  # [objects, covered pixels]
            order = np.argsort(-sub, axis=0, kind="stable")  # rank 0 = most coverage; ties keep object order
            ranked = np.take_along_axis(sub, order, axis=0)
            ids = np.where(ranked > 0, self.ids[order], np.float32(0.0))
            n = len(self.obj_ids)
            block = np.zeros((covered.size, 3 + 2 * self.ranks), np.float32)
            block[:, :3] = sub.T @ self.colours
            block[:, 3:3 + 2 * n:2] = ids.T
            block[:, 4:4 + 2 * n:2] = ranked.T
            out[covered] = block
        return out.reshape(h, w, -1)

    def write_frame(self, frame: int, mattes: dict, shape) -> Path:
        """Write frame `frame` from `mattes` (obj_id -> matte [H, W]); `shape` (H, W)."""
        import OpenImageIO as oiio

        pixels = self.pixels(mattes, tuple(shape))
        h, w = pixels.shape[:2]
        final = self.path(None, frame)
        spec = oiio.ImageSpec(w, h, pixels.shape[2], "float")  # IDs are float32 bit patterns: never half
        spec.channelnames = tuple(self.channel_names())
        spec.attribute("compression", "zip")
        for k, v in self.metadata.items():
            spec.attribute(k, v)
        fd, tmp = open_temp(final)
        self.in_flight = tmp
        try:
            out = oiio.ImageOutput.create("exr")
            if out is None or not out.open(name_of_open(fd, tmp), spec) or not out.write_image(pixels):
                error = out.geterror() if out is not None else oiio.geterror()
                if out is not None:
                    out.close()
                raise OSError(f"cannot write Cryptomatte {str(final)!r}: {error}")
            out.close()
        finally:
            os.close(fd)
        os.replace(tmp, final)
        self.in_flight = None
        return final

    def read(self, obj: int, frame: int, soft: bool = False) -> np.ndarray:
        """One object's matte back from a written frame: the sum of its coverage over the
        ranks (bool above half, or float32 with `soft`)."""
        import OpenImageIO as oiio

        f = self.path(obj, frame)
        inp = oiio.ImageInput.open(str(f))
        if inp is None:
            raise OSError(f"cannot read Cryptomatte {str(f)!r}: {oiio.geterror()}")
        names = list(inp.spec().channelnames)
        pixels = inp.read_image(oiio.FLOAT)
        inp.close()
        want = self.ids[self.obj_ids.index(int(obj))]
        values = np.zeros(pixels.shape[:2], np.float32)
        for layer in range(self.ranks // 2):
            for id_c, cov_c in (("R", "G"), ("B", "A")):
                ids = pixels[..., names.index(f"{self.layer}{layer:02d}.{id_c}")]
                values += np.where(ids == want, pixels[..., names.index(f"{self.layer}{layer:02d}.{cov_c}")], 0)
        return values if soft else values > 0.5

    def cleanup(self) -> None:
        if self.in_flight is not None:
            self.in_flight.unlink(missing_ok=True)
            self.in_flight = None
