"""SAM2Long Save Mattes: a track's masks straight to numbered matte files, frame by frame.

Works the same on in-memory and spilled tracks and never holds more than one frame's
masks, so a 10,000-frame track is written in flat memory. Each file goes through
`sam2long.media.writers.MatteWriter` (temporary name, then rename): an interrupted save
leaves only complete mattes.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from comfy_api.latest import io, ui

from sam2long.media.writers import MATTE_FORMATS, MatteWriter

from . import access
from .preview import preview_indices
from .sockets import CATEGORY, TrackType
from .track import _check_interrupt
from .widgets import whole

MODES = ["per_object", "union"]
FORMATS = list(MATTE_FORMATS)  # the command line's --format choices
PREVIEW_FRAMES = 4
PREVIEW_WIDTH = 512  # the node shows mattes downscaled to about this width
MAX_NUMBER = 100_000_000  # the largest first_number


def output_folder(folder: str) -> str:
    """The real path of `folder`, relative to ComfyUI's output folder (an absolute path only
    inside the folders the pack may write to, nodes/access.py; `~` is not expanded).
    PathNotAllowed before anything is created."""
    import folder_paths

    folder = folder or ""
    return access.writable(os.path.join(folder_paths.get_output_directory(), folder), f"the folder {folder!r}")


def save_mattes(track, folder: str, prefix: str = "matte", object_ids: str = "", mode: str = "per_object",
                first_number: int = -1, fmt: str = "png", on_frame=None):
    """Write one matte per frame of the track (empty where an object is not tracked):
    per_object -> `<folder>/<object id>/<prefix>.<number>.<ext>`, union -> `<folder>/...`.
    Numbers start at the track's own first frame number when `first_number` < 0.
    Returns (absolute folder, IMAGE of a few mattes for the node's preview)."""
    if mode not in MODES:
        raise ValueError(f"SAM2Long: mode must be one of {MODES}, got {mode!r}")
    if fmt not in FORMATS:
        raise ValueError(f"SAM2Long: format must be one of {FORMATS}, got {fmt!r}")
    if any(c in prefix for c in "/\\") or prefix in (".", ".."):
        raise ValueError(f"SAM2Long: prefix {prefix!r} must be a plain file name prefix (no folders); put "
                         "folders in 'folder'")
    ids = track.select(object_ids)
    root = output_folder(folder)
    if os.path.isfile(root):
        raise ValueError(f"SAM2Long: {root} is a file; give a folder for the mattes")
    first_number = whole(first_number, "first_number", -1, MAX_NUMBER)
    base = track.first_number if first_number < 0 else first_number
    padding = max(4, int(getattr(track, "padding", 4)), len(str(base + track.num_frames - 1)))
    writer = MatteWriter(root, ids if mode == "per_object" else [None], padding=padding, prefix=prefix, fmt=fmt)
    step = max(1, -(-track.width // PREVIEW_WIDTH))
    shown = set(preview_indices(track.num_frames, PREVIEW_FRAMES))
    previews = []
    empty = np.zeros((track.height, track.width), bool)
    try:
        for j in range(track.num_frames):
            masks = track.frame_masks(j, ids)
            if mode == "per_object":
                for oid in ids:
                    writer.write(oid, base + j, masks.get(oid, empty))
            union = np.logical_or.reduce([empty, *masks.values()])
            if mode == "union":
                writer.write(None, base + j, union)
            if j in shown:
                previews.append(torch.from_numpy(union[::step, ::step].astype(np.float32)))
            if on_frame is not None:
                on_frame(j)
    except BaseException:
        writer.cleanup()
        raise
    return root, torch.stack(previews)[..., None].expand(-1, -1, -1, 3)


class SAM2LongSaveMattes(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAM2LongSaveMattes",
            display_name="SAM2Long Save Mattes",
            category=CATEGORY,
            description=(
                "Writes the track's masks as numbered matte files (white = object), one per frame, "
                "straight to disk: per_object gives one sequence per object in <folder>/<object id>/, "
                "union one sequence in <folder>/. Each file appears only when complete."),
            inputs=[
                TrackType.Input("track"),
                io.String.Input("folder", default="sam2long/mattes",
                                tooltip="Relative to ComfyUI's output folder; an absolute path only inside "
                                        "the output folder or a folder in SAM2LONG_ALLOWED_PATHS."),
                io.String.Input("prefix", default="matte", tooltip="File names: <prefix>.<number>.<ext>."),
                io.String.Input("object_ids", default="", tooltip='Objects to write: "" = all, "0,2" or "1-3".'),
                io.Combo.Input("mode", options=MODES, default="per_object",
                               tooltip="per_object: a sequence per object; union: one sequence of all objects."),
                io.Int.Input("first_number", default=-1, min=-1, max=MAX_NUMBER,
                             tooltip="Number of the first file; -1 = the shot's own frame number (a plate's "
                                     "number, else the frame's position in the shot, from 0)."),
                io.Combo.Input("format", options=FORMATS, default=FORMATS[0]),
            ],
            outputs=[io.String.Output("folder_out", display_name="folder",
                                      tooltip="The absolute folder the mattes were written to.")],
            is_output_node=True,
        )

    @classmethod
    def validate_inputs(cls, folder="sam2long/mattes"):
        # Refused when the prompt is queued, before anything upstream runs.
        try:
            output_folder(folder)
        except access.PathNotAllowed as e:
            return str(e)
        return True

    @classmethod
    def execute(cls, track, folder="sam2long/mattes", prefix="matte", object_ids="", mode="per_object",
                first_number=-1, format="png") -> io.NodeOutput:
        import comfy.utils

        total = track.num_frames
        pbar = comfy.utils.ProgressBar(total)

        def on_frame(j):
            pbar.update_absolute(j + 1, total)
            _check_interrupt()

        root, previews = save_mattes(track, folder, prefix, object_ids, mode, first_number, format, on_frame)
        return io.NodeOutput(root, ui=ui.PreviewImage(previews, cls=cls))
