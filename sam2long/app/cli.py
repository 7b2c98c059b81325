"""`sam2long` on the command line: track prompted objects through a shot.

    sam2long track VIDEO --checkpoint CKPT [prompts] --out DIR
    sam2long demo [--checkpoint CKPT] [--out DIR]
    sam2long batch JOBS.yaml [--engine ray]    (many shots: see sam2long/app/batch.py)

The arguments become a typed `TrackJob` (the options from `track_options`, the prompts from
--frame/--object/--point/--box/--mask in order) run by `run.run`. Mattes are written as they
are committed, each file to a temporary name first and then renamed into place, so an
interrupted run leaves only complete files. Exit codes (`run.EXIT_*`): 0 done, 2 bad input
(the message says what to fix), 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import values
from .batch import add_batch_parser, run_batch
from .help import TRACK_EPILOG
from .run import (BAD_INPUT, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, Interrupted, Prompt, exit_code, prompt_set,
                  run)
from .track_options import GROUPS, TRACK_OPTIONS, track_job

DEMO_VIDEO = Path(__file__).resolve().parents[1] / "assets" / "demo.mp4"
# The girl in the blue dress on frame 0 of the demo clip (480x270): two clicks, top and skirt.
DEMO_POINTS = [(197.0, 78.0), (200.0, 110.0)]
DEMO_CHECKPOINT = "sam2.1_hiera_tiny"


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line naming the problem and where to look."""

    def error(self, message):
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        raise SystemExit(EXIT_BAD_INPUT)


# --- prompt syntax ----------------------------------------------------------------------


