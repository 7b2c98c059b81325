"""Track results: per-object masks at source resolution, kept in memory or spilled to disk.

Both kinds read the same way (`select`, `object_masks`, `union`, `frame_masks` over a
frame range, `present`, `scores`), so whoever consumes a track does not care where
the masks live:

- `TrackResult` (from `TrackBuilder`): every frame's mask bit-packed in memory,
  1/32 of a float mask. Right for an in-memory batch of frames.
- `SpilledTrack` (from `SpillBuilder`): each (object, frame) mask bit-packed and
  zlib-compressed (level 1) into its own file as the tracker commits it; only the
  per-frame flags and scores stay in memory. Right for long shots: memory does not
  grow with the shot. At 1080p a matte is 6-11 KB on disk, packed and written in
  1-3 ms, read back in 0.5-2 ms (raw packed .npy: 259 KB; 1-bit PNG: 13 KB, 13 ms).
  The folder lives as long as the result object: it is removed when the result is
  garbage-collected (superseded) or at interpreter exit, never while it can be read.

Next to each hard mask a track can keep the object's soft matte (the model's probability at
source resolution, `soft_bits` 8 or 16, quantised and zlib-compressed per (object, frame):
in memory as bytes, spilled as a `.s8.z` / `.s16.z` file beside the mask). `soft_mask`,
`frame_soft`, `object_soft` and `union_soft` read it as float32 0..1; a track built without
it (`soft_bits` 0) answers them with its hard masks as 0/1.
"""

from __future__ import annotations

import abc
import shutil
import tempfile
import weakref
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch


def pack(mask_hw) -> np.ndarray:
    m = mask_hw.detach().to("cpu", torch.bool).numpy() if isinstance(mask_hw, torch.Tensor) else np.asarray(mask_hw, bool)
    return np.packbits(m.reshape(-1))


