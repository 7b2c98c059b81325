"""SAM2Long Save Mattes: a track's masks straight to numbered matte files, frame by frame.

Works the same on in-memory and spilled tracks and never holds more than one frame's
masks, so a 10,000-frame track is written in flat memory. Each file goes through the
writers of `sam2long.media.writers` (temporary name, then rename): an interrupted save
leaves only complete mattes. `cryptomatte` writes one EXR per frame holding every object,
with the soft mattes as coverage (sam2long/media/cryptomatte.py).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from comfy_api.latest import io, ui

from sam2long.media.writers import CRYPTOMATTE, FORMATS as WRITER_FORMATS, open_writer

from . import access
from .preview import preview_indices
from .sockets import CATEGORY, TrackType
from .runtime import check_interrupt
from .widgets import whole
from .selection import select_objects

MODES = ["per_object", "union"]
FORMATS = list(WRITER_FORMATS)  # per-object formats, then cryptomatte
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
                first_number: int = -1, fmt: str = "png", on_frame=None, soft: bool = False,
                object_names: str = ""):
    """Write one matte per frame of the track (empty where an object is not tracked):
    per_object -> `<folder>/<object id>/<prefix>.<number>.<ext>`, union -> `<folder>/...`;
    cryptomatte -> `<folder>/<prefix>.<number>.exr` holding every selected object, named by
    `object_names` ("1=car, 2=person"; default object_<id>), with the soft mattes as coverage.
    `soft`: the other formats write the probability too, not 0/1.
    Numbers start at the track's own first frame number when `first_number` < 0.
    Returns (absolute folder, IMAGE of a few mattes for the node's preview)."""
    from sam2long.media.cryptomatte import parse_object_names

    if mode not in MODES:
        raise ValueError(f"SAM2Long: mode must be one of {MODES}, got {mode!r}")
    if fmt not in FORMATS:
        raise ValueError(f"SAM2Long: format must be one of {FORMATS}, got {fmt!r}")
    crypto = fmt == CRYPTOMATTE
    if crypto and mode != "per_object":
        raise ValueError("SAM2Long: a Cryptomatte holds every object by name, so it has no union: set mode "
                         "to per_object (the compositor picks one or several objects)")
    if any(c in prefix for c in "/\\") or prefix in (".", ".."):
        raise ValueError(f"SAM2Long: prefix {prefix!r} must be a plain file name prefix (no folders); put "
                         "folders in 'folder'")
    ids = select_objects(track, object_ids)
    names = None
    if crypto:
        try:
            names = parse_object_names(object_names, ids)
        except ValueError as e:
            raise ValueError(f"SAM2Long: object_names: {e}") from None
    soft = bool(soft) or crypto
    root = output_folder(folder)
    if os.path.isfile(root):
        raise ValueError(f"SAM2Long: {root} is a file; give a folder for the mattes")
    first_number = whole(first_number, "first_number", -1, MAX_NUMBER)
    base = track.first_number if first_number < 0 else first_number
    padding = max(4, int(getattr(track, "padding", 4)), len(str(base + track.num_frames - 1)))
    writer = open_writer(root, ids if mode == "per_object" else [None], padding=padding, prefix=prefix,
                         fmt=fmt, names=names)
    step = max(1, -(-track.width // PREVIEW_WIDTH))
    shown = set(preview_indices(track.num_frames, PREVIEW_FRAMES))
    previews = []
    shape = (track.height, track.width)
    empty = np.zeros(shape, np.float32 if soft else bool)
    try:
        for j in range(track.num_frames):
            masks = track.frame_soft(j, ids) if soft else track.frame_masks(j, ids)
            if mode == "per_object":
                writer.write_frame(base + j, masks, shape)
            union = (np.maximum if soft else np.logical_or).reduce([empty, *masks.values()])
            if mode == "union":
                writer.write_frame(base + j, {None: union}, shape)
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
                "union one sequence in <folder>/. Format cryptomatte writes one EXR per frame holding "
                "every object with soft edges, picked by name in Nuke, Fusion, Resolve or After "
                "Effects. Each file appears only when complete."),
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
                io.Combo.Input("format", options=FORMATS, default=FORMATS[0],
                               tooltip="png: 8-bit; png16, tif16: 16-bit; exr: one half-float channel A; "
                                       "cryptomatte: one EXR per frame with every object, by name."),
                io.Boolean.Input("soft", default=False, optional=True,
                                 tooltip="Write the model's probability (soft edges) instead of 0/1; "
                                         "cryptomatte always does."),
                io.String.Input("object_names", default="", optional=True,
                                tooltip='Cryptomatte names, e.g. "1=car, 2=person"; others are object_<id>.'),
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
                first_number=-1, format="png", soft=False, object_names="") -> io.NodeOutput:
        import comfy.utils

        total = track.num_frames
        pbar = comfy.utils.ProgressBar(total)

        def on_frame(j):
            pbar.update_absolute(j + 1, total)
            check_interrupt()

        root, previews = save_mattes(track, folder, prefix, object_ids, mode, first_number, format, on_frame,
                                     soft, object_names)
        return io.NodeOutput(root, ui=ui.PreviewImage(previews, cls=cls))
