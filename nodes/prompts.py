"""Prompt parsing (pure functions), the chainable SAM2Long Prompt node, and the
hand-over of a chain to the tracker.

A chain is plain data: nothing here needs a model or the frames until
`apply_prompts`, which builds the library's `PromptSet` (the one prompt model and
validator, `sam2long/prompts.py`) from it. Frame indices count from the first
frame of the IMAGE batch given to the Track node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import torch
from comfy_api.latest import io

from sam2long.errors import PromptError
from sam2long.prompts import PromptSet

from .sockets import CATEGORY, BBox, BoundingBox, PromptsType
from .widgets import MAX_FRAMES, whole

MAX_OBJECT_ID = 10_000


@dataclass(frozen=True)
class PromptEntry:
    """What one object gets on one frame. Coordinates are pixels of that frame
    unless `normalized` (then 0..1 of the frame's width/height)."""

    frame: int
    obj_id: int
    points: tuple[tuple[float, float], ...] = ()
    labels: tuple[int, ...] = ()
    box: tuple[float, float, float, float] | None = None
    mask: torch.Tensor | None = field(default=None, compare=False)  # [H, W] bool, CPU
    normalized: bool = False


@dataclass(frozen=True)
class PromptChain:
    """What flows through a SAM2LONG_PROMPTS socket: an immutable list of prompt
    entries; chaining returns a new chain."""

    entries: tuple[PromptEntry, ...] = ()

    def __add__(self, other: "PromptChain") -> "PromptChain":
        return PromptChain(self.entries + other.entries)

    @property
    def obj_ids(self) -> list[int]:
        return sorted({e.obj_id for e in self.entries})

    @property
    def frames(self) -> list[int]:
        return sorted({e.frame for e in self.entries})


def _num(v, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"SAM2Long: {what} must be a number, got {v!r}")
    try:
        return float(v)  # NaN and infinity pass here: the library's PromptSet refuses them
    except OverflowError:  # an int of hundreds of digits, from JSON
        raise ValueError(f"SAM2Long: {what} holds a number too large for a coordinate") from None


def parse_points(text: Any, what: str = "points") -> list[tuple[float, float]]:
    """Points as KJNodes' Points Editor and core's SAM 3 nodes write them:
    a JSON string `[{"x": 10, "y": 20}, ...]`. Also accepts `[[x, y], ...]`, a
    single point, and already-parsed lists. Empty / blank -> []."""
    if text is None:
        return []
    if isinstance(text, str):
        if not text.strip():
            return []
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"SAM2Long: {what} is not valid JSON ({e.msg} at char {e.pos}); expected "
                '[{"x": 10, "y": 20}, ...]'
            ) from None
    else:
        data = text
    if isinstance(data, dict) or (isinstance(data, (list, tuple)) and len(data) == 2
                                  and all(isinstance(v, (int, float)) for v in data)):
        data = [data]
    if not isinstance(data, (list, tuple)):
        raise ValueError(f'SAM2Long: {what} must be a list like [{{"x": 10, "y": 20}}], got {data!r}')
    out = []
    for p in data:
        if isinstance(p, dict):
            if "x" not in p or "y" not in p:
                raise ValueError(f'SAM2Long: each point in {what} needs "x" and "y", got {p!r}')
            out.append((_num(p["x"], what), _num(p["y"], what)))
        elif isinstance(p, (list, tuple)) and len(p) == 2:
            out.append((_num(p[0], what), _num(p[1], what)))
        else:
            raise ValueError(f'SAM2Long: cannot read point {p!r} in {what}; use {{"x": 10, "y": 20}}')
    return out


def _one_box(b) -> tuple[float, float, float, float] | None:
    """A single box from a BOUNDING_BOX dict or a BBOX (x0, y0, x1, y1); None if `b`
    is not a box (e.g. a nested per-frame list)."""
    if isinstance(b, dict):
        if not all(k in b for k in ("x", "y", "width", "height")):
            raise ValueError(f'SAM2Long: a BOUNDING_BOX needs "x", "y", "width", "height", got {b!r}')
        x, y = _num(b["x"], "box x"), _num(b["y"], "box y")
        return (x, y, x + _num(b["width"], "box width"), y + _num(b["height"], "box height"))
    if isinstance(b, torch.Tensor):
        b = b.tolist()
    if isinstance(b, (list, tuple)) and len(b) == 4 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in b
    ):
        x0, y0, x1, y1 = (_num(v, "box") for v in b)
        return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    return None


