"""SAM2Long Load Shot: a video, folder of frames or image sequence opened without decoding it.

The node outputs a lazy handle (`sam2long.media.shot.Shot`, SAM2LONG_SHOT socket) that the
Track, Preview and Save Mattes nodes stream from, and decodes only the one frame it
shows. Where files come from (the input folder, core's VIDEO socket) is settled here.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from comfy_api.latest import io

from sam2long.errors import FrameError
from sam2long.media.frames import VIDEO_EXTENSIONS
from sam2long.media.plates import IMAGE_EXTENSIONS, find_sequence, is_sequence_path
from sam2long.media.shot import Shot, fingerprint, open_shot

from . import access
from .sockets import CATEGORY, ShotType
from .runtime import intermediate_device
from .widgets import MAX_FRAMES, whole


def input_dir() -> str:
    import folder_paths

    return folder_paths.get_input_directory()


def video_choices() -> list[str]:
    """The videos in the input folder; a link there is listed only where it leads inside the
    folders the pack may read (else picking it would be refused)."""
    folder = input_dir()
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder)
                  if f.lower().endswith(VIDEO_EXTENSIONS) and access.allowed(os.path.join(folder, f))
                  and os.path.isfile(os.path.join(folder, f)))


def _what(video: str, path: str) -> str:
    """The input as the user gave it, for messages."""
    path = (path or "").strip()
    return f"the path {path!r}" if path else f"the video {video!r}"


def resolve(video: str = "", path: str = "") -> str:
    """The real path of the file or pattern the inputs name: `path` (relative to the input
    folder, or absolute) wins over the `video` combo. The path policy (nodes/access.py) is
    applied first, before the file system is asked anything: PathNotAllowed outside the
    folders the pack may read, then FileNotFoundError saying where it looked."""
    import folder_paths

    path = (path or "").strip()
    what = _what(video, path)
    if path:
        full = os.path.join(input_dir(), path)  # `~` stays a name; an absolute path stays as it is
    elif video:
        # The combo's list check is off (validate_inputs), so `video` may be any text: "../x.mp4" too.
        full = folder_paths.get_annotated_filepath(video)
    else:
        raise FileNotFoundError("SAM2Long: no shot given. Pick a video from ComfyUI's input folder "
                                f"({input_dir()}) or type a path to a video, a folder of frames or a "
                                "sequence like plate.####.exr")
    real = access.readable(full, what)
    if not os.path.exists(real) and not (is_sequence_path(Path(real)) and os.path.isdir(os.path.dirname(real))):
        where = full
        if not (path and os.path.isabs(path)):
            where += f" (relative paths are read from ComfyUI's input folder {input_dir()})"
        raise FileNotFoundError(f"SAM2Long: {what} was not found; looked for {where}. Check the spelling "
                                "or put the file in the input folder.")
    return real


def _check_frame_links(real: str, what: str) -> None:
    """A folder or sequence inside the roots may hold links: each frame must lead inside
    them too. Checked before any frame is opened (open_shot reads every frame's header)."""
    p = Path(real)
    if not (is_sequence_path(p) or p.is_dir() or (p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)):
        return  # a video file: `real` is already its real path
    try:
        found, _, _ = find_sequence(p)
    except FrameError:
        return  # open_shot gives the message
    for f in found.values():
        if f.is_symlink():
            access.readable(str(f), f"{what} (its frame {f.name!r})")


def load(video: str = "", path: str = "", first_frame: int = 0, frame_count: int = 0) -> Shot:
    first = whole(first_frame, "first_frame", 0, MAX_FRAMES)
    count = whole(frame_count, "frame_count", 0, MAX_FRAMES)
    full = resolve(video, path)
    _check_frame_links(full, _what(video, path))
    try:
        return open_shot(full, first, count)
    except FrameError as e:
        raise FrameError(f"SAM2Long: {e}") from None


def to_image(frame) -> torch.Tensor:
    """uint8 [H, W, 3] -> IMAGE [1, H, W, 3] float 0..1 on the intermediate device."""
    x = torch.as_tensor(np.asarray(frame))[..., :3].float() * (1.0 / 255.0)
    return x[None].to(intermediate_device())


class SAM2LongLoadShot(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAM2LongLoadShot",
            display_name="SAM2Long Load Shot",
            category=CATEGORY,
            description=(
                "Opens a long shot without decoding it: a video from the input folder, or a path to a "
                "video, a folder of frames or an image sequence. Track, Preview and Save Mattes stream "
                "its frames one at a time, so memory does not grow with the shot. 'frame' is the one "
                "frame decoded here, for clicking on with a points editor."),
            inputs=[
                io.Combo.Input("video", options=video_choices(), upload=io.UploadType.video,
                               tooltip="A video file in ComfyUI's input folder (upload one here)."),
                io.String.Input("path", default="",
                                tooltip="Overrides 'video' when set: a video file, a folder of frames or a "
                                        "sequence like plate.####.exr; absolute, or relative to the input "
                                        "folder."),
                io.Int.Input("first_frame", default=0, min=0, max=MAX_FRAMES,
                             tooltip="Position in the shot (from 0) where the range starts."),
                io.Int.Input("frame_count", default=0, min=0, max=MAX_FRAMES,
                             tooltip="Frames in the range; 0 = to the end of the shot."),
                io.Int.Input("preview_index", default=0, min=0, max=MAX_FRAMES,
                             tooltip="Frame of the range output as 'frame' (Prompt frame_index counts the "
                                     "same way)."),
            ],
            outputs=[
                ShotType.Output("shot", display_name="shot",
                                tooltip="Lazy handle on the range: holds no pixels."),
                io.Int.Output("frame_count_out", display_name="frame_count", tooltip="Frames in the range."),
                io.Int.Output("width", display_name="width"),
                io.Int.Output("height", display_name="height"),
                io.Float.Output("fps", display_name="fps", tooltip="0 when the source does not say."),
                io.Image.Output("frame", display_name="frame", tooltip="The frame at preview_index."),
            ],
        )

    @classmethod
    def validate_inputs(cls, video="", path=""):
        # Taking `video` here replaces the combo's "value not in list" check: with a path
        # set the combo may be empty or stale.
        try:
            resolve(video, path)
        except (FileNotFoundError, access.PathNotAllowed) as e:
            return str(e)
        return True

    @classmethod
    def fingerprint_inputs(cls, video="", path="", first_frame=0, frame_count=0, preview_index=0):
        try:
            return fingerprint(resolve(video, path))  # resolve() refuses an outside path before any scan
        except OSError:  # FileNotFoundError, PathNotAllowed, ...
            return None  # execute() raises the error

    @classmethod
    def execute(cls, video="", path="", first_frame=0, frame_count=0, preview_index=0) -> io.NodeOutput:
        shot = load(video, path, first_frame, frame_count)
        k = whole(preview_index, "preview_index", 0, MAX_FRAMES)
        if not k < shot.count:
            raise ValueError(f"SAM2Long: preview_index {k} is outside the range, which has frames "
                             f"0..{shot.count - 1}; it counts from the range's first frame")
        (_, frame), = shot.read([k])
        return io.NodeOutput(shot, shot.count, shot.width, shot.height, shot.fps, to_image(frame))
