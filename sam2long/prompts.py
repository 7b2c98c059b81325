"""User prompts: points, boxes and masks per object and frame, in source pixels.

This is the one prompt model and the one validator: the tracker keeps its prompts
here, and the command line and the ComfyUI nodes build a `PromptSet` from their own
syntax. Prompts are checked twice: their form when added (no frame size needed),
and their place once the frames are known (inside the frame, on a frame that
exists). Each error names the object, the frame and what to change.

Coordinates are pixels of the source frames measured from the top-left corner of
the frame: (0, 0) is that corner and (W, H) the opposite one, so 0 <= x <= W and
0 <= y <= H are all inside. SAM 2 scales a point by x / W and y / H, which makes
the far edge (x = W) as meaningful as the near one; a box may touch either edge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import PromptError


@dataclass
class FramePrompt:
    points: list = field(default_factory=list)  # [(x, y)] in source pixels
    labels: list = field(default_factory=list)  # 1 positive, 0 negative
    box: tuple | None = None  # (x0, y0, x1, y1) in source pixels
    mask: np.ndarray | None = None  # [H, W] bool at source resolution
    mask_name: str | None = None  # where the mask came from (a file), for messages


def _where(obj_id, frame):
    return f"object {obj_id} on frame {frame}"


def _mask_what(prompt: FramePrompt, where: str) -> str:
    name = f" {prompt.mask_name!r}" if prompt.mask_name else ""
    return f"the mask{name} for {where}"


def inside(x: float, y: float, width: int, height: int) -> bool:
    """The coordinate rule (module docstring): both frame edges are inside."""
    return 0 <= x <= width and 0 <= y <= height


class PromptSet:
    def __init__(self):
        self.by_object: dict[int, dict[int, FramePrompt]] = {}

    @property
    def obj_ids(self) -> list[int]:
        return sorted(self.by_object)

    @property
    def frames(self) -> list[int]:
        return sorted({f for per_frame in self.by_object.values() for f in per_frame})

    def get(self, frame: int, obj_id: int) -> FramePrompt | None:
        return self.by_object.get(int(obj_id), {}).get(int(frame))

    def _slot(self, obj_id, frame) -> FramePrompt:
        if not isinstance(frame, (int, np.integer)) or frame < 0:
            raise PromptError(f"frame index must be a whole number >= 0, got {frame!r}")
        if not isinstance(obj_id, (int, np.integer)):
            raise PromptError(f"object id must be a whole number, got {obj_id!r}")
        return self.by_object.setdefault(int(obj_id), {}).setdefault(int(frame), FramePrompt())

    # ---- form checks, when a prompt is added ------------------------------------------------
    def add_points(self, frame, obj_id, points, labels=None):
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) if len(points) else np.zeros((0, 2))
        if len(pts) == 0:
            raise PromptError(f"no points given for {_where(obj_id, frame)}; give at least one (x, y) point")
        labels = [1] * len(pts) if labels is None else list(labels)
        if len(labels) != len(pts):
            raise PromptError(f"{len(pts)} points but {len(labels)} labels for {_where(obj_id, frame)}")
        if any(v not in (0, 1) for v in labels):  # checked before int(): int(inf) overflows, int(0.5) is 0
            raise PromptError(f"point labels must be 1 (positive) or 0 (negative) for {_where(obj_id, frame)}")
        labels = [int(v) for v in labels]
        if not np.isfinite(pts).all():
            raise PromptError(f"point coordinates must be finite numbers for {_where(obj_id, frame)}")
        slot = self._slot(obj_id, frame)
        if slot.mask is not None:
            raise PromptError(f"{_where(obj_id, frame)} already has a mask prompt; use either a mask or clicks")
        slot.points += [tuple(p) for p in pts.tolist()]
        slot.labels += labels

    def add_box(self, frame, obj_id, box, points=None, labels=None):
        b = np.asarray(box, dtype=np.float64).reshape(-1)
        if b.shape != (4,) or not np.isfinite(b).all():
            raise PromptError(f"a box is four numbers x0, y0, x1, y1; got {box!r} for {_where(obj_id, frame)}")
        if b[2] <= b[0] or b[3] <= b[1]:
            raise PromptError(
                f"empty box {tuple(b.tolist())} for {_where(obj_id, frame)}: x1 must exceed x0 and y1 exceed y0"
            )
        slot = self._slot(obj_id, frame)
        if slot.mask is not None:
            raise PromptError(f"{_where(obj_id, frame)} already has a mask prompt; use either a mask or a box")
        slot.box = tuple(b.tolist())
        if points is not None and len(points):
            self.add_points(frame, obj_id, points, labels)

    def add_mask(self, frame, obj_id, mask, name: str | None = None):
        """A mask replaces the clicks and box of its object and frame. `name` (a file
        name, say) is only used in error messages."""
        m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        m = np.squeeze(m)
        where = _where(obj_id, frame)
        if m.ndim != 2:
            raise PromptError(f"a mask prompt must be 2-D [H, W]; got shape {m.shape} for {where}")
        m = m > 0.5 if m.dtype.kind == "f" else m.astype(bool)
        prompt = FramePrompt(mask=m, mask_name=name)
        if not m.any():
            raise PromptError(f"{_mask_what(prompt, where)} is empty (all zero); paint the object, or remove "
                              f"this prompt")
        slot = self._slot(obj_id, frame)
        slot.points, slot.labels, slot.box, slot.mask, slot.mask_name = [], [], None, m, name

    # ---- place checks, against the frames ---------------------------------------------------
    def check_frames(self, first: int, last: int):
        """Every prompt must be on one of the frames first..last."""
        for obj_id, per_frame in self.by_object.items():
            for frame in per_frame:
                if not first <= frame <= last:
                    raise PromptError(
                        f"{_where(obj_id, frame)}: frame {frame} is not in this shot: its frames are {first}-{last}; "
                        f"move the prompt to one of these frames"
                    )

    def check(self, height: int, width: int, first: int, last: int, frames: bool = True):
        """Every prompt must be inside the frame, and (with `frames`) on a frame that exists."""
        if frames:
            self.check_frames(first, last)
        rule = f"use pixel coordinates with 0 <= x <= {width} and 0 <= y <= {height}"
        for obj_id, per_frame in self.by_object.items():
            for frame, p in per_frame.items():
                where = _where(obj_id, frame)
                if p.mask is not None and p.mask.shape != (height, width):
                    raise PromptError(
                        f"{_mask_what(p, where)} is {p.mask.shape[1]}x{p.mask.shape[0]} but the frames are "
                        f"{width}x{height}; give the mask at the frames' size"
                    )
                for x, y in p.points:
                    if not inside(x, y, width, height):
                        raise PromptError(
                            f"point ({x:g}, {y:g}) for {where} is outside the {width}x{height} frame; {rule}"
                        )
                if p.box is not None:
                    x0, y0, x1, y1 = p.box
                    if not (inside(x0, y0, width, height) and inside(x1, y1, width, height)):
                        box = ", ".join(f"{v:g}" for v in p.box)
                        raise PromptError(f"box ({box}) for {where} is outside the {width}x{height} frame; {rule}")
                if p.mask is None and p.box is None and 1 not in p.labels:
                    raise PromptError(f"{where} has only negative points; add a positive point or a box")

    # ---- use -------------------------------------------------------------------------------
    def add_to(self, tracker, frame_offset: int = 0):
        """Hand every prompt to `tracker` (its add_points / add_box / add_mask), in the
        order they were added, with `frame_offset` added to the frame numbers."""
        for obj_id, per_frame in self.by_object.items():
            for frame, p in per_frame.items():
                at = {"frame": frame + frame_offset, "obj_id": obj_id}
                if p.mask is not None:
                    tracker.add_mask(**at, mask=p.mask)
                elif p.box is not None and p.points:
                    tracker.add_box(**at, box=p.box, points=list(p.points), labels=list(p.labels))
                elif p.box is not None:
                    tracker.add_box(**at, box=p.box)
                else:
                    tracker.add_points(**at, points=list(p.points), labels=list(p.labels))

    def model_inputs(self, prompt: FramePrompt, height: int, width: int, image_size: int):
        """-> (points [N, 2] in model pixels, labels [N], None) or (None, None, mask [H, W]
        at source size: each network family resizes it as its predictor does)."""
        if prompt.mask is not None:
            return None, None, torch.from_numpy(prompt.mask).float()
        pts, labels = list(prompt.points), list(prompt.labels)
        if prompt.box is not None:  # SAM 2 takes a box as two corner points labelled 2 and 3, first
            x0, y0, x1, y1 = prompt.box
            pts = [(x0, y0), (x1, y1)] + pts
            labels = [2, 3] + labels
        # The same float32 arithmetic as SAM 2's predictor: normalise, then scale.
        points = torch.tensor(pts, dtype=torch.float32) / torch.tensor([width, height]) * image_size
        return points, torch.tensor(labels, dtype=torch.int32), None


def read_mask(path) -> np.ndarray:
    """A mask image file (white object on black; or its alpha channel, if it has one
    that varies) -> bool [H, W]. Its size and emptiness are checked by `PromptSet`."""
    from .limits import open_image, out_of_memory

    p = Path(path).expanduser()
    if not p.is_file():
        raise PromptError(f"mask file {str(path)!r} does not exist: give a PNG with white object on black")
    try:
        with open_image(p, f"mask {str(path)!r}", error=PromptError) as im:
            if im.mode in ("RGBA", "LA"):
                a = np.asarray(im.getchannel("A"))
                if a.min() == a.max():  # no alpha information: use the luminance
                    a = np.asarray(im.convert("L"))
            else:
                a = np.asarray(im.convert("L"))
    except PromptError:
        raise
    except MemoryError:
        raise out_of_memory(f"mask {str(path)!r}", error=PromptError) from None
    except Exception as e:
        raise PromptError(f"cannot read mask {str(path)!r} ({e}): give a PNG with white object on black") from None
    return a > 127 if a.max() > 1 else a > 0
