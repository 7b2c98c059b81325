"""Earlier streamed runs kept for resuming: a correction re-tracks only what it changes.

A `StoredRun` owns a folder: the run's tracker snapshots and its own hard links to the
run's spilled masks (so the result ComfyUI holds is still removed when superseded), with
a digest of the prompts it was tracked with. `RunCache` keeps the last few, newest last,
within a disk budget for their snapshots; the oldest are dropped first, their folder
deleted at once. Folders of runs still cached are deleted at exit, as spill folders are.
"""

from __future__ import annotations

import shutil
import weakref
from dataclasses import dataclass, field
from pathlib import Path

from .snapshots import SnapshotDir, first_change


@dataclass(eq=False)
class StoredRun:
    key: tuple  # what a resumed run must share: model, source, range, tree settings, direction
    model: weakref.ref  # the model object it was tracked with (never kept alive by the cache)
    folder: Path  # owned: removed with the run (dropped, garbage-collected, or at exit)
    snapshots: SnapshotDir  # in `folder`
    digests: dict  # frame -> prompt digest (engine frames)
    track: object = None  # a SpilledTrack of the run's masks, in `folder`
    first_tracked: int | None = None  # first position with output, as track_into_store reports it
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.remove = weakref.finalize(self, shutil.rmtree, str(self.folder), True)

    def resume_point(self, digests: dict) -> int | None:
        """The frame of the last snapshot that the prompts `digests` cannot affect: every
        changed prompt lies at or after it (None: no snapshot can be used). With pushed-back
        corrections (`extra["pushed"]`: (obj_id, prompt frame) -> first frame replaced), the
        frames reused before the snapshot's head must not hold a push of a correction that is
        re-tracked (at or after the head)."""
        change = first_change(self.digests, digests)
        pushed = self.extra.get("pushed", {})
        for f in reversed(self.snapshots.frames()):
            if change is not None and f > change:
                continue
            head = self.snapshots.heads.get(f)
            if not pushed or (head is not None and all(low >= head for (_, m), low in pushed.items() if m >= head)):
                return f
        return None


class RunCache:
    def __init__(self, max_runs: int = 8, disk_budget: int = 4 << 30):
        self.max_runs, self.disk_budget = max_runs, disk_budget
        self._runs: list[StoredRun] = []

    def find(self, key: tuple, model) -> StoredRun | None:
        """The newest run with `key` tracked by this very model object."""
        for run in reversed(self._runs):
            if run.key == key and run.model() is model:
                return run
        return None

    def add(self, run: StoredRun) -> None:
        self._runs.append(run)
        while self._runs and (len(self._runs) > self.max_runs or self.nbytes() > self.disk_budget):
            self.drop(self._runs[0])

    def drop(self, run: StoredRun) -> None:
        self._runs.remove(run)
        run.remove()

    def nbytes(self) -> int:
        return sum(r.snapshots.nbytes() for r in self._runs)

    def __len__(self) -> int:
        return len(self._runs)
