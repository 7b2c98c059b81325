"""Each option of `sam2long track` once: name, checker, default and help.

The command line builds its arguments from `TRACK_OPTIONS` and a job file reads its keys
with them, so every track option has the same name and meaning in both. `track_job` turns
the options' values (argparse's namespace, or a job file's keys) into a typed `TrackJob`.
Options that only the command line has (--out, --json, --quiet, the prompts) are in `cli`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..options import PRECISIONS
from ..media.writers import FORMATS
from . import values
from .run import BadInput, ModelSettings, OutputSettings, Source, TrackJob, TreeSettings

DEVICES = ("auto", "cpu", "cuda", "mps")


@dataclass(frozen=True)
class TrackOption:
    name: str  # --name on the command line; `name` or `name_with_underscores` in a job file
    group: str  # its section of the help (see GROUPS)
    help: str
    check: Callable | None = None  # a checker from `values`; None: an on/off switch
    default: object = None
    metavar: str | None = None
    choices: tuple[str, ...] | None = None
    aliases: tuple[str, ...] = ()  # other names, each as good as `name`
    dest: str | None = None  # its key among the values (default: the name with underscores)

    @property
    def key(self) -> str:
        return self.dest or self.name.replace("-", "_")

    def read(self, value):
        """A job file's value, checked as the command line checks its text."""
        if self.check is None:
            return values.switch(value)
        if isinstance(value, (list, dict)):
            raise values.BadValue(f"give one value, not {value!r}")
        if self.choices is not None:
            return values.one_of(value, self.choices)
        return self.check(value)


# The help's sections, in order (None: the parser's own "options"); "range" and "colour"
# are `sam2long track`'s only, the others are also `sam2long demo`'s.
GROUPS = {"range": "range and direction", "colour": "colour (image sequences)", "model": None,
          "tree": "memory tree", "mattes": "mattes", "running": "running"}

_tree, _out = TreeSettings, OutputSettings  # their defaults are the options' defaults
TRACK_OPTIONS = (
    TrackOption("start", "range", "first frame to track (default: the shot's first frame)",
                values.zero_or_more, metavar="N"),
    TrackOption("end", "range", "last frame to track, inclusive (default: the last frame)",
                values.zero_or_more, metavar="N"),
    TrackOption("reverse", "range", "track backward from each object's last prompt frame towards --start"),
    TrackOption("both", "range", "track forward and backward from each object's first prompt frame"),
    TrackOption("colorspace", "colour", "the plates' OCIO colour space (e.g. ACEScg), converted to sRGB by "
                "OpenImageIO; default: by file type, see below", values.text, metavar="NAME"),
    TrackOption("ocio", "colour", "OCIO config for --colorspace (default: $OCIO, else OpenImageIO's built-in "
                "config)", values.text, metavar="CONFIG"),
    TrackOption("checkpoint", "model",
                "a SAM 2 / SAM 2.1 or SAM 3 checkpoint file (.pt or .safetensors, e.g. sam3.pt) or a model name "
                "such as sam2.1_hiera_large or sam3, found in the cache ($SAM2LONG_CACHE, default "
                "~/.cache/sam2long) or downloaded there on first use (sam3: a gated Hugging Face repo; accept "
                "the SAM License at huggingface.co/facebook/sam3 and set HF_TOKEN)", values.text, metavar="CKPT"),
    TrackOption("pathways", "tree", f"memory pathways kept per object (default {_tree.pathways}); 1 keeps one "
                f"history, still with SAM2Long's memory selection and key modulation (plain SAM 2 is --sam2)",
                values.one_or_more, _tree.pathways, "P"),
    TrackOption("iou-threshold", "tree", f"a frame enters an object's memory only if its predicted IoU is above "
                f"T (default {_tree.iou_threshold})", values.finite_number, _tree.iou_threshold, "T"),
    TrackOption("uncertainty", "tree", f"when every pathway's |object score| is at most U, keep diverse "
                f"candidates instead of the top scores (default {_tree.uncertainty})",
                values.finite_number, _tree.uncertainty, "U"),
    TrackOption("no-tree", "tree", "the model's own tracker instead of the memory tree, for comparison "
                "(ignores the three options above): plain SAM 2 for a SAM 2 checkpoint, SAM 3's tracker with "
                "its own memory-frame filter for SAM 3. --no-tree is the switch's name; --sam2 is the same "
                "switch, kept for compatibility", aliases=("sam2",), dest="plain_tracker"),
    TrackOption("max-lag", "tree", "force masks out at most K frames (K >= 1) behind tracking (bounded memory; "
                "an approximation). Default: exact, masks come out when all pathways agree",
                values.max_lag, _tree.max_lag, "K"),
    TrackOption("format", "mattes", "png: 8-bit (default); png16, tif16: 16-bit; exr: one half-float channel "
                "named A (Nuke reads it as alpha); cryptomatte: one EXR per frame holding every object, "
                "picked by name in Nuke's or Fusion's Cryptomatte node", values.text, _out.format, choices=FORMATS),
    TrackOption("names", "mattes", "object names in Cryptomatte's manifest, e.g. \"1=car, 2=person\" "
                "(default object_<id>)", values.text, _out.names, "ID=NAME,..."),
    TrackOption("soft", "mattes", "write the model's probability (sigmoid of its logits) in 0..1 instead of "
                "0/1 mattes"),
    TrackOption("device", "running", "where to compute (default auto: CUDA, then MPS, then CPU)",
                values.text, ModelSettings.device, choices=DEVICES),
    TrackOption("precision", "running", "compute precision on CUDA (default auto: bf16 where supported); "
                "CPU/MPS use fp32", values.text, ModelSettings.precision, choices=PRECISIONS),
    TrackOption("no-preview", "running", "skip preview.mp4"),
    TrackOption("image-size", "running", "network input size, SAM 2 only (default 1024, a multiple of 32; "
                "smaller is faster and coarser); SAM 3's is fixed at 1008", values.one_or_more, metavar="N"),
)


def option_keys() -> dict[str, TrackOption]:
    """Every name a job file may give an option: `iou-threshold` and `iou_threshold` alike,
    and every alias (`no-tree`, `no_tree`, `sam2`)."""
    keys = {}
    for option in TRACK_OPTIONS:
        for name in (option.name, *option.aliases):
            keys[name] = keys[name.replace("-", "_")] = option
    return keys


def defaults() -> dict:
    """Each option's value when it is not given, by key."""
    return {o.key: (False if o.check is None else o.default) for o in TRACK_OPTIONS}


def track_job(given: dict, *, source: str, prompts, folder: str) -> TrackJob:
    """The typed job of the options' values `given` (by key; missing ones take their default)."""
    v = {**defaults(), **given}
    if v["reverse"] and v["both"]:  # the command line's parser refuses this itself
        raise BadInput("--reverse and --both together: give one direction (--reverse backward, --both both ways)")
    return TrackJob(
        source=Source(source, v["colorspace"], v["ocio"]),
        prompts=tuple(prompts),
        model=ModelSettings(v["checkpoint"], v["device"], v["precision"], v["image_size"]),
        output=OutputSettings(folder, v["format"], v["soft"], not v["no_preview"], v["names"]),
        tree=TreeSettings(v["pathways"], v["iou_threshold"], v["uncertainty"], v["plain_tracker"], v["max_lag"]),
        start=v["start"], end=v["end"],
        direction="both" if v["both"] else "backward" if v["reverse"] else "forward",
    )