def unpack(row: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.unpackbits(row, count=height * width).reshape(height, width).astype(bool)


SOFT_BITS = (0, 8, 16)  # 0: no soft mattes kept
_SOFT_TYPES = {8: np.uint8, 16: np.uint16}


def pack_soft(logits_hw, bits: int) -> bytes:
    """The probability sigmoid(logits) [H, W], quantised to `bits` and zlib-compressed."""
    t = logits_hw.detach().to("cpu", torch.float32) if isinstance(logits_hw, torch.Tensor) \
        else torch.as_tensor(np.asarray(logits_hw, np.float32))
    top = (1 << bits) - 1
    q = (t.sigmoid() * top + 0.5).floor().numpy().astype(_SOFT_TYPES[bits])
    return zlib.compress(q.tobytes(), 1)


def unpack_soft(data: bytes, bits: int, height: int, width: int) -> np.ndarray:
    q = np.frombuffer(zlib.decompress(data), _SOFT_TYPES[bits]).reshape(height, width)
    return q.astype(np.float32) / np.float32((1 << bits) - 1)


class _Reading(abc.ABC):
    """The reading interface shared by in-memory and spilled tracks.

    Positions j = 0..num_frames-1 count from the first frame of the result; frame j is
    engine frame `first_index + j` and is numbered `first_number + j` in file names."""

    num_frames: int
    height: int
    width: int
    first_index: int
    first_number: int
    obj_ids: tuple
    present: dict  # obj_id -> bool [num_frames]
    scores: dict   # obj_id -> float32 [num_frames], NaN where not tracked
    soft_bits: int  # 8 or 16: soft mattes kept; 0: hard masks only

    @abc.abstractmethod
    def _mask(self, obj_id: int, j: int) -> np.ndarray:
        """bool [H, W] of an object on position j, where it is tracked (each store reads its own way)."""

    @abc.abstractmethod
    def _soft_data(self, obj_id: int, j: int) -> bytes:
        """The compressed soft matte of an object on position j, where it is tracked."""

    @property
    def has_soft(self) -> bool:
        return self.soft_bits > 0

    def soft_mask(self, obj_id: int, j: int) -> np.ndarray:
        """float32 [H, W] in 0..1 of one object on position j: its probability (the hard mask
        as 0/1 in a track without soft mattes; zeros where it is not tracked)."""
        if not self.present[obj_id][j]:
            return np.zeros((self.height, self.width), np.float32)
        if not self.has_soft:
            return self._mask(obj_id, j).astype(np.float32)
        return unpack_soft(self._soft_data(obj_id, j), self.soft_bits, self.height, self.width)

    def frame_soft(self, j: int, obj_ids=None) -> dict:
        """obj_id -> float32 [H, W] for the objects tracked on position j."""
        ids = self.obj_ids if obj_ids is None else obj_ids
        return {i: self.soft_mask(i, j) for i in ids if self.present[i][j]}

    def object_soft(self, obj_id: int, first: int = 0, count: int = 0) -> torch.Tensor:
        """float32 [frames, H, W] of one object over a range (0 where it is not tracked)."""
        frames = self.frame_range(first, count)
        return torch.from_numpy(np.stack([self.soft_mask(obj_id, j) for j in frames]))

    def union_soft(self, obj_ids=None, first: int = 0, count: int = 0) -> torch.Tensor:
        """float32 [frames, H, W]: per pixel the largest probability of the selected objects."""
        ids = self.obj_ids if obj_ids is None else obj_ids
        frames = self.frame_range(first, count)
        out = np.zeros((len(frames), self.height, self.width), np.float32)
        for k, j in enumerate(frames):
            for i in ids:
                if self.present[i][j]:
                    np.maximum(out[k], self.soft_mask(i, j), out=out[k])
        return torch.from_numpy(out)

    def frame_range(self, first: int = 0, count: int = 0) -> range:
        """Positions first..first+count-1 (count 0 = to the end), checked against the track."""
        first, count = int(first), int(count)
        if count < 0 or not 0 <= first < self.num_frames:
            raise ValueError(f"frame range {first} (+{count}) is outside this track, which has "
                             f"frames 0..{self.num_frames - 1}; the first frame counts from the track's first frame")
        end = self.num_frames if count == 0 else first + count
        if end > self.num_frames:
            raise ValueError(f"frames {first}..{end - 1} run past the end of this track "
                             f"(frames 0..{self.num_frames - 1}); ask for fewer frames, or 0 (= to the end)")
        return range(first, end)

    def mask(self, obj_id: int, j: int) -> np.ndarray:
        """bool [H, W] of one object on position j (empty where it is not tracked)."""
        if self.present[obj_id][j]:
            return self._mask(obj_id, j)
        return np.zeros((self.height, self.width), bool)

    def frame_masks(self, j: int, obj_ids=None) -> dict:
        """obj_id -> bool [H, W] for the objects tracked on position j."""
        ids = self.obj_ids if obj_ids is None else obj_ids
        return {i: self._mask(i, j) for i in ids if self.present[i][j]}

    def object_masks(self, obj_id: int, first: int = 0, count: int = 0) -> torch.Tensor:
        """bool [frames, H, W] of one object over a range (empty where it is not tracked)."""
        frames = self.frame_range(first, count)
        out = np.zeros((len(frames), self.height, self.width), bool)
        for k, j in enumerate(frames):
            if self.present[obj_id][j]:
                out[k] = self._mask(obj_id, j)
        return torch.from_numpy(out)

    def union(self, obj_ids=None, first: int = 0, count: int = 0) -> torch.Tensor:
        """bool [frames, H, W]: any selected object, over a range."""
        ids = self.obj_ids if obj_ids is None else obj_ids
        frames = self.frame_range(first, count)
        out = np.zeros((len(frames), self.height, self.width), bool)
        for k, j in enumerate(frames):
            for i in ids:
                if self.present[i][j]:
                    out[k] |= self._mask(i, j)
        return torch.from_numpy(out)


@dataclass(frozen=True)
class TrackResult(_Reading):
    num_frames: int
    height: int
    width: int
    first_index: int  # engine index (inside the shot) of position 0
    obj_ids: tuple[int, ...]
    packed: dict = field(repr=False)   # obj_id -> uint8 [num_frames, ceil(H*W/8)]
    present: dict = field(repr=False)
    scores: dict = field(repr=False)
    first_number: int = 0  # file-name number of position 0
    padding: int = 4       # digits of the source's own frame numbers
    soft: dict = field(default_factory=dict, repr=False)  # obj_id -> [num_frames] compressed bytes or None
    soft_bits: int = 0

    def _mask(self, obj_id, j):
        return unpack(self.packed[obj_id][j], self.height, self.width)

    def _soft_data(self, obj_id, j):
        return self.soft[obj_id][j]

    def soft_nbytes(self) -> int:
        """Bytes of the compressed soft mattes (part of nbytes)."""
        return sum(len(b) for rows in self.soft.values() for b in rows if b is not None)

    def nbytes(self) -> int:
        return self.soft_nbytes() + sum(a.nbytes for d in (self.packed, self.present, self.scores)
                                        for a in d.values())


class SpilledTrack(_Reading):
    """A track whose masks live in `folder` (see the module notes); immutable once built."""

    def __init__(self, folder: Path, num_frames, height, width, first_index, obj_ids, present, scores,
                 first_number=0, padding=4, soft_bits=0):
        self.folder = Path(folder)
        self.soft_bits = int(soft_bits)
        self.num_frames, self.height, self.width = int(num_frames), int(height), int(width)
        self.first_index, self.first_number, self.padding = int(first_index), int(first_number), int(padding)
        self.obj_ids = tuple(obj_ids)
        self.present, self.scores = present, scores
        # Tied to this object's life: superseded results (dropped from ComfyUI's cache) and
        # the ones still alive at exit take their folder with them.
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.folder), True)

    def _mask(self, obj_id, j):
        data = zlib.decompress(spill_path(self.folder, obj_id, j).read_bytes())
        return unpack(np.frombuffer(data, np.uint8), self.height, self.width)

    def _soft_data(self, obj_id, j):
        return soft_path(self.folder, obj_id, j, self.soft_bits).read_bytes()

    def nbytes(self) -> int:
        """Bytes held in memory (the masks are on disk)."""
        return sum(a.nbytes for d in (self.present, self.scores) for a in d.values())

    def remove(self) -> None:
        self._finalizer()

    def __repr__(self) -> str:
        return (f"SpilledTrack({str(self.folder)!r}, {self.num_frames} frames of {self.width}x{self.height}, "
                f"objects {list(self.obj_ids)})")


