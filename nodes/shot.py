"""SAM2Long Load Shot: a video, folder of frames or image sequence opened without decoding it.

The node outputs a lazy handle (`sam2long.shot.Shot`, SAM2LONG_SHOT socket) that the
Track, Preview and Save Mattes nodes stream from, and decodes only the one frame it
shows. Where files come from (the input folder, core's VIDEO socket) is settled here.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from comfy_api.latest import io

from sam2long.errors import FrameError
from sam2long.frames import VIDEO_EXTENSIONS
from sam2long.shot import Shot, fingerprint, open_shot

from .sockets import CATEGORY, ShotType
from .track import intermediate_device


def input_dir() -> str:
    import folder_paths

    return folder_paths.get_input_directory()


def video_choices() -> list[str]:
    folder = input_dir()
    if not os.path.isdir(folder):
        return []
    return sorted(f for f in os.listdir(folder)
                  if os.path.isfile(os.path.join(folder, f)) and f.lower().endswith(VIDEO_EXTENSIONS))


def _is_pattern(path: str) -> bool:
    return "#" in os.path.basename(path) or "%" in os.path.basename(path)


def resolve(video: str = "", path: str = "") -> str:
    """The file or pattern the inputs name: `path` (absolute, or relative to the input
    folder) wins over the `video` combo. Raises FileNotFoundError saying where it looked."""
    import folder_paths

    path = (path or "").strip()
    if path:
        full = os.path.join(input_dir(), os.path.expanduser(path))  # an absolute path stays as it is
        what = f"the path {path!r}"
    elif video:
        full = folder_paths.get_annotated_filepath(video)
        what = f"the video {video!r}"
    else:
        raise FileNotFoundError("SAM2Long: no shot given. Pick a video from ComfyUI's input folder "
                                f"({input_dir()}) or type a path to a video, a folder of frames or a "
                                "sequence like plate.####.exr")
    if not os.path.exists(full) and not (_is_pattern(full) and os.path.isdir(os.path.dirname(full))):
        where = full
        if not (path and os.path.isabs(os.path.expanduser(path))):
            where += f" (relative paths are read from ComfyUI's input folder {input_dir()})"
        raise FileNotFoundError(f"SAM2Long: {what} was not found; looked for {where}. Check the spelling "
                                "or put the file in the input folder.")
    return full


def load(video: str = "", path: str = "", first_frame: int = 0, frame_count: int = 0) -> Shot:
    full = resolve(video, path)
    try:
        return open_shot(full, first_frame, frame_count)
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
                io.Int.Input("first_frame", default=0, min=0, max=10_000_000,
                             tooltip="Position in the shot (from 0) where the range starts."),
                io.Int.Input("frame_count", default=0, min=0, max=10_000_000,
                             tooltip="Frames in the range; 0 = to the end of the shot."),
                io.Int.Input("preview_index", default=0, min=0, max=10_000_000,
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
        except FileNotFoundError as e:
            return str(e)
        return True

    @classmethod
    def fingerprint_inputs(cls, video="", path="", first_frame=0, frame_count=0, preview_index=0):
        try:
            return fingerprint(resolve(video, path))
        except (FileNotFoundError, OSError):
            return None  # execute() raises the error

    @classmethod
    def execute(cls, video="", path="", first_frame=0, frame_count=0, preview_index=0) -> io.NodeOutput:
        shot = load(video, path, first_frame, frame_count)
        k = int(preview_index)
        if not 0 <= k < shot.count:
            raise ValueError(f"SAM2Long: preview_index {k} is outside the range, which has frames "
                             f"0..{shot.count - 1}; it counts from the range's first frame")
        (_, frame), = shot.read([k])
        return io.NodeOutput(shot, shot.count, shot.width, shot.height, shot.fps, to_image(frame))
