"""SAM2Long Prompt Editor: clicks and boxes drawn on the shot's frames in the node itself.

The browser side (web/sam2long_editor.js) keeps what the artist drew in the node's
`editor` widget as JSON, so it lives in the workflow (saved, shared, in the API copy):

    {"version": 1, "objects": [
        {"id": 0, "name": "girl", "frames": {
            "0":  {"points": [[412.5, 230, 1], [300, 200, 0]], "box": null},
            "40": {"points": [], "box": [350, 120, 480, 400]}}}]}

Coordinates are pixels of the source frame, frames count from the first frame of the
range (or IMAGE batch) the Track node gets, like the Prompt node's frame_index; a point's
third number is its label (1 positive, 0 negative). This node turns that into a prompt
chain (the Prompt node's type, rules and object ids), after the chain it is given.
"""

from __future__ import annotations

import json

from comfy_api.latest import io

from sam2long.errors import PromptError

from . import served
from .prompts import MAX_OBJECT_ID, PromptChain, PromptEntry, _num, to_prompt_set
from .sockets import CATEGORY, PromptsType, ShotType
from .widgets import MAX_FRAMES, whole

VERSION = 1
EMPTY = json.dumps({"version": VERSION, "objects": [{"id": 0, "name": "object 0", "frames": {}}]},
                   separators=(",", ":"))  # as web/editor_core.js writes it
NAME = "SAM2Long Prompt Editor"


def _fail(problem: str) -> ValueError:
    return ValueError(f"{NAME}: {problem}")


def _shown(value, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _box(value, where: str):
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise _fail(f"the box of {where} must be [x0, y0, x1, y1], got {_shown(value)}")
    x0, y0, x1, y1 = (_num(v, f"the box of {where}") for v in value)
    return (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))


def _points(value, where: str):
    if not isinstance(value, (list, tuple)):
        raise _fail(f"the points of {where} must be a list of [x, y, label], got {_shown(value)}")
    points, labels = [], []
    for p in value:
        if not isinstance(p, (list, tuple)) or len(p) != 3 or p[2] not in (0, 1) or isinstance(p[2], bool):
            raise _fail(f"a point of {where} must be [x, y, label] with label 1 (positive) or 0 (negative), "
                        f"got {_shown(p)}")
        points.append((_num(p[0], f"a point of {where}"), _num(p[1], f"a point of {where}")))
        labels.append(int(p[2]))
    return tuple(points), tuple(labels)


def parse_state(text) -> list[PromptEntry]:
    """The prompt entries the editor's JSON holds, in object then frame order, checked in
    form (the library's PromptSet rules); a one-line ValueError/PromptError names what is wrong."""
    if not isinstance(text, str) or not text.strip():
        return []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _fail(f"its stored state is not valid JSON ({e.msg} at char {e.pos}); clear the node's "
                    "prompts or replace the node") from None
    except RecursionError:
        raise _fail("its stored state is nested too deeply to be the editor's JSON") from None
    if not isinstance(data, dict) or data.get("version") != VERSION or not isinstance(data.get("objects"), list):
        raise _fail(f'its stored state must be {{"version": {VERSION}, "objects": [...]}}, got {_shown(data)}')
    entries, seen = [], set()
    for obj in data["objects"]:
        if not isinstance(obj, dict):
            raise _fail(f"an object must be {{\"id\", \"name\", \"frames\"}}, got {_shown(obj)}")
        try:
            obj_id = whole(obj.get("id"), "an object id", 0, MAX_OBJECT_ID)
        except ValueError as e:
            raise _fail(str(e).removeprefix("SAM2Long: ")) from None
        if obj_id in seen:
            raise _fail(f"object id {obj_id} is used twice; give each object its own id")
        seen.add(obj_id)
        frames = obj.get("frames", {})
        if not isinstance(frames, dict):
            raise _fail(f"the frames of object {obj_id} must be an object keyed by frame number")
        for key in sorted(frames, key=lambda k: (len(str(k)), str(k))):
            if not (isinstance(key, str) and key.isdigit() and int(key) <= MAX_FRAMES):
                raise _fail(f"object {obj_id} has prompts on frame {_shown(key)}; frames are whole numbers "
                            f"from 0 to {MAX_FRAMES}")
            frame, where = int(key), f"object {obj_id} on frame {key}"
            prompt = frames[key]
            if not isinstance(prompt, dict):
                raise _fail(f"{where} must be {{\"points\": [...], \"box\": ...}}, got {_shown(prompt)}")
            points, labels = _points(prompt.get("points", []), where)
            box = _box(prompt.get("box"), where)
            if points or box is not None:
                entries.append(PromptEntry(frame, obj_id, points, labels, box))
    try:  # the library's form checks (finite numbers, non-empty boxes), here already
        to_prompt_set(entries)
    except PromptError as e:
        raise PromptError(f"{NAME}: {e}") from None
    return entries


def check_place(entries, count: int, height: int, width: int, what: str) -> None:
    """Every prompt on a frame of the shot (or batch) and inside it: the errors show on this
    node, where the artist drew them, rather than on Track."""
    try:
        to_prompt_set(entries).check(height, width, 0, count - 1)
    except PromptError as e:
        raise PromptError(f"{NAME}: {e} (the {what} has {count} frames of {width}x{height})") from None


class SAM2LongPromptEditor(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAM2LongPromptEditor",
            display_name=NAME,
            category=CATEGORY,
            description=(
                "Click the objects on the frames of the shot in the node: left click = positive point, "
                "shift or right click = negative point, drag = box, on any number of frames per object. "
                "Connect Load Shot's shot (shown before anything is queued) or an IMAGE batch (shown "
                "after a run). After Track has run, its masks are drawn on the frame shown. The "
                "prompts are stored in the workflow."),
            inputs=[
                io.String.Input("editor", default=EMPTY,
                                tooltip="The editor's objects and prompts as JSON (written by the canvas)."),
                PromptsType.Input("prompts", optional=True,
                                  tooltip="Prompts from a Prompt node or another editor; these are added."),
                ShotType.Input("shot", optional=True,
                               tooltip="From SAM2Long Load Shot: the frames to click on."),
                io.Image.Input("images", optional=True,
                               tooltip="An IMAGE batch to click on (shown once the graph has run)."),
            ],
            outputs=[PromptsType.Output("prompts_out", display_name="prompts")],
        )

    @classmethod
    def execute(cls, editor=EMPTY, prompts=None, shot=None, images=None) -> io.NodeOutput:
        entries = parse_state(editor)
        base = prompts if isinstance(prompts, PromptChain) else PromptChain()
        if not entries and not base.entries:
            raise _fail("it holds no prompts. Click on the object in the node's frame (left = on it, "
                        "shift or right = not on it, drag = box), or connect a Prompt node.")
        ui = {}
        if shot is not None:
            check_place(entries, shot.count, shot.height, shot.width, "shot")
        if images is not None:
            n, h, w = (int(v) for v in images.shape[:3])
            check_place(entries, n, h, w, "images batch")
            ui = {"sam2long_images": [served.remember(images)], "sam2long_frames": [n]}
        return io.NodeOutput(base + PromptChain(tuple(entries)), ui=ui or None)
