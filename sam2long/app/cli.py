"""`sam2long` on the command line: track prompted objects through a shot.

    sam2long track VIDEO --checkpoint CKPT [prompts] --out DIR
    sam2long demo [--checkpoint CKPT] [--out DIR]
    sam2long batch JOBS.yaml [--engine ray]    (many shots: see sam2long/app/batch.py)

Mattes are written as they are committed, each file to a temporary name first and
then renamed into place, so an interrupted run leaves only complete files.
Exit codes: 0 done, 2 bad input (message says what to fix), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

DEMO_VIDEO = Path(__file__).resolve().parents[1] / "assets" / "demo.mp4"
# The girl in the blue dress on frame 0 of the demo clip (480x270): two clicks, top and skirt.
DEMO_POINTS = [(197.0, 78.0), (200.0, 110.0)]
DEMO_CHECKPOINT = "sam2.1_hiera_tiny"

TRACK_EPILOG = """\
prompts:
  Prompts are --point, --box and --mask. --frame N and --object ID set the frame
  and the object for the prompts that FOLLOW them, until the next --frame or
  --object; before any of them the frame is the shot's first frame and the
  object is 1. Several --point options for one frame and object are one click
  set (positive and negative clicks together); a --box may come with points on
  the same frame and object; a --mask stands alone on its frame and object.
  Coordinates are in pixels of the source frames: 0,0 is the top-left corner of
  a WxH frame and W,H its bottom-right corner, so 0 <= X <= W and 0 <= Y <= H.

  Two objects on two frames - object 1 (a click and a box) on frame 0, object 2
  (two positive clicks and a negative one) on frame 40:

    sam2long track shot.mp4 --checkpoint sam2.1_hiera_large --out masks \\
        --object 1 --frame 0 --point 410,220 --box 350,120,500,400 \\
        --object 2 --frame 40 --point 800,300 --point 820,360 --point 900,330,0

frame numbers:
  A video's frames are numbered from 0. An image sequence (plate.####.exr,
  plate.%04d.exr, plate.@@@@.exr, its folder or one of its files) keeps the
  numbers in its file names: --frame, --start and --end use them (plate.1001.exr
  is frame 1001) and the mattes carry them with the same padding.