def spill_path(folder: Path, obj_id: int, j: int) -> Path:
    return folder / str(obj_id) / f"{j:07d}.z"


def soft_path(folder: Path, obj_id: int, j: int, bits: int) -> Path:
    return folder / str(obj_id) / f"{j:07d}.s{bits}.z"


class TrackBuilder:
    """Collects FrameResults (any order) into a track; in memory here, on disk in SpillBuilder.
    With `soft_bits` 8 or 16, `add` also takes the frame's logits and keeps soft mattes."""

    def __init__(self, num_frames: int, height: int, width: int, first_index: int = 0,
                 first_number: int | None = None, padding: int = 4, soft_bits: int = 0):
        if soft_bits not in SOFT_BITS:
            raise ValueError(f"soft mattes are kept with 8 or 16 bits (0 = none), got {soft_bits!r}")
        self.n, self.h, self.w, self.first = int(num_frames), int(height), int(width), int(first_index)
        self.first_number = self.first if first_number is None else int(first_number)
        self.padding = int(padding)
        self.soft_bits = int(soft_bits)
        self._soft: dict[int, list] = {}  # in memory only, like _packed
        self._present: dict[int, np.ndarray] = {}
        self._scores: dict[int, np.ndarray] = {}
        self._packed: dict[int, np.ndarray] = {}  # in memory only; SpillBuilder leaves it empty

    def _obj(self, obj_id: int) -> None:
        if obj_id not in self._present:
            self._present[obj_id] = np.zeros(self.n, bool)
            self._scores[obj_id] = np.full(self.n, np.nan, np.float32)
            self._new_object(obj_id)

    def _new_object(self, obj_id: int) -> None:
        self._packed[obj_id] = np.zeros((self.n, (self.h * self.w + 7) // 8), np.uint8)
        self._soft[obj_id] = [None] * self.n

    def _store(self, obj_id: int, j: int, row: np.ndarray) -> None:
        self._packed[obj_id][j] = row

    def _store_soft(self, obj_id: int, j: int, data: bytes) -> None:
        self._soft[obj_id][j] = data

    def add(self, frame_idx: int, obj_ids, masks: torch.Tensor, object_scores=None, logits=None) -> None:
        j = int(frame_idx) - self.first
        if not 0 <= j < self.n:
            return
        if tuple(masks.shape[-2:]) != (self.h, self.w):
            raise ValueError(f"engine returned masks of size {tuple(masks.shape[-2:])}, "
                             f"expected the source size {(self.h, self.w)}")
        if self.soft_bits and (logits is None or tuple(logits.shape) != tuple(masks.shape)):
            raise ValueError("a track keeping soft mattes needs the frame's logits at source size "
                             "(propagate with return_logits=True)")
        for k, oid in enumerate(obj_ids):
            oid = int(oid)
            self._obj(oid)
            self._store(oid, j, pack(masks[k]))
            if self.soft_bits:
                self._store_soft(oid, j, pack_soft(logits[k], self.soft_bits))
            self._present[oid][j] = True
            if object_scores is not None:
                self._scores[oid][j] = float(object_scores[k])

    def ensure_objects(self, obj_ids) -> None:
        for oid in obj_ids:
            self._obj(int(oid))

    def _ids(self) -> tuple:
        return tuple(sorted(self._present))

    def build(self) -> TrackResult:
        ids = self._ids()
        return TrackResult(
            num_frames=self.n, height=self.h, width=self.w, first_index=self.first, obj_ids=ids,
            packed={i: self._packed[i] for i in ids}, present={i: self._present[i] for i in ids},
            scores={i: self._scores[i] for i in ids}, first_number=self.first_number, padding=self.padding,
            soft={i: self._soft[i] for i in ids} if self.soft_bits else {}, soft_bits=self.soft_bits,
        )

    def abort(self) -> None:
        """Drop what was collected (an interrupted or failed run)."""


class SpillBuilder(TrackBuilder):
    """Writes each committed mask to a new folder under `parent` at once; `abort()`
    (interrupt, error) removes the folder, `build()` hands it to a SpilledTrack."""

    def __init__(self, parent, num_frames, height, width, first_index=0, first_number=None, padding=4,
                 soft_bits=0):
        super().__init__(num_frames, height, width, first_index, first_number, padding, soft_bits)
        Path(parent).mkdir(parents=True, exist_ok=True)
        self.folder = Path(tempfile.mkdtemp(prefix="sam2long_track_", dir=str(parent)))

    def _new_object(self, obj_id):
        (self.folder / str(obj_id)).mkdir()

    def _store(self, obj_id, j, row):
        # A half-written file is never read: an interrupted run removes the whole folder.
        spill_path(self.folder, obj_id, j).write_bytes(zlib.compress(row.tobytes(), 1))

    def _store_soft(self, obj_id, j, data):
        soft_path(self.folder, obj_id, j, self.soft_bits).write_bytes(data)

    def build(self) -> SpilledTrack:
        ids = self._ids()
        return SpilledTrack(self.folder, self.n, self.h, self.w, self.first, ids,
                            {i: self._present[i] for i in ids}, {i: self._scores[i] for i in ids},
                            self.first_number, self.padding, self.soft_bits)

    def abort(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def reuse_frames(builder: SpillBuilder, track: SpilledTrack, positions, obj_ids=None) -> None:
    """Give `builder` the masks of `positions` from an earlier track of the same frames, of
    `obj_ids` (None: all of its objects), as hard links to its files (a copy where links are
    not possible)."""
    import os

    if builder.soft_bits != track.soft_bits:  # the linked soft-matte files are the track's own
        raise ValueError(f"cannot reuse frames kept with {track.soft_bits}-bit soft mattes in a track keeping "
                         f"{builder.soft_bits}-bit ones")
    for obj_id in track.obj_ids if obj_ids is None else [o for o in obj_ids if o in track.obj_ids]:
        builder._obj(obj_id)
        for j in positions:
            if not track.present[obj_id][j]:
                continue
            old = spill_path(track.folder, obj_id, j)
            for src in old.parent.glob(old.stem + ".*"):  # every file the store keeps for the mask
                dst = builder.folder / str(obj_id) / src.name
                try:
                    os.link(src, dst)
                except OSError:
                    shutil.copyfile(src, dst)
            builder._present[obj_id][j] = True
            builder._scores[obj_id][j] = track.scores[obj_id][j]


def built_mask(builder: TrackBuilder, obj_id: int, j: int) -> np.ndarray:
    """bool [H, W] of what `builder` holds for an object on position j (empty where not tracked)."""
    if obj_id not in builder._present or not builder._present[obj_id][j]:
        return np.zeros((builder.h, builder.w), bool)
    if isinstance(builder, SpillBuilder):
        row = np.frombuffer(zlib.decompress(spill_path(builder.folder, obj_id, j).read_bytes()), np.uint8)
    else:
        row = builder._packed[obj_id][j]
    return unpack(row, builder.h, builder.w)


def replace_frame(builder: TrackBuilder, frame_idx: int, obj_id: int, mask, score, logits=None) -> None:
    """Overwrite one object's mask (and, for a builder keeping soft mattes, its soft matte
    from `logits` [H, W]) on one frame; a file linked from another track is unlinked first,
    so that track keeps its own mask."""
    if isinstance(builder, SpillBuilder):
        old = spill_path(builder.folder, obj_id, int(frame_idx) - builder.first)
        for f in old.parent.glob(old.stem + ".*"):
            f.unlink()
    builder.add(frame_idx, [obj_id], mask[None], [score], None if logits is None else logits[None])


def linked_copy(track: SpilledTrack, parent) -> SpilledTrack:
    """Another SpilledTrack of the same masks, in a new folder under `parent` (hard links, a
    copy where links are not possible), with a life of its own: each removes only its folder."""
    builder = SpillBuilder(parent, track.num_frames, track.height, track.width, track.first_index,
                           track.first_number, track.padding, track.soft_bits)
    reuse_frames(builder, track, range(track.num_frames))
    return builder.build()
