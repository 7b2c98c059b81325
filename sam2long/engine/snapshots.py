"""Snapshots of a pass at a frame boundary, so that tracking can resume exactly.

A `Snapshot` is the whole state of a pass after the tracker handed out what it could
for frame `next_frame - 1`: the memory tree of every object (pathways, memories,
masks not yet committed), the outputs committed but not yet handed out (another
object still pending on their frame), the first frame not handed out (`head`), and a
digest of every prompt on the frames already consumed. A tracker restored from it
(`Tracker.from_snapshot`) and given the same frames yields, from `head` on, exactly
what the uninterrupted run yields; prompts may be added or changed only on frames at
or after `next_frame`, which the snapshot has not read yet (checked by digest).

`SnapshotDir` keeps a run's snapshots on disk, one `torch.save` file per snapshot.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..prompts import PromptSet
from .step import Outputs, Pass
from .tree import TreeConfig


@dataclass(eq=False)
class Snapshot:
    variant: str
    image_size: int
    tree: TreeConfig
    max_lag: int | None
    frame_size: tuple
    prompt_digests: dict  # frame -> digest of its prompts, for the frames before next_frame
    run: Pass
    outputs: Outputs  # committed outputs not handed out yet
    head: int  # first frame not handed out yet
    stop: int  # last frame of the pass

    @property
    def next_frame(self) -> int:
        return self.run.next_frame


def prompt_digests(prompts: PromptSet) -> dict[int, str]:
    """frame -> a digest of every object's prompt on it (points, labels, box, mask)."""
    per_frame: dict[int, list] = {}
    for obj_id in sorted(prompts.by_object):
        for frame, p in prompts.by_object[obj_id].items():
            per_frame.setdefault(frame, []).append((obj_id, p))
    digests = {}
    for frame, items in per_frame.items():
        h = hashlib.sha1()
        for obj_id, p in items:
            h.update(repr((obj_id, p.points, p.labels, p.box)).encode())
            if p.mask is not None:
                h.update(repr(p.mask.shape).encode())
                h.update(np.packbits(p.mask).tobytes())
        digests[frame] = h.hexdigest()
    return digests


def first_change(old: dict, new: dict) -> int | None:
    """The first frame whose prompts differ between two `prompt_digests` (None: none do)."""
    changed = [f for f in set(old) | set(new) if old.get(f) != new.get(f)]
    return min(changed) if changed else None


def save_snapshot(snapshot: Snapshot, path) -> int:
    """Write `snapshot` to `path` whole or not at all; -> bytes written."""
    path = Path(path)
    tmp = path.with_name(path.name + ".part")
    torch.save(snapshot, tmp)
    os.replace(tmp, path)
    return path.stat().st_size


def load_snapshot(path, device=None) -> Snapshot:
    # Our own files (written by save_snapshot), so a full unpickle is fine here.
    snapshot = torch.load(path, map_location=device, weights_only=False)
    if not isinstance(snapshot, Snapshot):
        raise ValueError(f"{str(path)!r} is not a SAM2Long tracker snapshot")
    return snapshot


class SnapshotDir:
    """A run's snapshots, `frame_0001200.pt` = the snapshot that continues at frame 1200.

    With `max_kept`, disk stays bounded on any length of shot: once more are kept, the
    spacing doubles (every 2K frames, then 4K...) and the snapshots off it are deleted,
    so a correction anywhere re-tracks at most about length / (max_kept / 2) frames."""

    def __init__(self, folder, max_kept: int | None = None):
        if max_kept is not None and max_kept < 2:
            raise ValueError(f"max_kept must be >= 2 or None, got {max_kept!r}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.max_kept = max_kept
        self.spacing = 1  # multiplies the tracker's snapshot_every after thinning
        self.heads: dict[int, int] = {}  # next_frame -> head of the snapshots written or linked here
        self.seconds = 0.0  # time spent writing, for the cost figures
        self.written = 0  # bytes written

    def path(self, next_frame: int) -> Path:
        return self.folder / f"frame_{next_frame:07d}.pt"

    def due(self, next_frame: int, every: int) -> bool:
        return next_frame % (every * self.spacing) == 0

    def save(self, snapshot: Snapshot, every: int = 1) -> None:
        t0 = time.perf_counter()
        self.written += save_snapshot(snapshot, self.path(snapshot.next_frame))
        self.heads[snapshot.next_frame] = snapshot.head
        kept = self.frames()
        while self.max_kept is not None and len(kept) > self.max_kept:
            self.spacing *= 2
            for f in kept:
                if f % (every * self.spacing):
                    self.path(f).unlink()
            kept = self.frames()
        self.seconds += time.perf_counter() - t0

    def frames(self) -> list[int]:
        """The frames the kept snapshots continue at, in order."""
        return sorted(int(p.stem.split("_")[1]) for p in self.folder.glob("frame_*.pt"))

    def nbytes(self) -> int:
        return sum(p.stat().st_size for p in self.folder.glob("frame_*.pt"))

    def load(self, next_frame: int, device=None) -> Snapshot:
        return load_snapshot(self.path(next_frame), device)
