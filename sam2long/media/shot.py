"""A shot on disk and a frame range of it, opened lazily.

A `Shot` holds no pixels: the path, the range (position of its first frame in the
shot and its length), the frame size, fps, the source's own frame numbers and a
fingerprint of the files. `Shot.frames()` opens the source (through
`frames.open_frames`, the one place that reads videos, folders and sequences) and
returns a range view that streams one frame at a time.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import FrameError
from .frames import open_frames


def fingerprint(path) -> str:
    """A digest of what the shot is made of, cheap enough to compute on every queue:
    a file's path, size and mtime; for a folder (or a sequence pattern, whose folder
    is used) the names, sizes and mtimes of its files. Any change gives a new digest."""
    p = Path(path).expanduser()
    parts = [str(p.resolve() if p.exists() else p)]
    folder = p if p.is_dir() else (None if p.exists() else p.parent)
    if folder is None:
        st = p.stat()
        parts.append(f"{st.st_size}:{st.st_mtime_ns}")
    elif folder.is_dir():
        with os.scandir(folder) as it:
            for e in sorted(it, key=lambda e: e.name):
                if e.is_file():
                    st = e.stat()
                    parts.append(f"{e.name}:{st.st_size}:{st.st_mtime_ns}")
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()


class RangeFrames:
    """Frames `start .. start+count-1` of a source (positions in the shot), served
    under engine indices `first_index .. first_index+count-1`."""

    def __init__(self, source, start: int, count: int, first_index: int):
        self.source, self.start, self.count = source, int(start), int(count)
        self.first_index = int(first_index)
        self.height, self.width = source.height, source.width
        self.fps = float(getattr(source, "fps", 0.0) or 0.0)

    def __len__(self) -> int:
        return self.count

    def frames(self, indices):
        indices = [int(i) for i in indices]
        offset = self.source.first_index + self.start - self.first_index
        for i in indices:
            if not 0 <= i - self.first_index < self.count:
                raise IndexError(f"frame {i} is outside this range (frames {self.first_index}.."
                                 f"{self.first_index + self.count - 1})")
        for i, frame in self.source.frames([i + offset for i in indices]):
            yield i - offset, frame


@dataclass(frozen=True)
class Shot:
    path: str
    start: int        # position in the shot of the range's first frame
    count: int        # frames in the range
    total: int        # frames in the whole shot
    width: int
    height: int
    fps: float
    first_number: int  # the source's own number of the shot's first frame (plates), else 0
    padding: int       # digits of the source's frame numbers (4 when it has none)
    fingerprint: str

    @property
    def range_number(self) -> int:
        """The source's own number of the range's first frame."""
        return self.first_number + self.start

    def frames(self, first_index: int | None = None) -> RangeFrames:
        """The range as a frame source; engine indices start at `first_index`
        (default: the range's position in the shot)."""
        source = open_frames(self.path)
        if (len(source), source.width, source.height) != (self.total, self.width, self.height):
            raise FrameError(f"{self.path!r} changed since it was opened ({len(source)} frames of "
                             f"{source.width}x{source.height}, was {self.total} of {self.width}x{self.height}); "
                             "queue the graph again")
        return RangeFrames(source, self.start, self.count, self.start if first_index is None else first_index)

    def read(self, positions):
        """Yield (position in the range, uint8 [H, W, 3]) for the positions asked for."""
        yield from self.frames(first_index=0).frames(list(positions))


def open_shot(path, first_frame: int = 0, frame_count: int = 0) -> Shot:
    """Open a video file, a folder of frames or an image sequence and pick a range:
    `first_frame` is its 0-based position in the shot, `frame_count` its length
    (0 = to the end). Raises FrameError naming the problem and the fix, also for a
    video that is cut short before the range's end."""
    source = open_frames(path)
    total = len(source)
    first, count = int(first_frame), int(frame_count)
    if first < 0 or first >= total:
        raise FrameError(f"first_frame {first} is outside the shot {str(path)!r}, which has frames "
                         f"0..{total - 1}; first_frame counts from 0 at the shot's first frame")
    if count < 0:
        raise FrameError(f"frame_count must be 0 (= to the end) or more, got {count}")
    if count == 0:
        count = total - first
    if first + count > total:
        raise FrameError(f"frames {first}..{first + count - 1} run past the end of {str(path)!r} "
                         f"(frames 0..{total - 1}); lower frame_count or set it to 0 (= to the end)")
    # Decoding the range's last frame finds a truncated file now, before anything is written.
    for _ in source.frames([source.first_index + first + count - 1]):
        pass
    padding = getattr(source, "padding", None)
    return Shot(path=str(path), start=first, count=count, total=total, width=int(source.width),
                height=int(source.height), fps=float(getattr(source, "fps", 0.0) or 0.0),
                first_number=int(source.first_index), padding=max(4, int(padding or 0)),
                fingerprint=fingerprint(path))
