"""`sam2long` on the command line: track prompted objects through a shot.

    sam2long track VIDEO --checkpoint CKPT [prompts] --out DIR
    sam2long demo [--checkpoint CKPT] [--out DIR]

Masks are written as they are committed, each PNG to a temporary name first and
then renamed into place, so an interrupted run leaves only complete files.
Exit codes: 0 done, 2 bad input (message says what to fix), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .options import PRECISIONS
from .tree import TreeConfig

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130

DEMO_VIDEO = Path(__file__).resolve().parent / "assets" / "demo.mp4"
# The girl in the blue dress on frame 0 of the demo clip (480x270): two clicks, top and skirt.
DEMO_POINTS = [(197.0, 78.0), (200.0, 110.0)]
DEMO_CHECKPOINT = "sam2.1_hiera_tiny"

# Overlay colours for objects 1, 2, 3, ... (RGB), cycled.
PALETTE = [
    (255, 64, 64), (64, 160, 255), (255, 200, 0), (64, 220, 120), (200, 90, 255),
    (255, 128, 0), (0, 220, 220), (255, 90, 180), (160, 200, 40), (140, 140, 255),
]

TRACK_EPILOG = """\
prompts:
  Prompts are --point, --box and --mask. --frame N and --object ID set the frame
  and the object for the prompts that FOLLOW them, until the next --frame or
  --object; before any of them the frame is 0 and the object is 1. Several
  --point options for one frame and object are one click set (positive and
  negative clicks together); a --box may come with points on the same frame and
  object; a --mask replaces clicks for its frame and object. Coordinates are in
  pixels of the source frames (0,0 is the top-left corner).

  Two objects on two frames - object 1 (a click and a box) on frame 0, object 2
  (two positive clicks and a negative one) on frame 40:

    sam2long track shot.mp4 --checkpoint sam2.1_hiera_large --out masks \\
        --object 1 --frame 0 --point 410,220 --box 350,120,500,400 \\
        --object 2 --frame 40 --point 800,300 --point 820,360 --point 900,330,0