output:
  OUT/<object id>/<frame number>.<ext>   one matte per object for every tracked
      frame (empty before an object's first prompt), at the source resolution,
      numbered with 5 digits for a video and the plate's padding for a sequence;
      --format png (8-bit, default), png16, tif16 or exr (one half-float channel
      "A"); hard 0 / full scale, or the model's probability with --soft.
      OUT/preview.mp4 shows all objects overlaid.

colour:
  Frames go to the network as 8-bit sRGB. Defaults (printed at the start):
  EXR and float TIFF are scene-linear Rec.709 (-> sRGB, clipped), DPX is Cineon
  log unless its header says otherwise, 8/16-bit PNG/TIFF/JPEG are sRGB.
  --colorspace NAME converts from that OCIO colour space instead (config:
  --ocio, else $OCIO, else OpenImageIO's built-in config).

tree:
  --pathways P keeps P alternative memory histories per object and picks the best
  one; --sam2 (or --no-tree) runs the model's own tracker for comparison: plain
  SAM 2 (one greedy history), or SAM 3's tracker for a SAM 3 checkpoint.
  Raise --uncertainty or lower --iou-threshold when an object is lost after an
  occlusion; --max-lag K bounds how far the written masks trail the tracking.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line naming the problem and where to look."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(EXIT_BAD_INPUT)


class BadInput(ValueError):
    """A user error: printed as one line, exit code 2."""


# --- prompt syntax ----------------------------------------------------------------------


def _numbers(text: str, what: str, counts: tuple[int, ...]) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        values = []
    if len(values) not in counts:
        raise argparse.ArgumentTypeError(f"{what} {text!r} must be {' or '.join(str(c) for c in counts)} comma-separated numbers")
    if not all(math.isfinite(v) for v in values):  # float() takes "inf", "nan" and "1e999"
        raise argparse.ArgumentTypeError(f"{what} {text!r}: every value must be a finite number (not inf or nan)")
    return values


def _point(text):
    v = _numbers(text, "--point", (2, 3))
    label = 1 if len(v) == 2 else v[2]
    if label not in (0, 1):  # 1.5 too: a label is not rounded
        raise argparse.ArgumentTypeError(f"--point {text!r}: the label must be 1 (positive) or 0 (negative)")
    return (v[0], v[1], int(label))


def _box(text):
    x0, y0, x1, y1 = _numbers(text, "--box", (4,))
    if x1 <= x0 or y1 <= y0:
        raise argparse.ArgumentTypeError(f"--box {text!r} must be X0,Y0,X1,Y1 with X1 > X0 and Y1 > Y0")
    return (x0, y0, x1, y1)


def _finite(text):
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number (not inf or nan)")
    return v


def _nonneg_int(text):
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be 0 or more")
    return v


def _pos_int(text):
    v = _nonneg_int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more")
    return v


def _max_lag(text):
    v = _nonneg_int(text)
    if v < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be 1 or more (masks at most K frames behind the "
                                         f"tracking); leave --max-lag out for exact masks")
    return v


class _Event(argparse.Action):
    """Record prompts and --frame/--object in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):
        events = list(getattr(namespace, "events", None) or [])
        events.append((self.dest, values))
        namespace.events = events


def prompts_from_events(events, first_frame: int = 0):
    """The library's `PromptSet` from --frame/--object/--point/--box/--mask in command-line
    order; mask files are read here. Refuses what the syntax leaves ambiguous: a second
    box or mask for one object and frame, a mask together with clicks or a box."""
    from ..prompts import PromptSet, read_mask

    prompts = PromptSet()
    frame, obj = first_frame, 1  # before any --frame: the shot's first frame
    for kind, value in events or []:
        if kind == "frame":
            frame = value
            continue
        if kind == "object":
            obj = value
            continue
        slot = prompts.get(frame, obj)
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
            prompts.add_points(frame, obj, [value[:2]], [value[2]])
        elif kind == "box":
            prompts.add_box(frame, obj, value)
        else:
            prompts.add_mask(frame, obj, read_mask(value), name=value)
    if not prompts.by_object:
        raise BadInput("no prompts: give at least one --point X,Y, --box X0,Y0,X1,Y1 or --mask FILE.png")
    return prompts


# --- the job, step by step ----------------------------------------------------------------


def check_device(device: str) -> None:
    """Refuse a --device this machine lacks, before torch fails on it with a traceback."""
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        why = "torch was built without CUDA" if torch.version.cuda is None else "torch sees no CUDA GPU"
        raise BadInput(f"--device cuda: {why} on this machine; use --device auto or --device cpu")
    if device == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise BadInput("--device mps: Apple's MPS is not available on this machine; use --device auto "
                           "or --device cpu")


def _direction(args) -> str:
    if args.both:
        return "both"
    if args.reverse:
        return "backward"
    return "forward"


@dataclass
class TrackJob:
    """A checked `track` command: everything to run besides the model."""

    source: object  # a FrameSource
    prompts: object  # a PromptSet
    start: int
    end: int
    direction: str
    out: Path
    fmt: str = "png"  # matte format, one of writers.MATTE_FORMATS
    soft: bool = False  # write probabilities instead of 0/1 mattes

    @property
    def obj_ids(self) -> list[int]:
        return self.prompts.obj_ids

    @property
    def frames(self) -> list[int]:
        """The frames the tracker will output, in global order (for the bar and the preview)."""
        prompted = self.prompts.frames
        if self.direction == "forward":
            return list(range(min(prompted), self.end + 1))
        if self.direction == "backward":
            return list(range(self.start, max(prompted) + 1))
        return list(range(self.start, self.end + 1))


def validate_inputs(args) -> TrackJob:
    """Check everything the command line gives before a model is loaded or a file is written."""
    from ..frames import open_frames
    from ..writers import check_matte_format

    check_device(args.device)
    check_matte_format(args.format)
    tree_config(args)  # its ranges, before a model is loaded
    source = open_frames(args.video, colorspace=getattr(args, "colorspace", None),
                         ocio_config=getattr(args, "ocio", None))
    prompts = prompts_from_events(getattr(args, "events", None), source.first_index)
    first, last = source.first_index, source.first_index + len(source) - 1
    start = first if args.start is None else args.start
    end = last if args.end is None else args.end
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
    out = Path(args.out).expanduser()
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {str(out)!r} is a file: give a folder for the masks")
    return TrackJob(source, prompts, start, end, _direction(args), out, args.format, args.soft)


def _load_model(args):
    from ..loading import load_model

    kw = {}
    if args.image_size is not None:
        kw["image_size"] = args.image_size
    return load_model(args.checkpoint, device=args.device, precision=args.precision,
                      progress=not args.quiet, **kw)


def tree_config(args):
    """The memory tree the options ask for; `TreeConfig` holds the rules for their ranges."""
    from ..tree import TreeConfig

    try:
        return TreeConfig(pathways=args.pathways, iou_threshold=args.iou_threshold, uncertainty=args.uncertainty)
    except ValueError as e:
        raise BadInput(f"{e}: give --pathways, --iou-threshold and --uncertainty in these ranges") from None


def build_tracker(model, args, prompts):
    from ..family import family_of
    from ..tracker import Tracker

    tree = family_of(model).plain_tree() if args.sam2 else tree_config(args)  # --sam2: the model's own tracker
    tracker = Tracker(model, tree=tree, max_lag=args.max_lag)
    prompts.add_to(tracker)
    return tracker


def _bar(total, quiet):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="tracking", disable=quiet, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)


def _close_quietly(generator) -> None:
    if generator is not None:
        try:
            generator.close()
        except BaseException:  # it was stopped by the very interrupt we are handling
            pass


class _Outputs:
    """One run's masks and preview, and what feeds them (the progress bar, the tracker's
    result stream, the frames for the preview). All of it is closed in one place, on
    leaving the `with` block; on any failure the file in flight and the unfinished
    preview are removed, so only complete files remain."""

    def __init__(self, job: TrackJob, preview: bool):
        from ..writers import MatteWriter

        job.out.mkdir(parents=True, exist_ok=True)
        self.job = job
        self.writer = MatteWriter(job.out, job.obj_ids, padding=getattr(job.source, "padding", 5), fmt=job.fmt)
        self.want_preview = preview
        self.preview_path = job.out / "preview.mp4"
        self.preview = None  # a PreviewWriter filled while tracking, or afterwards from the files
        self.preview_frames = None
        self.results = None
        self.bar = None
        self.committed: list[int] = []
        self.areas = {o: 0 for o in job.obj_ids}
        self._empty = None

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        _close_quietly(self.results)
        _close_quietly(self.preview_frames)
        if self.bar is not None:
            self.bar.close()
        if exc_type is not None:
            self.writer.cleanup()
            if self.preview is not None:
                self.preview.abort()
        return False

    def _new_preview(self):
        from ..writers import PreviewWriter

        src = self.job.source
        return PreviewWriter(self.preview_path, src.width, src.height, getattr(src, "fps", 24.0))

    def track(self, tracker, quiet: bool, on_frame=None) -> None:
        """Run the tracker, writing every committed frame; `on_frame(record)` gets its JSON record."""
        job = self.job
        expected = job.frames
        if self.want_preview and job.direction == "forward" and expected:
            # Forward frames arrive in order: overlay them as they come, from a second frame stream.
            self.preview = self._new_preview()
            self.preview_frames = job.source.frames(expected)
        self.bar = _bar(len(expected), quiet)
        self.results = tracker.propagate(job.source, direction=job.direction, start=job.start, end=job.end,
                                         return_logits=job.soft,
                                         on_step=lambda i: self.bar.update(1))
        for r in self.results:
            by_obj = self._write(r)
            if on_frame is not None:
                on_frame(self._record(r, by_obj))
            if self.preview is not None:
                idx, image = next(self.preview_frames, (None, None))
                if idx == r.frame_idx:
                    self.preview.add(image, {o: by_obj.get(o) for o in job.obj_ids})
                else:  # not the expected order after all: write the preview afterwards
                    self.preview.abort()
                    self.preview = None

    def _write(self, r) -> dict:
        import numpy as np

        masks = r.masks.numpy() if hasattr(r.masks, "numpy") else np.asarray(r.masks)
        by_obj = {o: masks[k] for k, o in enumerate(r.obj_ids)}
        # soft: the probability, sigmoid of the logits (already at source size, full precision)
        soft = {o: r.logits[k].sigmoid().numpy() for k, o in enumerate(r.obj_ids)} if self.job.soft else by_obj
        if self._empty is None:
            self._empty = np.zeros((self.job.source.height, self.job.source.width), bool)
        for obj in self.job.obj_ids:
            m = by_obj.get(obj)
            self.writer.write(obj, r.frame_idx, self._empty if m is None else soft[obj])
            if m is not None:
                self.areas[obj] += int(m.sum())
        self.committed.append(r.frame_idx)
        return by_obj

    def _record(self, r, by_obj) -> dict:
        objects = {}
        for obj in self.job.obj_ids:
            m = by_obj.get(obj)
            if m is None:
                objects[str(obj)] = {"area": 0, "score": None}
                continue
            j = r.obj_ids.index(obj)
            score = float(r.object_scores[j]) if r.object_scores is not None else None
            objects[str(obj)] = {"area": int(m.sum()), "score": None if score is None else round(score, 4)}
        return {"frame": r.frame_idx, "objects": objects}

    def finish_preview(self) -> None:
        """Close the preview, first writing it from the mask files if it was not filled while tracking."""
        if not self.want_preview:
            return
        if self.preview is None:
            self.preview = self._new_preview()
            for idx, image in self.job.source.frames(sorted(set(self.committed))):
                self.preview.add(image, {o: self.writer.read(o, idx) for o in self.job.obj_ids})
        self.preview.close()
        self.preview = None


def summary(job: TrackJob, outputs: _Outputs, seconds: float, preview: bool) -> dict:
    done = outputs.committed
    return {
        "summary": {
            "frames": len(done),
            "objects": job.obj_ids,
            "first_frame": min(done) if done else None,
            "last_frame": max(done) if done else None,
            "direction": job.direction,
            "out": str(job.out),
            "preview": str(outputs.preview_path) if preview else None,
            "seconds": round(seconds, 3),
            "mean_area": {str(o): (outputs.areas[o] / len(done) if done else 0) for o in job.obj_ids},
        }
    }


def _error(e) -> int:
    print(f"sam2long: error: {e}", file=sys.stderr)
    return EXIT_BAD_INPUT


def run_track(args, *, model=None, stdout=None) -> int:
    """The `track` job: check inputs -> load the model -> build the tracker -> track and
    write masks -> preview -> summary. `model`: an already loaded `LoadedModel` to use
    instead of loading --checkpoint (one load for many shots). Returns the exit code."""
    from ..errors import FrameError, PromptError

    stdout = stdout or sys.stdout
    t0 = time.perf_counter()
    try:
        job = validate_inputs(args)
        colour = getattr(job.source, "colour", None)
        if colour:  # the conversion the frames get before the network, said once
            print(f"sam2long: colour: {colour}", file=sys.stderr)
        if model is None:
            model = _load_model(args)
        tracker = build_tracker(model, args, job.prompts)
    except (ValueError, FileNotFoundError) as e:  # bad prompts, frames, checkpoint, device, precision
        return _error(e)

    def on_frame(record):
        print(json.dumps(record), file=stdout, flush=True)

    outputs = _Outputs(job, preview=not args.no_preview)
    try:
        with outputs:
            outputs.track(tracker, args.quiet, on_frame if args.json else None)
            outputs.finish_preview()
    except KeyboardInterrupt:
        print(f"\nsam2long: interrupted: {len(outputs.committed)} frame(s) of masks were written completely "
              f"to {job.out} (no preview); run the command again to redo the shot", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (FrameError, PromptError) as e:
        return _error(e)

    seconds = time.perf_counter() - t0
    if args.json:
        print(json.dumps(summary(job, outputs, seconds, not args.no_preview)), file=stdout, flush=True)
    elif not args.quiet:
        print(f"sam2long: {len(outputs.committed)} frames x {len(job.obj_ids)} object(s) written to {job.out} "
              f"in {seconds:.1f}s", file=sys.stderr)
    return EXIT_OK


# --- argument parsing -----------------------------------------------------------------


def _add_common(p: argparse.ArgumentParser, checkpoint_default=None):
    p.add_argument("--checkpoint", required=checkpoint_default is None, default=checkpoint_default,
                   metavar="CKPT",
                   help="a SAM 2 / SAM 2.1 or SAM 3 checkpoint file (.pt or .safetensors, e.g. sam3.pt) or a "
                        "model name such as sam2.1_hiera_large or sam3, found in the cache ($SAM2LONG_CACHE, "
                        "default ~/.cache/sam2long) or downloaded there on first use (sam3: a gated Hugging Face "
                        "repo; accept the SAM License at huggingface.co/facebook/sam3 and set HF_TOKEN)"
                        + (f" (default: {checkpoint_default})" if checkpoint_default else ""))
    p.add_argument("--out", required=checkpoint_default is None, default=None if checkpoint_default is None
                   else "sam2long_demo", metavar="DIR", help="output folder for the masks and preview.mp4")
    from ..options import PRECISIONS
    from ..tree import TreeConfig

    paper = TreeConfig()  # the defaults are the library's (the paper's)
    tree = p.add_argument_group("memory tree")
    tree.add_argument("--pathways", type=_pos_int, default=paper.pathways, metavar="P",
                      help=f"memory pathways kept per object (default {paper.pathways}); 1 keeps one history, "
                           f"still with SAM2Long's memory selection and key modulation (plain SAM 2 is --sam2)")
    tree.add_argument("--iou-threshold", type=_finite, default=paper.iou_threshold, metavar="T",
                      help=f"a frame enters an object's memory only if its predicted IoU is above T "
                           f"(default {paper.iou_threshold})")
    tree.add_argument("--uncertainty", type=_finite, default=paper.uncertainty, metavar="U",
                      help=f"when every pathway's |object score| is at most U, keep diverse candidates "
                           f"instead of the top scores (default {paper.uncertainty})")
    tree.add_argument("--sam2", "--no-tree", dest="sam2", action="store_true",
                      help="the model's own tracker instead of the memory tree, for comparison (ignores the "
                           "three options above): plain SAM 2 for a SAM 2 checkpoint, SAM 3's tracker with its "
                           "own memory-frame filter for SAM 3")
    tree.add_argument("--max-lag", type=_max_lag, default=None, metavar="K",
                      help="force masks out at most K frames (K >= 1) behind tracking (bounded memory; an "
                           "approximation). Default: exact, masks come out when all pathways agree")
    from ..writers import MATTE_FORMATS

    output = p.add_argument_group("mattes")
    output.add_argument("--format", default="png", choices=MATTE_FORMATS,
                        help="png: 8-bit (default); png16, tif16: 16-bit; exr: one half-float channel named A "
                             "(Nuke reads it as alpha)")
    output.add_argument("--soft", action="store_true",
                        help="write the model's probability (sigmoid of its logits) in 0..1 instead of 0/1 mattes")
    run = p.add_argument_group("running")
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                     help="where to compute (default auto: CUDA, then MPS, then CPU)")
    run.add_argument("--precision", default="auto", choices=PRECISIONS,
                     help="compute precision on CUDA (default auto: bf16 where supported); CPU/MPS use fp32")
    run.add_argument("--quiet", action="store_true", help="no progress bar or closing line")
    run.add_argument("--json", action="store_true",
                     help="print one JSON object per committed frame on stdout, then a summary line")
    run.add_argument("--no-preview", action="store_true", help="skip preview.mp4")
    run.add_argument("--image-size", type=_pos_int, default=None, metavar="N",
                     help="network input size, SAM 2 only (default 1024, a multiple of 32; smaller is faster and "
                          "coarser); SAM 3's is fixed at 1008")


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = _Parser(prog="sam2long", description="Track prompted objects through a shot with SAM 2 and "
                                                  "SAM2Long's memory tree; writes one matte per object per frame.")
    parser.add_argument("--version", action="version", version=f"sam2long {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("track", help="track objects through a video file or an image sequence",
                       description="Track the prompted objects through VIDEO and write their masks.",
                       epilog=TRACK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("video", metavar="VIDEO",
                   help="a video file (.mp4 .mov .mkv .avi .webm, frames numbered from 0) or an image sequence "
                        "(.exr .dpx .tif .png .jpg .webp): plate.####.exr, plate.%%04d.exr, plate.@@@@.exr, its "
                        "folder or one of its files, numbered by its file names")
    pr = t.add_argument_group("prompts (in order; see below)")
    pr.add_argument("--point", type=_point, action=_Event, metavar="X,Y[,LABEL]",
                    help="a click; LABEL 1 = on the object (default), 0 = not on the object")
    pr.add_argument("--box", type=_box, action=_Event, metavar="X0,Y0,X1,Y1", help="a box around the object")
    pr.add_argument("--mask", action=_Event, metavar="FILE.png",
                    help="a mask (white object on black) at the source resolution")
    pr.add_argument("--frame", type=_nonneg_int, action=_Event, metavar="N",
                    help="frame for the prompts that follow (default: the shot's first frame); a plate's frame "
                         "number, 0-based for a video")
    pr.add_argument("--object", type=_pos_int, action=_Event, metavar="ID",
                    help="object id for the prompts that follow (default 1)")
    rng = t.add_argument_group("range and direction")
    rng.add_argument("--start", type=_nonneg_int, default=None, metavar="N",
                     help="first frame to track (default: the shot's first frame)")
    rng.add_argument("--end", type=_nonneg_int, default=None, metavar="N",
                     help="last frame to track, inclusive (default: the last frame)")
    d = rng.add_mutually_exclusive_group()
    d.add_argument("--reverse", action="store_true",
                   help="track backward from each object's last prompt frame towards --start")
    d.add_argument("--both", action="store_true",
                   help="track forward and backward from each object's first prompt frame")
    colour = t.add_argument_group("colour (image sequences)")
    colour.add_argument("--colorspace", default=None, metavar="NAME",
                        help="the plates' OCIO colour space (e.g. ACEScg), converted to sRGB by OpenImageIO; "
                             "default: by file type, see below")
    colour.add_argument("--ocio", default=None, metavar="CONFIG",
                        help="OCIO config for --colorspace (default: $OCIO, else OpenImageIO's built-in config)")
    _add_common(t)
    t.set_defaults(events=[])

    dm = sub.add_parser("demo", help="track a child on the bundled demo clip (needs a checkpoint)",
                        description="Run the main job on the short clip shipped with sam2long: one click set "
                                    "on the girl on frame 0, masks and preview written to --out.")
    _add_common(dm, checkpoint_default=DEMO_CHECKPOINT)

    from .batch import add_batch_parser

    add_batch_parser(sub)
    return parser


def demo_args(args) -> argparse.Namespace:
    args.video = str(DEMO_VIDEO)
    args.events = [("frame", 0), ("object", 1)] + [("point", (x, y, 1)) for x, y in DEMO_POINTS]
    args.start = args.end = None
    args.reverse = args.both = False
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else EXIT_BAD_INPUT
    if args.command == "batch":
        from .batch import run_batch

        return run_batch(args)
    if args.command == "demo":
        args = demo_args(args)
        if not args.quiet:
            print(f"sam2long demo: {DEMO_VIDEO.name}, clicks on frame 0 at {DEMO_POINTS}, "
                  f"output in {args.out}", file=sys.stderr)
    try:
        return run_track(args)
    except KeyboardInterrupt:  # before tracking started: nothing was written
        print("\nsam2long: interrupted before any mask was written", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