def parse_boxes(boxes: Any) -> list[list[tuple[float, float, float, float]]]:
    """Boxes in any of the shapes found in the wild, as a list of frames, each a
    list of (x0, y0, x1, y1) pixel boxes:

    - BBOX: one (x0, y0, x1, y1) or a list of them (KJNodes, kijai SAM2) -> one frame
    - BOUNDING_BOX: one {"x","y","width","height"} dict or a list of them -> one frame
    - per-frame lists: [[box, ...], [box, ...], ...] -> frame i gets list i
    """
    if boxes is None:
        return []
    if isinstance(boxes, str):
        boxes = json.loads(boxes) if boxes.strip() else []
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.tolist()
    single = _one_box(boxes)
    if single is not None:
        return [[single]]
    if not isinstance(boxes, (list, tuple)):
        raise ValueError(f"SAM2Long: cannot read boxes {boxes!r}")
    if len(boxes) == 0:
        return []
    flat = [_one_box(b) for b in boxes]
    if all(b is not None for b in flat):
        return [flat]
    frames = []
    for item in boxes:
        one = _one_box(item)
        if one is not None:
            frames.append([one])
            continue
        if not isinstance(item, (list, tuple)):
            raise ValueError(f"SAM2Long: cannot read box {item!r}")
        row = []
        for b in item:
            bb = _one_box(b)
            if bb is None:
                raise ValueError(f"SAM2Long: cannot read box {b!r}")
            row.append(bb)
        frames.append(row)
    return frames


def _masks(mask) -> list[torch.Tensor]:
    if mask is None:
        return []
    m = torch.as_tensor(mask)
    if m.ndim == 2:
        m = m[None]
    if m.ndim == 4 and m.shape[-1] in (1, 3, 4):  # an IMAGE given as mask
        m = m[..., 0]
    if m.ndim != 3:
        raise ValueError(f"SAM2Long: mask must be [H, W] or [B, H, W], got {tuple(m.shape)}")
    return [(x > 0.5).cpu() for x in m.detach().float()]


def build_prompts(positive_coords=None, negative_coords=None, bboxes=None, mask=None,
                  frame_index: int = 0, object_id: int = 0, normalized: bool = False) -> PromptChain:
    """One node's worth of prompts.

    Points go to `object_id` on `frame_index`. Boxes: the k-th box of a frame is
    object `object_id + k` (with the points joining box 0); per-frame box lists
    start at `frame_index`. Masks: the k-th mask of a batch is object
    `object_id + k` on `frame_index`."""
    pos = parse_points(positive_coords, "positive_coords")
    neg = parse_points(negative_coords, "negative_coords")
    box_frames = parse_boxes(bboxes)
    masks = _masks(mask)
    frame_index = whole(frame_index, "frame_index", 0, MAX_FRAMES)
    object_id = whole(object_id, "object_id", 0, MAX_OBJECT_ID)
    pts = tuple(pos + neg)
    labels = tuple([1] * len(pos) + [0] * len(neg))
    if pts and not pos:
        # SAM 2 can take negatives alone, but with nothing else it has no object.
        if not box_frames and not masks:
            raise ValueError("SAM2Long: negative points need a positive point, a box or a mask too")
    entries: list[PromptEntry] = []
    points_used = False
    for f, row in enumerate(box_frames):
        for k, box in enumerate(row):
            use_pts = f == 0 and k == 0 and not masks
            points_used |= use_pts
            entries.append(PromptEntry(frame_index + f, object_id + k,
                                       pts if use_pts else (), labels if use_pts else (),
                                       box, None, normalized))
    for k, m in enumerate(masks):
        if k == 0 and pts:
            raise ValueError(
                "SAM2Long: give object %d either a mask or points on frame %d, not both "
                "(use a second Prompt node with another object_id or frame)" % (object_id, frame_index))
        entries.append(PromptEntry(frame_index, object_id + k, mask=m, normalized=normalized))
    if pts and not points_used and not masks:
        entries.insert(0, PromptEntry(frame_index, object_id, pts, labels, None, None, normalized))
    if not entries:
        raise ValueError(
            "SAM2Long: this prompt is empty. Give positive_coords (JSON like "
            '[{"x": 120, "y": 80}]), bboxes or a mask.')
    try:  # the library's form checks, here already, so the error shows on this node
        to_prompt_set(entries)
    except PromptError as e:
        raise PromptError(f"SAM2Long: {e}") from None
    return PromptChain(tuple(entries))


