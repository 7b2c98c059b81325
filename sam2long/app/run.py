"""One run of the track job, for every front end: the typed job, its check, `run`.

`sam2long track` builds a `TrackJob` from its arguments, a job file builds one per shot,
and both run it here: `check` (everything checked before a model is loaded or a file is
written), then `run` (load the model, build the tracker, write the mattes and the preview)
which returns a `Summary` or raises a typed error. The exit codes of the command line and
of `sam2long batch` are defined here too, with `exit_code` mapping an error to its code.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import CheckpointError, FrameError, PromptError
from ..engine.tree import TreeConfig
from .outputs import MatteOutputs, Summary

EXIT_OK = 0
EXIT_FAILED = 1  # batch: some shots failed
EXIT_BAD_INPUT = 2  # the message says what to fix
EXIT_INTERRUPTED = 130


class BadInput(ValueError):
    """A user error found by the app (a range, a device, an ambiguous prompt): one line, exit code 2."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C while tracking: `frames` frames of mattes were written completely to `folder`."""

    def __init__(self, frames: int, folder: Path):
        super().__init__(frames, folder)
        self.frames, self.folder = frames, folder


# Errors the user fixes: another try with the same input fails the same way.
BAD_INPUT = (BadInput, PromptError, FrameError, CheckpointError)


def exit_code(error: BaseException) -> int:
    if isinstance(error, KeyboardInterrupt):
        return EXIT_INTERRUPTED
    return EXIT_BAD_INPUT if isinstance(error, BAD_INPUT) else EXIT_FAILED


@contextmanager
def bad_input():
    """The library's plain ValueError and FileNotFoundError (a precision, an image size, a
    missing file) as `BadInput`; its typed errors pass as they are."""
    try:
        yield
    except BAD_INPUT:
        raise
    except (ValueError, FileNotFoundError) as e:
        raise BadInput(str(e)) from e


# --- the job -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """One prompt, before the shot's frames are known. `frame` None: the shot's first frame."""

    object: int
    frame: int | None
    kind: str  # "point": (x, y, label); "box": (x0, y0, x1, y1); "mask": a mask file's path
    value: tuple | str


@dataclass(frozen=True)
class Source:
    path: str  # a video file or an image sequence, as `open_frames` reads it
    colorspace: str | None = None  # an image sequence's OCIO colour space; None: by file type
    ocio: str | None = None  # the OCIO config for `colorspace`


@dataclass(frozen=True)
class ModelSettings:
    checkpoint: str  # a file or a model name
    device: str = "auto"
    precision: str = "auto"
    image_size: int | None = None  # None: the model's own


@dataclass(frozen=True)
class TreeSettings:
    pathways: int = TreeConfig.pathways  # the library's defaults (the paper's)
    iou_threshold: float = TreeConfig.iou_threshold
    uncertainty: float = TreeConfig.uncertainty
    plain_tracker: bool = False  # the model's own tracker instead of the memory tree
    max_lag: int | None = None  # None: exact (masks come out when every pathway agrees)


@dataclass(frozen=True)
class OutputSettings:
    folder: str
    format: str = "png"  # one of writers.FORMATS
    soft: bool = False  # the model's probability instead of 0/1 mattes
    preview: bool = True  # preview.mp4 beside the mattes
    names: str | None = None  # Cryptomatte's object names, "1=car, 2=person" (default object_<id>)


@dataclass(frozen=True)
class TrackJob:
    """Everything a track run needs besides the model; nothing checked yet (see `check`)."""

    source: Source
    prompts: tuple[Prompt, ...]
    model: ModelSettings
    output: OutputSettings
    tree: TreeSettings = field(default_factory=TreeSettings)
    start: int | None = None  # None: the shot's first frame
    end: int | None = None  # None: its last frame, inclusive
    direction: str = "forward"  # one of options.DIRECTIONS

    def writing_to(self, folder) -> TrackJob:
        return replace(self, output=replace(self.output, folder=str(folder)))


