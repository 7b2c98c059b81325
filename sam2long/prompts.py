"""User prompts: points, boxes and masks per object and frame, in source pixels.

Prompts are checked twice: their form when added (no frame size needed), and
their place once the frames are known (inside the frame, on a frame that exists).
Each error names the object, the frame and what to change.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .errors import PromptError


@dataclass
class FramePrompt:
    points: list = field(default_factory=list)  # [(x, y)] in source pixels
    labels: list = field(default_factory=list)  # 1 positive, 0 negative
    box: tuple | None = None  # (x0, y0, x1, y1) in source pixels
    mask: np.ndarray | None = None  # [H, W] bool at source resolution


def _where(obj_id, frame):
    return f"object {obj_id} on frame {frame}"


class PromptSet:
    def __init__(self):
        self.by_object: dict[int, dict[int, FramePrompt]] = {}

    def _slot(self, obj_id, frame) -> FramePrompt:
        if not isinstance(frame, (int, np.integer)) or frame < 0:
            raise PromptError(f"frame index must be a whole number >= 0, got {frame!r}")
        if not isinstance(obj_id, (int, np.integer)):
            raise PromptError(f"object id must be a whole number, got {obj_id!r}")
        return self.by_object.setdefault(int(obj_id), {}).setdefault(int(frame), FramePrompt())

    def add_points(self, frame, obj_id, points, labels=None):
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2) if len(points) else np.zeros((0, 2))
        if len(pts) == 0:
            raise PromptError(f"no points given for {_where(obj_id, frame)}; give at least one (x, y) point")
        labels = [1] * len(pts) if labels is None else [int(v) for v in labels]
        if len(labels) != len(pts):
            raise PromptError(f"{len(pts)} points but {len(labels)} labels for {_where(obj_id, frame)}")
        if any(v not in (0, 1) for v in labels):
            raise PromptError(f"point labels must be 1 (positive) or 0 (negative) for {_where(obj_id, frame)}")
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

    def add_mask(self, frame, obj_id, mask):
        m = mask.detach().cpu().numpy() if isinstance(mask, torch.Tensor) else np.asarray(mask)
        m = np.squeeze(m)
        if m.ndim != 2:
            raise PromptError(f"a mask prompt must be 2-D [H, W]; got shape {m.shape} for {_where(obj_id, frame)}")
        m = m > 0.5 if m.dtype.kind == "f" else m.astype(bool)
        if not m.any():
            raise PromptError(
                f"the mask for {_where(obj_id, frame)} is empty; paint the object, or remove this prompt"
            )
        slot = self._slot(obj_id, frame)
        slot.points, slot.labels, slot.box, slot.mask = [], [], None, m

    # ---- checks against the frames ------------------------------------------------------
    def check(self, height: int, width: int, first: int, last: int, frames: bool = True):
        """Every prompt must be inside the frame, and (with `frames`) on a frame that exists."""
        for obj_id, per_frame in self.by_object.items():
            for frame, p in per_frame.items():
                where = _where(obj_id, frame)
                if frames and not (first <= frame <= last):
                    raise PromptError(
                        f"{where}: frame {frame} does not exist (frames here are {first}..{last}); "
                        f"move the prompt to an existing frame"
                    )
                if p.mask is not None and p.mask.shape != (height, width):
                    raise PromptError(
                        f"mask for {where} is {p.mask.shape[1]}x{p.mask.shape[0]} but the frames are "
                        f"{width}x{height}; resize the mask to the frame size"
                    )
                for x, y in p.points:
                    if not (0 <= x <= width and 0 <= y <= height):
                        raise PromptError(
                            f"point ({x:g}, {y:g}) for {where} is outside the {width}x{height} frame; "
                            f"use pixel coordinates of the source frames"
                        )
                if p.box is not None:
                    x0, y0, x1, y1 = p.box
                    if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
                        raise PromptError(
                            f"box {p.box} for {where} is outside the {width}x{height} frame; "
                            f"use pixel coordinates of the source frames"
                        )
                if p.mask is None and p.box is None and 1 not in p.labels:
                    raise PromptError(f"{where} has only negative points; add a positive point or a box")

    def model_inputs(self, prompt: FramePrompt, height: int, width: int, image_size: int):
        """-> (points [N, 2] in model pixels, labels [N]) or (None, None, mask [S, S])."""
        if prompt.mask is not None:
            m = torch.from_numpy(prompt.mask).float()[None, None]
            if m.shape[-2:] != (image_size, image_size):
                m = torch.nn.functional.interpolate(
                    m, size=(image_size, image_size), mode="bilinear", align_corners=False, antialias=True
                )
                m = (m >= 0.5).float()
            return None, None, m[0, 0]
        pts, labels = list(prompt.points), list(prompt.labels)
        if prompt.box is not None:  # SAM 2 takes a box as two corner points labelled 2 and 3, first
            x0, y0, x1, y1 = prompt.box
            pts = [(x0, y0), (x1, y1)] + pts
            labels = [2, 3] + labels
        # The same float32 arithmetic as SAM 2's predictor: normalise, then scale.
        points = torch.tensor(pts, dtype=torch.float32) / torch.tensor([width, height]) * image_size
        return points, torch.tensor(labels, dtype=torch.int32), None