output:
  OUT/<object id>/<frame index, 5 digits>.png   8-bit masks (0 or 255) at the
      source resolution, one per object for every tracked frame (empty before an
      object's first prompt), and OUT/preview.mp4 with all objects overlaid.

tree:
  --pathways P keeps P alternative memory histories per object and picks the best
  one; --sam2 runs plain SAM 2 (one greedy history) for comparison.
  Raise --uncertainty or lower --iou-threshold when an object is lost after an
  occlusion; --max-lag K bounds how far the written masks trail the tracking.
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line naming the problem and where to look."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(EXIT_BAD_INPUT)


class BadInput(Exception):
    """A user error: printed as one line, exit code 2."""


# --- prompt parsing -------------------------------------------------------------------


def _numbers(text: str, what: str, counts: tuple[int, ...]) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        values = []
    if len(values) not in counts:
        raise argparse.ArgumentTypeError(f"{what} {text!r} must be {' or '.join(str(c) for c in counts)} comma-separated numbers")
    return values


def _point(text):
    v = _numbers(text, "--point", (2, 3))
    label = 1 if len(v) == 2 else int(v[2])
    if label not in (0, 1):
        raise argparse.ArgumentTypeError(f"--point {text!r}: the label must be 1 (positive) or 0 (negative)")
    return (v[0], v[1], label)


def _box(text):
    x0, y0, x1, y1 = _numbers(text, "--box", (4,))
    if x1 <= x0 or y1 <= y0:
        raise argparse.ArgumentTypeError(f"--box {text!r} must be X0,Y0,X1,Y1 with X1 > X0 and Y1 > Y0")
    return (x0, y0, x1, y1)


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


class _Event(argparse.Action):
    """Record prompts and --frame/--object in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):
        events = list(getattr(namespace, "events", None) or [])
        events.append((self.dest, values))
        namespace.events = events


def group_prompts(events) -> dict[tuple[int, int], dict]:
    """(frame, object) -> {"points": [(x, y)], "labels": [..], "box": .., "mask": path}."""
    frame, obj = 0, 1
    groups: dict[tuple[int, int], dict] = {}
    for kind, value in events or []:
        if kind == "frame":
            frame = value
            continue
        if kind == "object":
            obj = value
            continue
        g = groups.setdefault((frame, obj), {"points": [], "labels": [], "box": None, "mask": None})
        if kind == "point":
            g["points"].append((value[0], value[1]))
            g["labels"].append(value[2])
        elif kind == "box":
            if g["box"] is not None:
                raise BadInput(f"two --box prompts for object {obj} on frame {frame}: give one box per "
                               f"object and frame (use --object to start another object)")
            g["box"] = value
        elif kind == "mask":
            if g["mask"] is not None:
                raise BadInput(f"two --mask prompts for object {obj} on frame {frame}: give one mask per "
                               f"object and frame")
            g["mask"] = value
    for (frame, obj), g in groups.items():
        if g["mask"] is not None and (g["points"] or g["box"] is not None):
            raise BadInput(f"object {obj} on frame {frame} has a --mask and clicks/a box: a mask prompt "
                           f"stands alone; put the clicks on another frame or drop them")
    return groups


def _read_mask(path: str, width: int, height: int):
    import numpy as np
    from PIL import Image

    p = Path(path).expanduser()
    if not p.is_file():
        raise BadInput(f"mask file {path!r} does not exist: give a PNG with white object on black")
    try:
        with Image.open(p) as im:
            size = im.size
            if im.mode in ("RGBA", "LA"):
                a = np.asarray(im.getchannel("A"))
                if a.min() == a.max():  # no alpha information: use the luminance
                    a = np.asarray(im.convert("L"))
            else:
                a = np.asarray(im.convert("L"))
    except Exception as e:
        raise BadInput(f"cannot read mask {path!r} ({e}): give a PNG with white object on black") from None
    if size != (width, height):
        raise BadInput(f"mask {path!r} is {size[0]}x{size[1]} but the video is {width}x{height}: "
                       f"export the mask at the source resolution")
    mask = a > 127 if a.max() > 1 else a > 0
    if not mask.any():
        raise BadInput(f"mask {path!r} is empty (all black): paint the object white")
    return mask


def _check_inside(kind, xy, frame, obj, width, height):
    x, y = xy
    if not (0 <= x <= width - 1 and 0 <= y <= height - 1):
        raise BadInput(f"{kind} ({x:g},{y:g}) for object {obj} on frame {frame} is outside the "
                       f"{width}x{height} frame: use pixel coordinates with 0<=X<{width} and 0<=Y<{height}")


def validate_prompts(groups, source, start, end):
    """Check every prompt against the source before anything is loaded or written; read masks."""
    n = len(source)
    if not groups:
        raise BadInput("no prompts: give at least one --point X,Y, --box X0,Y0,X1,Y1 or --mask FILE.png")
    for (frame, obj), g in sorted(groups.items()):
        if frame >= n:
            raise BadInput(f"--frame {frame} (object {obj}) is not in the video, which has frames "
                           f"0..{n - 1}: use a frame index in that range")
        if not start <= frame <= end:
            raise BadInput(f"the prompt for object {obj} on frame {frame} is outside the tracked range "
                           f"{start}..{end}: move the prompt or widen --start/--end")
        for xy in g["points"]:
            _check_inside("point", xy, frame, obj, source.width, source.height)
        if g["box"] is not None:
            x0, y0, x1, y1 = g["box"]
            _check_inside("box corner", (x0, y0), frame, obj, source.width, source.height)
            _check_inside("box corner", (x1, y1), frame, obj, source.width, source.height)
        if g["mask"] is not None:
            g["mask_array"] = _read_mask(g["mask"], source.width, source.height)


def add_prompts(tracker, groups):
    for (frame, obj), g in sorted(groups.items()):
        if g["mask"] is not None:
            tracker.add_mask(frame=frame, obj_id=obj, mask=g["mask_array"])
        elif g["box"] is not None:
            kw = {"points": g["points"], "labels": g["labels"]} if g["points"] else {}
            tracker.add_box(frame=frame, obj_id=obj, box=g["box"], **kw)
        else:
            tracker.add_points(frame=frame, obj_id=obj, points=g["points"], labels=g["labels"])


def expected_frames(groups, direction, start, end) -> list[int]:
    """The frames the tracker will output, in global order (for the bar and the preview)."""
    frames = [f for f, _ in groups]
    if direction == "forward":
        return list(range(min(frames), end + 1))
    if direction == "backward":
        return list(range(start, max(frames) + 1))
    return list(range(start, end + 1))


# --- writing --------------------------------------------------------------------------


def _tmp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


class MaskWriter:
    """Writes one PNG per (object, frame) atomically and remembers the temp file in flight."""

    def __init__(self, out: Path, obj_ids: list[int]):
        self.out = out
        self.obj_ids = obj_ids
        self.in_flight: Path | None = None
        self.written = 0
        for obj in obj_ids:
            (out / str(obj)).mkdir(parents=True, exist_ok=True)

    def path(self, obj: int, frame: int) -> Path:
        return self.out / str(obj) / f"{frame:05d}.png"

    def write(self, obj: int, frame: int, mask_u8) -> None:
        from PIL import Image

        final = self.path(obj, frame)
        tmp = _tmp_name(final)
        self.in_flight = tmp
        Image.fromarray(mask_u8, mode="L").save(tmp, format="PNG", compress_level=3)
        os.replace(tmp, final)
        self.in_flight = None
        self.written += 1

    def cleanup(self) -> None:
        if self.in_flight is not None:
            try:
                self.in_flight.unlink()
            except FileNotFoundError:
                pass
            self.in_flight = None


def _even(n: int) -> int:
    return n + (n % 2)


class PreviewWriter:
    """An overlay video written frame by frame to a temporary file, renamed at close."""

    def __init__(self, path: Path, width: int, height: int, fps: float):
        import av

        self.path = path
        self.tmp = _tmp_name(path)
        self.width, self.height = width, height
        self.container = av.open(str(self.tmp), mode="w", format="mp4")
        rate = max(1, int(round(fps))) if fps and fps > 0 else 24
        self.stream = None
        for codec in ("libx264", "h264", "mpeg4"):
            try:
                stream = self.container.add_stream(codec, rate=rate)
            except Exception:
                continue
            self.stream = stream
            break
        if self.stream is None:  # pragma: no cover - PyAV always ships mpeg4
            self.container.close()
            raise RuntimeError("no H.264 or MPEG-4 encoder in this PyAV build")
        self.codec = self.stream.codec_context.name
        self.stream.width, self.stream.height = _even(width), _even(height)
        self.stream.pix_fmt = "yuv420p"
        if self.codec in ("libx264", "h264"):
            self.stream.options = {"crf": "20", "preset": "veryfast"}
        else:
            self.stream.bit_rate = max(2_000_000, width * height * 8)
        self.frames = 0

    def add(self, image, masks: dict[int, "object"]) -> None:
        import av
        import numpy as np

        img = np.asarray(image)[..., :3].astype(np.float32)
        for obj, m in masks.items():
            if m is None or not m.any():
                continue
            colour = np.array(PALETTE[(obj - 1) % len(PALETTE)], np.float32)
            img[m] = img[m] * 0.45 + colour * 0.55
            # a solid outline so thin parts stay visible
            edge = m & ~(np.roll(m, 1, 0) & np.roll(m, -1, 0) & np.roll(m, 1, 1) & np.roll(m, -1, 1))
            img[edge] = colour
        out = img.clip(0, 255).astype(np.uint8)
        if out.shape[0] % 2 or out.shape[1] % 2:
            out = np.pad(out, ((0, out.shape[0] % 2), (0, out.shape[1] % 2), (0, 0)), mode="edge")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(out), format="rgb24")
        for packet in self.stream.encode(frame):
            self.container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self.stream.encode():
            self.container.mux(packet)
        self.container.close()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:
            pass
        try:
            self.tmp.unlink()
        except FileNotFoundError:
            pass


def _load_mask_png(path: Path):
    import numpy as np
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im) > 127


# --- the job ------------------------------------------------------------------------


def _direction(args) -> str:
    if args.both:
        return "both"
    if args.reverse:
        return "backward"
    return "forward"


def _bar(total, quiet):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc="tracking", disable=quiet, file=sys.stderr,
                dynamic_ncols=True, smoothing=0.1)


def run_track(args, *, stdout=None) -> int:
    from .errors import CheckpointError, FrameError, PromptError
    from .frames import open_frames

    stdout = stdout or sys.stdout
    t0 = time.perf_counter()
    try:
        groups = group_prompts(getattr(args, "events", None))
        source = open_frames(args.video)
        n = len(source)
        start = 0 if args.start is None else args.start
        end = n - 1 if args.end is None else args.end
        if start >= n or end >= n or start > end:
            raise BadInput(f"--start {start} / --end {end} do not fit the video's frames 0..{n - 1}: "
                           f"give 0 <= start <= end <= {n - 1}")
        validate_prompts(groups, source, start, end)
        out = Path(args.out).expanduser()
        if out.exists() and not out.is_dir():
            raise BadInput(f"--out {str(out)!r} is a file: give a folder for the masks")
    except (BadInput, FrameError, PromptError) as e:
        print(f"sam2long: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT

    try:
        model = _load_model(args)
    except (CheckpointError, FileNotFoundError) as e:
        print(f"sam2long: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as e:  # device / precision / image size
        print(f"sam2long: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT

    from .tracker import Tracker
    from .tree import TreeConfig

    try:
        if args.sam2:
            tree = TreeConfig.sam2()
        else:
            tree = TreeConfig(pathways=args.pathways, iou_threshold=args.iou_threshold,
                              uncertainty=args.uncertainty)
        tracker = Tracker(model, tree=tree, max_lag=args.max_lag)
        add_prompts(tracker, groups)
    except (ValueError, PromptError) as e:
        print(f"sam2long: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT

    direction = _direction(args)
    obj_ids = sorted({obj for _, obj in groups})
    frames_expected = expected_frames(groups, direction, start, end)
    out.mkdir(parents=True, exist_ok=True)
    writer = MaskWriter(out, obj_ids)
    preview_path = out / "preview.mp4"
    preview = None
    bar = None
    gen = None
    committed: list[int] = []
    areas = {o: 0 for o in obj_ids}
    try:
        if not args.no_preview and direction == "forward" and frames_expected:
            preview = PreviewWriter(preview_path, source.width, source.height, getattr(source, "fps", 24.0))
            preview_frames = source.frames(frames_expected)
        bar = _bar(len(frames_expected), args.quiet)
        gen = tracker.propagate(source, direction=direction, start=start, end=end,
                                on_step=lambda i: bar.update(1))
        empty = None
        for r in gen:
            import numpy as np

            masks = r.masks.numpy() if hasattr(r.masks, "numpy") else np.asarray(r.masks)
            by_obj = {o: masks[k] for k, o in enumerate(r.obj_ids)}
            if empty is None:
                empty = np.zeros((source.height, source.width), np.uint8)
            record = {}
            for k, obj in enumerate(obj_ids):
                m = by_obj.get(obj)
                if m is None:
                    writer.write(obj, r.frame_idx, empty)
                    record[str(obj)] = {"area": 0, "score": None}
                else:
                    writer.write(obj, r.frame_idx, m.astype(np.uint8) * 255)
                    area = int(m.sum())
                    areas[obj] += area
                    j = r.obj_ids.index(obj)
                    score = float(r.object_scores[j]) if r.object_scores is not None else None
                    record[str(obj)] = {"area": area, "score": None if score is None else round(score, 4)}
            committed.append(r.frame_idx)
            if preview is not None:
                idx, image = next(preview_frames, (None, None))
                if idx == r.frame_idx:
                    preview.add(image, {o: by_obj.get(o) for o in obj_ids})
                else:  # not the expected order after all: write the preview afterwards
                    preview.abort()
                    preview = None
            if args.json:
                print(json.dumps({"frame": r.frame_idx, "objects": record}), file=stdout, flush=True)
        gen = None
        if bar is not None:
            bar.close()
            bar = None
        if not args.no_preview:
            if preview is None:
                preview = PreviewWriter(preview_path, source.width, source.height, getattr(source, "fps", 24.0))
                done = sorted(set(committed))
                for idx, image in source.frames(done):
                    masks = {o: _load_mask_png(writer.path(o, idx)) for o in obj_ids}
                    preview.add(image, masks)
            preview.close()
            preview = None
    except KeyboardInterrupt:
        if gen is not None:
            try:
                gen.close()
            except BaseException:
                pass
        writer.cleanup()
        if preview is not None:
            preview.abort()
        if bar is not None:
            bar.close()
        print(f"\nsam2long: interrupted: {len(committed)} frame(s) of masks were written completely to "
              f"{out} (no preview); run the command again to redo the shot", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (FrameError, PromptError) as e:
        writer.cleanup()
        if preview is not None:
            preview.abort()
        if bar is not None:
            bar.close()
        print(f"sam2long: error: {e}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except BaseException:
        writer.cleanup()
        if preview is not None:
            preview.abort()
        raise

    seconds = time.perf_counter() - t0
    summary = {
        "summary": {
            "frames": len(committed),
            "objects": obj_ids,
            "first_frame": min(committed) if committed else None,
            "last_frame": max(committed) if committed else None,
            "direction": direction,
            "out": str(out),
            "preview": None if args.no_preview else str(preview_path),
            "seconds": round(seconds, 3),
            "mean_area": {str(o): (areas[o] / len(committed) if committed else 0) for o in obj_ids},
        }
    }
    if args.json:
        print(json.dumps(summary), file=stdout, flush=True)
    elif not args.quiet:
        print(f"sam2long: {len(committed)} frames x {len(obj_ids)} object(s) written to {out} "
              f"in {seconds:.1f}s", file=sys.stderr)
    return EXIT_OK


def _load_model(args):
    from .loading import load_model

    kw = {}
    if args.image_size is not None:
        kw["image_size"] = args.image_size
    return load_model(args.checkpoint, device=args.device, precision=args.precision,
                      progress=not args.quiet, **kw)


# --- argument parsing -----------------------------------------------------------------


def _add_common(p: argparse.ArgumentParser, checkpoint_default=None):
    p.add_argument("--checkpoint", required=checkpoint_default is None, default=checkpoint_default,
                   metavar="CKPT",
                   help="a SAM 2 / SAM 2.1 checkpoint file (.pt or .safetensors) or a model name such as "
                        "sam2.1_hiera_large, found in the cache ($SAM2LONG_CACHE, default ~/.cache/sam2long) "
                        "or downloaded there on first use"
                        + (f" (default: {checkpoint_default})" if checkpoint_default else ""))
    p.add_argument("--out", required=checkpoint_default is None, default=None if checkpoint_default is None
                   else "sam2long_demo", metavar="DIR", help="output folder for the masks and preview.mp4")
    tree = p.add_argument_group("memory tree")
    tree.add_argument("--pathways", type=_pos_int, default=TreeConfig.pathways, metavar="P",
                      help="memory pathways kept per object (default %(default)s; 1 is SAM 2's single greedy history)")
    tree.add_argument("--iou-threshold", type=float, default=TreeConfig.iou_threshold, metavar="T",
                      help="a frame enters an object's memory only if its predicted IoU is above T "
                           "(default %(default)s)")
    tree.add_argument("--uncertainty", type=float, default=TreeConfig.uncertainty, metavar="U",
                      help="when every pathway's |object score| is at most U, keep diverse candidates "
                           "instead of the top scores (default %(default)s)")
    tree.add_argument("--sam2", action="store_true",
                      help="plain SAM 2 instead of the memory tree (ignores the three options above), "
                           "for comparison")
    tree.add_argument("--max-lag", type=_nonneg_int, default=None, metavar="K",
                      help="force masks out at most K frames behind tracking (bounded memory; an "
                           "approximation). Default: exact, masks come out when all pathways agree")
    run = p.add_argument_group("running")
    run.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                     help="where to compute (default auto: CUDA, then MPS, then CPU)")
    run.add_argument("--precision", default="auto", choices=PRECISIONS,
                     help="compute precision on CUDA (default auto: bf16 where supported); CPU/MPS use fp32")
    run.add_argument("--quiet", action="store_true", help="no progress bar or closing line")
    run.add_argument("--json", action="store_true",
                     help="print one JSON object per committed frame on stdout, then a summary line")
    run.add_argument("--no-preview", action="store_true", help="skip preview.mp4")
    run.add_argument("--image-size", type=_pos_int, default=None, help=argparse.SUPPRESS)


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = _Parser(prog="sam2long", description="Track prompted objects through a shot with SAM 2 and "
                                                  "SAM2Long's memory tree; writes one PNG mask per object per frame.")
    parser.add_argument("--version", action="version", version=f"sam2long {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    t = sub.add_parser("track", help="track objects through a video file or a folder of frames",
                       description="Track the prompted objects through VIDEO and write their masks.",
                       epilog=TRACK_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("video", metavar="VIDEO", help="a video file (.mp4 .mov .mkv .avi .webm) or a folder of "
                                                  "frames (.jpg .png .webp, numbered)")
    pr = t.add_argument_group("prompts (in order; see below)")
    pr.add_argument("--point", type=_point, action=_Event, metavar="X,Y[,LABEL]",
                    help="a click; LABEL 1 = on the object (default), 0 = not on the object")
    pr.add_argument("--box", type=_box, action=_Event, metavar="X0,Y0,X1,Y1", help="a box around the object")
    pr.add_argument("--mask", action=_Event, metavar="FILE.png",
                    help="a mask (white object on black) at the source resolution")
    pr.add_argument("--frame", type=_nonneg_int, action=_Event, metavar="N",
                    help="frame index for the prompts that follow (default 0)")
    pr.add_argument("--object", type=_pos_int, action=_Event, metavar="ID",
                    help="object id for the prompts that follow (default 1)")
    rng = t.add_argument_group("range and direction")
    rng.add_argument("--start", type=_nonneg_int, default=None, metavar="N", help="first frame to track (default 0)")
    rng.add_argument("--end", type=_nonneg_int, default=None, metavar="N",
                     help="last frame to track, inclusive (default: the last frame)")
    d = rng.add_mutually_exclusive_group()
    d.add_argument("--reverse", action="store_true",
                   help="track backward from each object's last prompt frame towards --start")
    d.add_argument("--both", action="store_true",
                   help="track forward and backward from each object's first prompt frame")
    _add_common(t)
    t.set_defaults(events=[])

    dm = sub.add_parser("demo", help="track a child on the bundled demo clip (needs a checkpoint)",
                        description="Run the main job on the short clip shipped with sam2long: one click set "
                                    "on the girl on frame 0, masks and preview written to --out.")
    _add_common(dm, checkpoint_default=DEMO_CHECKPOINT)
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


def entry_point() -> None:  # pragma: no cover
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
