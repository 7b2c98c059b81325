"""Frame sources: where the engine gets its frames from, one at a time.

A frame source knows the shot's size and length and yields frames, as
`uint8` RGB arrays or tensors of shape [H, W, 3], for the global frame indices
asked for, in the order asked for. Nothing here holds the whole clip at model
resolution; the engine resizes each frame as it arrives.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Protocol, runtime_checkable

import numpy as np
import torch

from ..errors import FrameError, first_line
from ..limits import check_frame_size, frame_limits, out_of_memory


@runtime_checkable
class FrameSource(Protocol):
    height: int
    width: int
    first_index: int  # global index of the source's first frame

    def __len__(self) -> int: ...

    def frames(self, indices: Iterable[int]) -> Iterator[tuple[int, np.ndarray | torch.Tensor]]:
        """Yield (index, frame) for each index, in the order given."""
        ...


class TensorFrames:
    """Frames already in memory: a [N, H, W, 3] uint8 array/tensor or a float tensor in
    0..1 (ComfyUI's IMAGE layout). `first_index` places the batch inside a longer shot,
    which is how consecutive chunks of one shot share global frame numbers."""

    def __init__(self, frames, first_index: int = 0):
        if isinstance(frames, np.ndarray):
            frames = torch.from_numpy(frames)
        if frames.ndim != 4 or frames.shape[-1] not in (3, 4):
            raise ValueError(f"expected frames shaped [N, H, W, 3], got {tuple(frames.shape)}")
        if len(frames) == 0:
            raise ValueError("the frame batch is empty")
        self._frames = frames[..., :3]
        self.height, self.width = int(frames.shape[1]), int(frames.shape[2])
        self.first_index = int(first_index)

    def __len__(self) -> int:
        return len(self._frames)

    def frames(self, indices):
        for i in indices:
            j = i - self.first_index
            if not 0 <= j < len(self._frames):
                raise IndexError(
                    f"frame {i} is outside this source (frames {self.first_index}.."
                    f"{self.first_index + len(self._frames) - 1})"
                )
            yield i, self._frames[j]


# --------------------------------------------------------------------------------------
# Frames from disk: video files (decoded as a stream) and image sequences (sam2long.media.plates).

VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".avi", ".webm")

# Backward (descending) requests are served in blocks: seek to the block's start,
# decode it forward, hand it out reversed. A block holds at most this many frames
# and at most _BLOCK_BYTES of decoded RGB, so memory stays bounded at any resolution.
_MAX_BLOCK = 32
_BLOCK_BYTES = 256 * 1024 * 1024


def open_frames(path, block_size: int | None = None, colorspace: str | None = None,
                ocio_config: str | None = None) -> FrameSource:
    """Open a video file or an image sequence as a streaming `FrameSource`.

    Video files (.mp4 .mov .mkv .avi .webm) are decoded with PyAV one frame at a
    time, numbered from 0; `block_size` caps how many frames a backward read keeps
    decoded at once (default: up to 32, fewer for very large frames). An image
    sequence (a pattern such as plate.####.exr, a folder, or one numbered file) is a
    `PlateFrames`, numbered by its file names; `colorspace`/`ocio_config` choose an
    OCIO input conversion for it (see sam2long.media.plates).
    Raises `FrameError` with a message naming the problem and the fix.
    """
    from pathlib import Path

    from .plates import IMAGE_EXTENSIONS, PlateFrames, is_sequence_path

    p = Path(path).expanduser()
    kinds = (f"give a video file ({' '.join(VIDEO_EXTENSIONS)}) or an image sequence: a folder, a pattern "
             f"such as plate.####.exr, or one numbered file ({' '.join(IMAGE_EXTENSIONS)})")
    if is_sequence_path(p) or p.is_dir() or (p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS):
        return PlateFrames(p, colorspace=colorspace, ocio_config=ocio_config)
    if not p.exists():
        raise FrameError(f"{str(path)!r} does not exist: {kinds}")
    if p.suffix.lower() in VIDEO_EXTENSIONS:
        if colorspace:
            raise FrameError(f"a colour space is for image sequences, not video {str(path)!r}: "
                             f"leave it out (video is decoded as sRGB)")
        return VideoFrames(p, block_size=block_size)
    raise FrameError(f"{str(path)!r} has an unsupported extension {p.suffix or '(none)'!r}: {kinds}")


def _runs(indices: list[int]) -> Iterator[tuple[int, int, int]]:
    """Split indices into maximal runs of step +1 or -1: (first, last, step)."""
    n = len(indices)
    i = 0
    while i < n:
        j = i
        if i + 1 < n and indices[i + 1] - indices[i] in (1, -1):
            step = indices[i + 1] - indices[i]
            while j + 1 < n and indices[j + 1] - indices[j] == step:
                j += 1
        else:
            step = 1
        yield indices[i], indices[j], step
        i = j + 1


class VideoFrames:
    """A video file decoded with PyAV as a stream (RGB uint8 [H, W, 3] frames).

    Ascending requests are one sequential decode. Descending requests are decoded
    in blocks of at most `block_size` frames: seek to the block's start, decode it
    forward, yield it reversed. Frame i is the i-th frame in presentation order.
    """

    def __init__(self, path, block_size: int | None = None):
        import av

        self.path = path
        self.first_index = 0
        self._pts: list[int] | None = None  # presentation timestamps by frame index (lazy)
        try:
            with av.open(str(path)) as container:
                if not container.streams.video:
                    raise FrameError(f"{str(path)!r} has no video stream: the file is truncated or corrupt, or "
                                     f"holds no picture; re-export it (e.g. H.264 .mp4) or give a folder of frames")
                stream = container.streams.video[0]
                self.width = int(stream.codec_context.width)
                self.height = int(stream.codec_context.height)
                count = int(stream.frames or 0)
                if count <= 0:  # the container does not say: count the packets (no decoding)
                    pts = self._demux_pts(container, stream)
                    count = len(pts)
                    self._pts = pts
                rate = stream.average_rate or stream.guessed_rate
                self.fps = float(rate) if rate else 0.0
                self.codec = stream.codec_context.name
        except FrameError:
            raise
        except Exception as e:  # PyAV raises its own error types for broken files
            raise FrameError(
                f"cannot read video {str(path)!r} ({first_line(e)}): the file is corrupt, truncated or "
                f"not a video; re-export it (e.g. H.264 .mp4) or give a folder of frames"
            ) from None
        if self.width <= 0 or self.height <= 0 or count <= 0:
            raise FrameError(f"video {str(path)!r} has no frames: re-export it or give a folder of frames")
        check_frame_size(self.width, self.height, f"video {str(path)!r}")
        self._count = count
        if block_size is None:
            per_frame = max(1, self.width * self.height * 3)
            block_size = max(1, min(_MAX_BLOCK, _BLOCK_BYTES // per_frame))
        self.block_size = max(1, int(block_size))

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"VideoFrames({str(self.path)!r}, {self.width}x{self.height}, {self._count} frames)"

    # -- decoding ------------------------------------------------------------------

    @staticmethod
    def _demux_pts(container, stream) -> list:
        pts = []
        for packet in container.demux(stream):
            if packet.size == 0:  # flush packet at the end
                continue
            pts.append(packet.pts if packet.pts is not None else packet.dts)
        if any(p is None for p in pts):
            return [None] * len(pts)
        return sorted(pts)

    def _timestamps(self) -> list:
        if self._pts is None:
            import av

            with av.open(str(self.path)) as container:
                self._pts = self._demux_pts(container, container.streams.video[0])
        return self._pts

    def _open(self):
        import av

        container = av.open(str(self.path))
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        # FFmpeg's own guard on what its decoder allocates, should the stream grow midway
        stream.codec_context.options = {"max_pixels": str(frame_limits()[1])}
        return container, stream

    def _decode_range(self, a: int, b: int) -> Iterator[tuple[int, np.ndarray]]:
        """Yield (index, frame) for a <= index <= b in ascending order."""
        failed_at = a  # the frame being decoded when the decoder gives up
        try:
            for i, frame in self._decode_range_inner(a, b):
                failed_at = i + 1
                yield i, frame
        except FrameError:
            raise
        except MemoryError:
            raise out_of_memory(f"video {str(self.path)!r} at frame {failed_at} ({self.width}x{self.height})") from None
        except Exception as e:
            import av

            if isinstance(e, getattr(av, "FFmpegError", ())) or type(e).__module__.startswith("av"):
                raise FrameError(
                    f"cannot decode video {str(self.path)!r} at frame {failed_at} ({first_line(e)}): "
                    f"the file is corrupt or truncated; re-export it or give a folder of frames"
                ) from None
            raise

    def _rgb(self, frame, idx: int) -> np.ndarray:
        """The decoded frame as RGB, once its size is the header's (a stream may change size
        midway; converting a frame larger than the one checked would allocate unchecked)."""
        if (frame.width, frame.height) != (self.width, self.height):
            raise FrameError(f"frame {idx} of video {str(self.path)!r} is {frame.width}x{frame.height} but the "
                             f"video is {self.width}x{self.height}: re-export it at one size")
        return frame.to_ndarray(format="rgb24")

    def _decode_range_inner(self, a, b):
        start_pts = None
        if a > 0:
            pts = self._timestamps()
            if len(pts) == self._count and pts[a] is not None:
                start_pts = pts[a]
        container, stream = self._open()
        try:
            index_of = None
            if start_pts is not None:
                container.seek(start_pts, stream=stream, backward=True, any_frame=False)
                index_of = {p: i for i, p in enumerate(self._pts)}
            idx = -1
            first = True
            for frame in container.decode(stream):
                if index_of is not None:
                    i = index_of.get(frame.pts)
                    if i is None or (first and i > a):
                        # the seek landed past the target or timestamps do not match the
                        # demuxed ones: decode from the start, counting frames instead
                        container.close()
                        yield from self._decode_counting(a, b)
                        return
                    idx = i
                else:
                    idx += 1
                first = False
                if idx < a:
                    continue
                if idx > b:
                    return
                yield idx, self._rgb(frame, idx)
                if idx == b:
                    return
            if idx < b:
                raise self._ended(idx + 1, b)
        finally:
            container.close()

    def _ended(self, decoded: int, wanted: int) -> FrameError:
        return FrameError(f"video {str(self.path)!r} ended after {decoded} frames but {self._count} were "
                          f"expected (frame {wanted} asked for): the file may be truncated; re-export it")

    def _decode_counting(self, a, b):
        container, stream = self._open()
        try:
            idx = -1
            for idx, frame in enumerate(container.decode(stream)):
                if idx < a:
                    continue
                yield idx, self._rgb(frame, idx)
                if idx >= b:
                    return
            raise self._ended(idx + 1, b)
        finally:
            container.close()

    def frames(self, indices):
        indices = [int(i) for i in indices]
        for i in indices:
            if not 0 <= i < self._count:
                raise IndexError(f"frame {i} is outside this video (frames 0..{self._count - 1})")
        for first, last, step in _runs(indices):
            if step == 1:
                yield from self._decode_range(first, last)
                continue
            # descending: blocks from the top, each decoded forward and yielded reversed
            top = first
            while top >= last:
                low = max(last, top - self.block_size + 1)
                block = list(self._decode_range(low, top))
                for i, frame in reversed(block):
                    yield i, frame
                del block
                top = low - 1