@dataclass
class CheckedJob:
    """A job whose frames are open, prompts read and range resolved."""

    job: TrackJob
    source: object  # a FrameSource
    prompts: object  # the library's PromptSet
    start: int
    end: int

    def writing_to(self, folder) -> CheckedJob:
        return replace(self, job=self.job.writing_to(folder))

    @property
    def out(self) -> Path:
        return Path(self.job.output.folder).expanduser()

    @property
    def obj_ids(self) -> list[int]:
        return self.prompts.obj_ids

    @property
    def object_names(self) -> dict | None:
        """obj_id -> name in a Cryptomatte file's manifest; None for the other formats."""
        from ..media.cryptomatte import parse_object_names
        from ..media.writers import CRYPTOMATTE

        if self.job.output.format != CRYPTOMATTE:
            return None
        return parse_object_names(self.job.output.names, self.obj_ids)

    @property
    def frames(self) -> list[int]:
        """The frames the tracker will output, in global order (for the bar and the preview)."""
        prompted, direction = self.prompts.frames, self.job.direction
        if direction == "forward":
            return list(range(min(prompted), self.end + 1))
        if direction == "backward":
            return list(range(self.start, max(prompted) + 1))
        return list(range(self.start, self.end + 1))


# --- the check ---------------------------------------------------------------------------


def check_device(device: str) -> None:
    """Refuse a device this machine lacks, before torch fails on it with a traceback."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        why = "torch was built without CUDA" if torch.version.cuda is None else "torch sees no CUDA GPU"
        raise BadInput(f"--device cuda: {why} on this machine; use --device auto or --device cpu")
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise BadInput("--device mps: Apple's MPS is not available on this machine; use --device auto "
                           "or --device cpu")


def tree_config(tree: TreeSettings) -> TreeConfig:
    """The memory tree the settings ask for; `TreeConfig` holds the rules for their ranges."""
    try:
        return TreeConfig(pathways=tree.pathways, iou_threshold=tree.iou_threshold, uncertainty=tree.uncertainty)
    except ValueError as e:
        raise BadInput(f"{e}: give --pathways, --iou-threshold and --uncertainty in these ranges") from None


def prompt_set(prompts, first_frame: int = 0):
    """The library's `PromptSet` from the job's prompts, in order; mask files are read here.
    Refuses what the order leaves ambiguous: a second box or mask for one object and frame,
    a mask together with clicks or a box."""
    from ..prompts import PromptSet, read_mask

    found = PromptSet()
    for p in prompts:
        frame, obj, kind = first_frame if p.frame is None else p.frame, p.object, p.kind
        slot = found.get(frame, obj)
        if slot is not None:
            if kind == "box" and slot.box is not None:
                raise BadInput(f"two --box prompts for object {obj} on frame {frame}: give one box per "
                               f"object and frame (use --object to start another object)")
            if kind == "mask" and slot.mask is not None:
                raise BadInput(f"two --mask prompts for object {obj} on frame {frame}: give one mask per "
                               f"object and frame")
            if (kind == "mask") != (slot.mask is not None):
                raise BadInput(f"object {obj} on frame {frame} has a --mask and clicks/a box: a mask prompt "
                               f"stands alone; put the clicks on another frame or drop them")
        if kind == "point":
            found.add_points(frame, obj, [p.value[:2]], [p.value[2]])
        elif kind == "box":
            found.add_box(frame, obj, p.value)
        else:
            found.add_mask(frame, obj, read_mask(p.value), name=p.value)
    if not found.by_object:
        raise BadInput("no prompts: give at least one --point X,Y, --box X0,Y0,X1,Y1 or --mask FILE.png")
    return found


def check(job: TrackJob, *, device: bool = True) -> CheckedJob:
    """Check everything before a model is loaded or a file is written; raises a typed error.
    `device`: also whether this machine has the job's device (not where a job file is read
    for other machines to run)."""
    from ..media.frames import open_frames
    from ..media.writers import check_matte_format

    with bad_input():
        if device:
            check_device(job.model.device)
        check_matte_format(job.output.format)
        tree_config(job.tree)  # its ranges, before a model is loaded
        source = open_frames(job.source.path, colorspace=job.source.colorspace, ocio_config=job.source.ocio)
        prompts = prompt_set(job.prompts, source.first_index)
        first, last = source.first_index, source.first_index + len(source) - 1
        start = first if job.start is None else job.start
        end = last if job.end is None else job.end
        for name, frame in (("--start", start), ("--end", end)):
            if not first <= frame <= last:
                raise BadInput(f"{name} {frame}: frame {frame} is not in this shot: its frames are {first}-{last}")
        if start > end:
            raise BadInput(f"--start {start} is after --end {end}: give start <= end")
        prompts.check(source.height, source.width, first, last)
        for frame in prompts.frames:
            if not start <= frame <= end:
                obj = next(o for o in prompts.obj_ids if prompts.get(frame, o) is not None)
                raise BadInput(f"the prompt for object {obj} on frame {frame} is outside the tracked range "
                               f"{start}..{end}: move the prompt or widen --start/--end")
        checked = CheckedJob(job, source, prompts, start, end)
        if job.output.names and checked.object_names is None:
            raise BadInput("--names goes with --format cryptomatte (the other formats name files by object id)")
        checked.object_names  # noqa: B018 - a bad name list is refused here, before anything is written
        if checked.out.exists() and not checked.out.is_dir():
            raise BadInput(f"--out {str(checked.out)!r} is a file: give a folder for the masks")
    return checked


# --- the run -----------------------------------------------------------------------------


def load_model_for(settings: ModelSettings, progress: bool = False):
    """The job's model, loaded (an image size only where the job gives one)."""
    from ..models.loading import load_model

    kw = {} if settings.image_size is None else {"image_size": settings.image_size}
    return load_model(settings.checkpoint, device=settings.device, precision=settings.precision,
                      progress=progress, **kw)


