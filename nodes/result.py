"""The compact track result handed between nodes (SAM2LONG_TRACK).

Per object: one bit-packed mask row per frame at source resolution (uint8, CPU),
a "tracked on this frame" flag and the object-presence score. ComfyUI keeps every
node output in its cache, so this is ~1/32 of a float MASK batch per object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


def pack(mask_hw: torch.Tensor) -> np.ndarray:
    return np.packbits(mask_hw.detach().to("cpu", torch.bool).numpy().reshape(-1))


def unpack(row: np.ndarray, height: int, width: int) -> np.ndarray:
    return np.unpackbits(row, count=height * width).reshape(height, width).astype(bool)


class TrackBuilder:
    """Collects FrameResults (any order) into a TrackResult."""

    def __init__(self, num_frames: int, height: int, width: int, first_index: int = 0):
        self.n, self.h, self.w, self.first = int(num_frames), int(height), int(width), int(first_index)
        self.nbytes = (self.h * self.w + 7) // 8
        self._packed: dict[int, np.ndarray] = {}
        self._present: dict[int, np.ndarray] = {}
        self._scores: dict[int, np.ndarray] = {}

    def _obj(self, obj_id: int):
        if obj_id not in self._packed:
            self._packed[obj_id] = np.zeros((self.n, self.nbytes), np.uint8)
            self._present[obj_id] = np.zeros(self.n, bool)
            self._scores[obj_id] = np.full(self.n, np.nan, np.float32)
        return self._packed[obj_id], self._present[obj_id], self._scores[obj_id]

    def add(self, frame_idx: int, obj_ids, masks: torch.Tensor, object_scores=None) -> None:
        j = int(frame_idx) - self.first
        if not 0 <= j < self.n:
            return
        if tuple(masks.shape[-2:]) != (self.h, self.w):
            raise ValueError(f"SAM2Long: engine returned masks of size {tuple(masks.shape[-2:])}, "
                             f"expected the source size {(self.h, self.w)}")
        for k, oid in enumerate(obj_ids):
            packed, present, scores = self._obj(int(oid))
            packed[j] = pack(masks[k])
            present[j] = True
            if object_scores is not None:
                scores[j] = float(object_scores[k])

    def ensure_objects(self, obj_ids) -> None:
        for oid in obj_ids:
            self._obj(int(oid))

    def build(self) -> "TrackResult":
        ids = tuple(sorted(self._packed))
        return TrackResult(
            num_frames=self.n, height=self.h, width=self.w, first_index=self.first, obj_ids=ids,
            packed={i: self._packed[i] for i in ids}, present={i: self._present[i] for i in ids},
            scores={i: self._scores[i] for i in ids},
        )


@dataclass(frozen=True)
class TrackResult:
    num_frames: int
    height: int
    width: int
    first_index: int  # global index (inside the shot) of frame 0 of this result
    obj_ids: tuple[int, ...]
    packed: dict = field(repr=False)   # obj_id -> uint8 [num_frames, ceil(H*W/8)]
    present: dict = field(repr=False)  # obj_id -> bool [num_frames]
    scores: dict = field(repr=False)   # obj_id -> float32 [num_frames], NaN where not tracked

    def select(self, spec: str | None) -> list[int]:
        """Parse an object selection: "" / "all" / "*" = every object, else "0,2" or "1-3"."""
        if spec is None or not str(spec).strip() or str(spec).strip().lower() in ("all", "*"):
            return list(self.obj_ids)
        wanted: list[int] = []
        for part in str(spec).replace(";", ",").replace(" ", ",").split(","):
            part = part.strip()
            if not part:
                continue
            try:
                if "-" in part:
                    a, b = part.split("-", 1)
                    wanted.extend(range(int(a), int(b) + 1))
                else:
                    wanted.append(int(part))
            except ValueError:
                raise ValueError(f"SAM2Long: cannot read object ids {spec!r}; use e.g. \"0,2\" or \"1-3\"") from None
        missing = [i for i in wanted if i not in self.obj_ids]
        if missing:
            raise ValueError(f"SAM2Long: object id(s) {missing} are not in this track "
                             f"(it has {list(self.obj_ids)})")
        return list(dict.fromkeys(wanted))

    def object_masks(self, obj_id: int) -> torch.Tensor:
        """bool [num_frames, H, W] for one object (empty where it is not tracked)."""
        packed, present = self.packed[obj_id], self.present[obj_id]
        out = np.zeros((self.num_frames, self.height, self.width), bool)
        for j in np.flatnonzero(present):
            out[j] = unpack(packed[j], self.height, self.width)
        return torch.from_numpy(out)

    def union(self, obj_ids=None) -> torch.Tensor:
        ids = self.obj_ids if obj_ids is None else obj_ids
        out = torch.zeros((self.num_frames, self.height, self.width), dtype=torch.bool)
        for i in ids:
            out |= self.object_masks(i)
        return out

    def nbytes(self) -> int:
        return sum(a.nbytes for d in (self.packed, self.present, self.scores) for a in d.values())