def _resize_mask(mask: torch.Tensor, h: int, w: int) -> torch.Tensor:
    if tuple(mask.shape) == (h, w):
        return mask
    m = torch.nn.functional.interpolate(mask[None, None].float(), size=(h, w), mode="nearest")
    return m[0, 0] > 0.5


def to_prompt_set(entries, height: int | None = None, width: int | None = None) -> PromptSet:
    """The library's prompt model from chain entries, in their order (a later entry adds
    to or replaces an earlier one as the tracker's add_* do). With the frame size,
    normalized coordinates become pixels and masks are resized (nearest) to the frames."""
    prompts = PromptSet()
    for e in entries:
        sx, sy = (width, height) if e.normalized and width is not None else (1.0, 1.0)
        if e.mask is not None:
            mask = e.mask if height is None else _resize_mask(e.mask, height, width)
            prompts.add_mask(e.frame, e.obj_id, mask.numpy())
            continue
        points = [(x * sx, y * sy) for x, y in e.points]
        if e.box is not None:
            x0, y0, x1, y1 = e.box
            prompts.add_box(e.frame, e.obj_id, (x0 * sx, y0 * sy, x1 * sx, y1 * sy), points, list(e.labels))
        else:
            prompts.add_points(e.frame, e.obj_id, points, list(e.labels))
    return prompts


def apply_prompts(tracker, prompts: PromptChain, first_index: int, num_frames: int, height: int, width: int):
    """Check the chain against the images batch with the library's validator, then hand
    it to the tracker with global frame numbers (batch-local + `first_index`)."""
    library = to_prompt_set(prompts.entries, height, width)
    try:
        library.check_frames(0, num_frames - 1)
    except PromptError as e:
        raise PromptError(f"SAM2Long: {e}. frame_index counts from the first frame of the images batch "
                          f"given to Track.") from None
    try:
        library.check(height, width, 0, num_frames - 1, frames=False)
    except PromptError as e:
        raise PromptError(f"SAM2Long: {e}") from None
    library.add_to(tracker, frame_offset=first_index)


class SAM2LongPrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAM2LongPrompt",
            display_name="SAM2Long Prompt",
            category=CATEGORY,
            description=(
                "Clicks, boxes or a mask for one object on one frame. Chain Prompt nodes to add "
                "objects and key frames. Coordinates are pixels of the prompted frame; frame_index "
                "counts from the first frame of the images given to SAM2Long Track."),
            inputs=[
                PromptsType.Input("prompts", optional=True,
                                      tooltip="Prompts from an earlier Prompt node; this node adds to them."),
                io.Int.Input("object_id", default=0, min=0, max=MAX_OBJECT_ID,
                             tooltip="Object these prompts belong to (extra boxes/masks get the next ids)."),
                io.Int.Input("frame_index", default=0, min=0, max=MAX_FRAMES,
                             tooltip="Frame of the images batch these prompts were drawn on."),
                io.String.Input("positive_coords", default="", optional=True,
                                tooltip='JSON points on the object, e.g. [{"x": 120, "y": 80}] '
                                        "(KJNodes Points Editor output)."),
                io.String.Input("negative_coords", default="", optional=True,
                                tooltip='JSON points NOT on the object, e.g. [{"x": 10, "y": 20}].'),
                io.MultiType.Input("bboxes", types=[BBox, BoundingBox], optional=True,
                                   tooltip="BBOX (x0,y0,x1,y1) list or BOUNDING_BOX dicts; per-frame "
                                           "lists start at frame_index."),
                io.Mask.Input("mask", optional=True,
                              tooltip="Mask of the object on frame_index (a batch = one object per mask)."),
                io.Combo.Input("coordinates", options=["pixels", "normalized"], default="pixels",
                               optional=True, tooltip="'normalized' for 0..1 coordinates."),
            ],
            outputs=[PromptsType.Output("prompts_out", display_name="prompts")],
        )

    @classmethod
    def execute(cls, object_id=0, frame_index=0, prompts=None, positive_coords="",
                negative_coords="", bboxes=None, mask=None, coordinates="pixels") -> io.NodeOutput:
        new = build_prompts(positive_coords, negative_coords, bboxes, mask, frame_index, object_id,
                            normalized=coordinates == "normalized")
        base = prompts if isinstance(prompts, PromptChain) else PromptChain()
        return io.NodeOutput(base + new)