def build_tracker(model, tree: TreeSettings, prompts):
    from ..engine.tracker import Tracker

    config = TreeConfig.plain(model.family) if tree.plain_tracker else tree_config(tree)
    tracker = Tracker(model, tree=config, max_lag=tree.max_lag)
    prompts.add_to(tracker)
    return tracker


def run(job: TrackJob | CheckedJob, *, model=None, on_frame=None, quiet: bool = True, say=None) -> Summary:
    """Check -> load the model -> build the tracker -> track and write mattes -> preview.

    `job`: a `TrackJob`, or one that `check` has already checked on this machine.
    `model`: a `LoadedModel` to use instead of loading the job's checkpoint.
    `on_frame(FrameRecord)` is called for every committed frame; `quiet` hides the progress
    bar; `say(line)` gets the notes meant for the user (the colour conversion of the frames).
    Raises `BAD_INPUT` errors for what the user fixes, `Interrupted` on Ctrl-C while tracking
    (complete files kept, no preview); any other error is a failure of the run itself.
    """
    t0 = time.perf_counter()
    checked = job if isinstance(job, CheckedJob) else check(job)
    job = checked.job
    colour = getattr(checked.source, "colour", None)
    if colour and say is not None:  # the conversion the frames get before the network, said once
        say(f"colour: {colour}")
    with bad_input():  # a checkpoint, a precision, an image size
        if model is None:
            model = load_model_for(job.model, progress=not quiet)
        tracker = build_tracker(model, job.tree, checked.prompts)
    outputs = MatteOutputs(checked)
    try:
        with outputs:
            outputs.track(tracker, quiet, on_frame)
            outputs.finish_preview()
    except KeyboardInterrupt:
        raise Interrupted(len(outputs.committed), checked.out) from None
    return outputs.summary(time.perf_counter() - t0)
