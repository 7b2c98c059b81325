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