class _Event(argparse.Action):
    """Record prompts and --frame/--object in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):
        events = list(getattr(namespace, "events", None) or [])
        events.append((self.dest, values))
        namespace.events = events


def prompts_of_events(events) -> list[Prompt]:
    """The job's prompts from --frame/--object/--point/--box/--mask in command-line order:
    each prompt is on the frame and for the object of the last --frame and --object before
    it (before any: the shot's first frame, object 1)."""
    prompts, frame, obj = [], None, 1
    for kind, value in events or []:
        if kind == "frame":
            frame = value
        elif kind == "object":
            obj = value
        else:
            prompts.append(Prompt(obj, frame, kind, value))
    return prompts


def prompts_from_events(events, first_frame: int = 0):
    """The library's `PromptSet` of the events (mask files are read here)."""
    return prompt_set(prompts_of_events(events), first_frame)


# --- arguments -> job -> run ------------------------------------------------------------


def job_from_args(args):
    """The typed job of parsed `track` (or `demo`) arguments."""
    given = {o.key: getattr(args, o.key) for o in TRACK_OPTIONS if hasattr(args, o.key)}
    return track_job(given, source=args.video, prompts=prompts_of_events(getattr(args, "events", None)),
                     folder=args.out)


def track_command(args, *, model=None) -> int:
    """The `track` command: the job of the arguments, run, its lines printed. `model`: an
    already loaded `LoadedModel` to use instead of loading --checkpoint. Returns the exit code."""

    def on_frame(record):
        print(json.dumps(record.to_json()), flush=True)

    try:
        summary = run(job_from_args(args), model=model, on_frame=on_frame if args.json else None,
                      quiet=args.quiet, say=lambda line: print(f"sam2long: {line}", file=sys.stderr))
    except Interrupted as e:
        print(f"\nsam2long: interrupted: {e.frames} frame(s) of masks were written completely to {e.folder} "
              f"(no preview); run the command again to redo the shot", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BAD_INPUT as e:  # bad prompts, frames, checkpoint, device, precision
        print(f"sam2long: error: {e}", file=sys.stderr)
        return exit_code(e)
    if args.json:
        print(json.dumps(summary.to_json()), flush=True)
    elif not args.quiet:
        print(f"sam2long: {summary.frames} frames x {len(summary.objects)} object(s) written to {summary.out} "
              f"in {summary.seconds:.1f}s", file=sys.stderr)
    return EXIT_OK


def _add_track_options(p: argparse.ArgumentParser, groups, checkpoint_default=None) -> None:
    """The table's options of `groups`, each in its section, and --out, --quiet, --json."""
    sections = {}
    for group in groups:
        sections[group] = p if GROUPS[group] is None else p.add_argument_group(GROUPS[group])
    if "range" in groups:
        sections["direction"] = sections["range"].add_mutually_exclusive_group()
    for option in TRACK_OPTIONS:
        if option.group not in groups:
            continue
        where = sections["direction" if option.key in ("reverse", "both") else option.group]
        # the alias first: the help has always listed this switch as `--sam2, --no-tree`
        flags = [f"--{n}" for n in (*option.aliases, option.name)]
        if option.check is None:
            where.add_argument(*flags, dest=option.key, action="store_true", help=option.help)
        elif option.choices:
            where.add_argument(*flags, dest=option.key, default=option.default, choices=option.choices,
                               help=option.help)
        elif option.name == "checkpoint":
            where.add_argument(*flags, dest=option.key, required=checkpoint_default is None,
                               default=checkpoint_default, metavar=option.metavar,
                               help=option.help + (f" (default: {checkpoint_default})" if checkpoint_default else ""))
        else:
            where.add_argument(*flags, dest=option.key, type=values.argparse_type(option.check), default=option.default,
                               metavar=option.metavar, help=option.help)
    p.add_argument("--out", required=checkpoint_default is None,
                   default=None if checkpoint_default is None else "sam2long_demo", metavar="DIR",
                   help="output folder for the masks and preview.mp4")
    sections["running"].add_argument("--quiet", action="store_true", help="no progress bar or closing line")
    sections["running"].add_argument("--json", action="store_true",
                                     help="print one JSON object per committed frame on stdout, then a summary line")


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
    pr.add_argument("--point", type=values.argparse_type(values.point), action=_Event, metavar="X,Y[,LABEL]",
                    help="a click; LABEL 1 = on the object (default), 0 = not on the object")
    pr.add_argument("--box", type=values.argparse_type(values.box), action=_Event, metavar="X0,Y0,X1,Y1",
                    help="a box around the object")
    pr.add_argument("--mask", action=_Event, metavar="FILE.png",
                    help="a mask (white object on black) at the source resolution")
    pr.add_argument("--frame", type=values.argparse_type(values.zero_or_more), action=_Event, metavar="N",
                    help="frame for the prompts that follow (default: the shot's first frame); a plate's frame "
                         "number, 0-based for a video")
    pr.add_argument("--object", type=values.argparse_type(values.one_or_more), action=_Event, metavar="ID",
                    help="object id for the prompts that follow (default 1)")
    _add_track_options(t, GROUPS)
    t.set_defaults(events=[])

    dm = sub.add_parser("demo", help="track a child on the bundled demo clip (needs a checkpoint)",
                        description="Run the main job on the short clip shipped with sam2long: one click set "
                                    "on the girl on frame 0, masks and preview written to --out.")
    _add_track_options(dm, [g for g in GROUPS if g not in ("range", "colour")], checkpoint_default=DEMO_CHECKPOINT)

    add_batch_parser(sub)
    return parser


def demo_args(args) -> argparse.Namespace:
    args.video = str(DEMO_VIDEO)
    args.events = [("frame", 0), ("object", 1)] + [("point", (x, y, 1)) for x, y in DEMO_POINTS]
    return args  # range, direction and colour: the defaults


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return int(e.code) if isinstance(e.code, int) else EXIT_BAD_INPUT
    if args.command == "batch":
        return run_batch(args)
    if args.command == "demo":
        args = demo_args(args)
        if not args.quiet:
            print(f"sam2long demo: {DEMO_VIDEO.name}, clicks on frame 0 at {DEMO_POINTS}, "
                  f"output in {args.out}", file=sys.stderr)
    try:
        return track_command(args)
    except KeyboardInterrupt:  # before tracking started: nothing was written
        print("\nsam2long: interrupted before any mask was written", file=sys.stderr)
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
