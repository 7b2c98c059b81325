"""The output pipeline of one track run: the mattes, the preview, what each frame reports.

Every matte is written to a temporary name and renamed into place; on any failure the file
in flight and the unfinished preview are removed, so an interrupted run leaves only complete
files.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass


@dataclass
class FrameRecord:
    """One committed frame: each object's matte area in pixels and its object score."""

    frame: int
    areas: dict[int, int]
    scores: dict[int, float | None]  # None: no score (the object is not tracked yet)

    def to_json(self) -> dict:
        return {"frame": self.frame,
                "objects": {str(o): {"area": a, "score": self.scores[o]} for o, a in self.areas.items()}}


@dataclass
class Summary:
    """What a run wrote (`to_json`: the last line of `sam2long track --json`)."""

    frames: int
    objects: list[int]
    first_frame: int | None
    last_frame: int | None
    direction: str
    out: str
    preview: str | None
    seconds: float
    mean_area: dict[str, float]

    def to_json(self) -> dict:
        return {"summary": asdict(self)}


def progress_bar(total, quiet):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="tracking", disable=quiet, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)


def _close_quietly(generator) -> None:
    if generator is not None:
        try:
            generator.close()
        except BaseException:  # it was stopped by the very interrupt we are handling
            pass


class MatteOutputs:
    """One run's mattes and preview, and what feeds them (the progress bar, the tracker's
    result stream, the frames for the preview). All of it is closed in one place, on
    leaving the `with` block; on any failure the file in flight and the unfinished
    preview are removed, so only complete files remain. `job` is a checked job."""

    def __init__(self, job):
        from ..media.writers import CRYPTOMATTE, open_writer

        job.out.mkdir(parents=True, exist_ok=True)
        self.job = job
        self.settings = job.job.output
        self.writer = open_writer(job.out, job.obj_ids, padding=getattr(job.source, "padding", 5),
                                  fmt=self.settings.format, names=job.object_names)
        # Cryptomatte's coverage at the edges is the soft matte
        self.soft = self.settings.soft or self.settings.format == CRYPTOMATTE
        self.preview_path = job.out / "preview.mp4"
        self.preview = None  # a PreviewWriter filled while tracking, or afterwards from the files
        self.preview_frames = None
        self.results = None
        self.bar = None
        self.committed: list[int] = []
        self.areas = {o: 0 for o in job.obj_ids}

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        _close_quietly(self.results)
        _close_quietly(self.preview_frames)
        if self.bar is not None:
            self.bar.close()
        if exc_type is not None:
            self.writer.cleanup()
            if self.preview is not None:
                self.preview.abort()
        return False

    def _new_preview(self):
        from ..media.writers import PreviewWriter

        src = self.job.source
        return PreviewWriter(self.preview_path, src.width, src.height, getattr(src, "fps", 24.0))

    def track(self, tracker, quiet: bool, on_frame=None) -> None:
        """Run the tracker, writing every committed frame; `on_frame(FrameRecord)` for each."""
        job = self.job
        direction = job.job.direction
        expected = job.frames
        if self.settings.preview and direction == "forward" and expected:
            # Forward frames arrive in order: overlay them as they come, from a second frame stream.
            self.preview = self._new_preview()
            self.preview_frames = job.source.frames(expected)
        self.bar = progress_bar(len(expected), quiet)
        self.results = tracker.propagate(job.source, direction=direction, start=job.start, end=job.end,
                                         return_logits=self.soft,
                                         on_step=lambda i: self.bar.update(1))
        for r in self.results:
            by_obj = self._write(r)
            if on_frame is not None:
                on_frame(self._record(r, by_obj))
            if self.preview is not None:
                idx, image = next(self.preview_frames, (None, None))
                if idx == r.frame_idx:
                    self.preview.add(image, {o: by_obj.get(o) for o in job.obj_ids})
                else:  # not the expected order after all: write the preview afterwards
                    self.preview.abort()
                    self.preview = None

    def _write(self, r) -> dict:
        import numpy as np

        masks = r.masks.numpy() if hasattr(r.masks, "numpy") else np.asarray(r.masks)
        by_obj = {o: masks[k] for k, o in enumerate(r.obj_ids)}
        # soft: the probability, sigmoid of the logits (already at source size, full precision)
        soft = ({o: r.logits[k].sigmoid().numpy() for k, o in enumerate(r.obj_ids)} if self.soft
                else by_obj)
        self.writer.write_frame(r.frame_idx, soft, (self.job.source.height, self.job.source.width))
        for obj, m in by_obj.items():
            self.areas[obj] += int(m.sum())
        self.committed.append(r.frame_idx)
        return by_obj

    def _record(self, r, by_obj) -> FrameRecord:
        areas, scores = {}, {}
        for obj in self.job.obj_ids:
            m = by_obj.get(obj)
            score = None
            if m is not None and r.object_scores is not None:
                score = round(float(r.object_scores[r.obj_ids.index(obj)]), 4)
            areas[obj], scores[obj] = (0 if m is None else int(m.sum())), score
        return FrameRecord(r.frame_idx, areas, scores)

    def finish_preview(self) -> None:
        """Close the preview, first writing it from the mask files if it was not filled while tracking."""
        if not self.settings.preview:
            return
        if self.preview is None:
            self.preview = self._new_preview()
            for idx, image in self.job.source.frames(sorted(set(self.committed))):
                self.preview.add(image, {o: self.writer.read(o, idx) for o in self.job.obj_ids})
        self.preview.close()
        self.preview = None

    def summary(self, seconds: float) -> Summary:
        done, ids = self.committed, self.job.obj_ids
        return Summary(frames=len(done), objects=ids, first_frame=min(done) if done else None,
                       last_frame=max(done) if done else None, direction=self.job.job.direction,
                       out=str(self.job.out), preview=str(self.preview_path) if self.settings.preview else None,
                       seconds=round(seconds, 3),
                       mean_area={str(o): (self.areas[o] / len(done) if done else 0) for o in ids})
