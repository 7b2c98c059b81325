"""Job files for `sam2long batch`: many shots, each one a `sam2long track` run.

A job file (YAML, or JSON) has `defaults` that every shot may override and a list
of `shots`:

    defaults: {checkpoint: sam2.1_hiera_large, pathways: 3}
    shots:
      - input: shots/sh010/plate.mp4
        output: mattes/sh010
        prompts:
          - {object: 1, frame: 0, point: [410, 220]}
          - {object: 1, frame: 0, point: [500, 300], label: 0}
          - {object: 2, frame: 40, box: [350, 120, 500, 400]}

A shot becomes the argv of `sam2long track` (`pathways: 3` -> `--pathways 3`,
`reverse: true` -> `--reverse`, each prompt -> `--object O --frame F --point X,Y,L`),
parsed by the track command's own parser and checked by its own code, so every track
option works here with the same name and meaning. Relative paths are relative to the
job file. Each finished output holds `sam2long_job.json`, the record of what made it
(the argv and the size and modification time of every input file), so a rerun can
skip shots whose record still matches.

Batch never destroys what it did not write: a job whose output is, holds or lies inside
an input, a mask file, the checkpoint, the job file or another shot's output is refused
(symlinks resolved), and only folders that hold our record (or empty ones) are replaced or removed.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from . import cli

RECORD = "sam2long_job.json"

SHOT_KEYS = ("name", "input", "output", "prompts")
PROMPT_KINDS = ("point", "box", "mask")
PROMPT_KEYS = ("object", "frame", "label", *PROMPT_KINDS)
# Track options a shot cannot set: `output` and `prompts` say these, and the batch
# command owns the progress display and stdout.
_NOT_SHOT_OPTIONS = {"help", "out", "json", "quiet", "object", "frame", *PROMPT_KINDS}
# Enough for the track parser to accept one option or prompt on its own.
_PARSE_BASE = ["VIDEO", "--out", "OUT", "--checkpoint", "CKPT"]


class JobError(Exception):
    """A job file problem: one line naming the file, the shot, the key and the fix."""


@dataclass
class Shot:
    index: int  # position in the job file, from 0
    name: str
    output: str  # absolute path of the output folder
    argv: list[str]  # `sam2long track` arguments, --out being `output`
    key: dict  # what made the output: equal keys, equal outputs (see `is_done`)

    def track_args(self, out: str) -> argparse.Namespace:
        """The parsed track arguments, writing to `out`, quiet, frames as JSON lines."""
        args = _track_parser().parse_args([*self.argv, "--quiet", "--json"])
        args.out = out
        return args


class _ParseError(Exception):
    pass


def _track_parser() -> argparse.ArgumentParser:
    """The `sam2long track` parser, raising `_ParseError` instead of exiting."""
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    track = sub.choices["track"]

    def error(message):
        raise _ParseError(message)

    track.error = error
    return track


def track_options(track: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    """Shot keys that are track options: `iou-threshold` and `iou_threshold` alike, and
    every alias (`sam2` and `no-tree`)."""
    options = {}
    for action in track._actions:
        if action.dest in _NOT_SHOT_OPTIONS:
            continue
        for flag in action.option_strings:
            if flag.startswith("--"):
                options[flag[2:]] = options[flag[2:].replace("-", "_")] = action
    return options


# --- reading and checking a job file ----------------------------------------------------


def load_job(path) -> list[Shot]:
    """Read and check the whole job file; raises `JobError` before anything is written.

    Refused, whatever the options: an output that is, holds or lies inside anything the
    job reads (see `_check_outputs`), and an existing output folder that sam2long did
    not write (`--force` replaces only outputs that hold our record).
    """
    path = Path(path).expanduser()
    job = _read(path)
    root = path.resolve().parent
    track = _track_parser()
    options = track_options(track)

    def fail(where, message):
        raise JobError(f"{path}: {where}: {message}")

    if not isinstance(job, dict) or not isinstance(job.get("shots"), list) or not job["shots"]:
        fail("top level", "give a mapping with a non-empty `shots` list (and optional `defaults`)")
    for key in job:
        if key not in ("defaults", "shots"):
            fail(key, "unknown top-level key: a job file has `defaults` and `shots`")
    defaults = job.get("defaults") or {}
    if not isinstance(defaults, dict):
        fail("defaults", "give a mapping of `sam2long track` options, e.g. {checkpoint: sam2.1_hiera_large}")
    for key in defaults:
        if key not in options:
            fail(f"defaults.{key}", _unknown(key, options, shot_key=key in SHOT_KEYS))

    shots, labels, track_args, reads = [], [], [], [(path.resolve(), "the job file")]
    for i, entry in enumerate(job["shots"]):
        if not isinstance(entry, dict):
            fail(f"shot {i + 1}", "give a mapping with input, output and prompts")
        labels.append(f"shot {i + 1} ({entry.get('name') or entry.get('output') or 'no output'})")
        try:
            shot, args, shot_reads = _shot(i, entry, defaults, root, track, options)
        except JobError as e:
            fail(labels[i], str(e))
        shots.append(shot)
        track_args.append(args)
        reads += [(p, f"{what} of shot {i + 1}") for p, what in shot_reads]
    # Where outputs go first: the track checks below would only say "--out is a file".
    for i, problem in _check_outputs(shots, reads):
        fail(labels[i], problem)
    for shot, args, label in zip(shots, track_args, labels):
        try:
            _check_with_track(args)
            _check_not_foreign(Path(shot.output))
        except JobError as e:
            fail(label, str(e))
    return shots


def _overlap(a: Path, b: Path) -> str | None:
    """How folder or file `a` meets `b` ("is", "is inside", "contains"), or None."""
    if a == b:
        return "is"
    if b in a.parents:
        return "is inside"
    if a in b.parents:
        return "contains"
    return None


def _check_outputs(shots: list[Shot], reads: list[tuple[Path, str]]):
    """(shot index, message) for each output that meets something the job reads or another
    output: writing there, or replacing it with --force, would destroy what we did not write."""
    fix = "give every shot its own output folder, apart from the inputs, mask files, checkpoint and job file"
    for i, shot in enumerate(shots):
        out = Path(shot.output)
        for p, what in reads:
            how = _overlap(out, p)
            if how:
                yield i, f"output {out} {how} {what} ({p}): {fix}"
        for j in range(i):
            how = _overlap(out, Path(shots[j].output))
            if how:
                how = "is also" if how == "is" else how
                yield i, f"output {out} {how} the output of shot {j + 1} ({shots[j].output}): {fix}"


def written_by_us(folder) -> bool:
    """A real folder (not a link) holding our record: the only kind batch replaces or removes."""
    p = Path(folder)
    try:
        ours = stat.S_ISDIR(os.lstat(p).st_mode) and stat.S_ISREG(os.lstat(p / RECORD).st_mode)
    except OSError:
        return False
    return ours and isinstance(read_record(p), dict)


def _check_not_foreign(output: Path) -> None:
    if not os.path.lexists(output) or written_by_us(output):
        return
    if output.is_dir() and not output.is_symlink() and not any(output.iterdir()):
        return  # an empty folder: nothing to lose
    raise JobError(f"output: {output} exists and was not written by `sam2long batch` (no {RECORD}): move it "
                   f"away or give another output; --force replaces only outputs that sam2long wrote")


def _read(path: Path):
    if not path.is_file():
        raise JobError(f"job file {str(path)!r} does not exist: give a .yaml or .json job file")
    text = path.read_text(encoding="utf-8")
    suffix = path.suffix.lower()
    if suffix == ".json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise JobError(f"{path}: not valid JSON ({e})") from None
    if suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise JobError(f"{path}: reading YAML needs PyYAML: pip install pyyaml, "
                           f"or write the job file as JSON") from None
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise JobError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    raise JobError(f"{path}: unknown job file type {suffix or '(none)'!r}: name it .yaml, .yml or .json")


def _unknown(key, options, shot_key=False) -> str:
    if shot_key:
        return f"`{key}` belongs to a shot, not to defaults"
    if key in _NOT_SHOT_OPTIONS:
        return (f"`{key}` is not set per shot: prompts go in `prompts`, the folder in `output`, "
                f"and `sam2long batch` has its own --json and --quiet")
    known = sorted({k for k in options if "_" not in k} | set(SHOT_KEYS))
    return f"unknown key {key!r}: a shot takes {', '.join(known)}"


def _check_parse(track, argv, key):
    try:
        track.parse_args([*_PARSE_BASE, *argv])
    except _ParseError as e:
        raise JobError(f"{key}: {e}") from None


def _path(root: Path, value, key) -> Path:
    if not isinstance(value, str) or not value:
        raise JobError(f"{key}: give a path (relative to the job file or absolute)")
    return root / Path(value).expanduser()


def _read_location(source: Path) -> Path:
    """What an input stands for on disk: a video file, or the folder of an image sequence
    (a folder, a pattern such as plate.####.exr, or one numbered file), as `open_frames` reads it."""
    from ..plates import IMAGE_EXTENSIONS, is_sequence_path

    if is_sequence_path(source) or (source.is_file() and source.suffix.lower() in IMAGE_EXTENSIONS):
        return source.parent.resolve()
    return source.resolve()


def _shot(index, entry, defaults, root, track, options):
    """(Shot, its parsed track arguments, [(resolved path, what) the shot reads])."""
    from ..plates import is_sequence_path

    for key in entry:
        if key not in options and key not in SHOT_KEYS:
            raise JobError(_unknown(key, options))
    for key in ("input", "output", "prompts"):
        if key not in entry:
            raise JobError(f"{key}: missing; a shot needs input, output and prompts")
    source = _path(root, entry["input"], "input")
    if not (source.exists() or is_sequence_path(source)):  # a pattern's files: checked by the track checks
        raise JobError(f"input: {source} does not exist (relative paths are relative to the job file)")
    output = _path(root, entry["output"], "output").resolve()
    files = [source]

    argv = [str(source), "--out", str(output)]
    for key, value in {**defaults, **{k: v for k, v in entry.items() if k not in SHOT_KEYS}}.items():
        action = options[key]
        if action.dest == "checkpoint":
            value = _checkpoint(root, value, files)
        piece = _option_argv(action, value, key)
        _check_parse(track, piece, key)
        argv += piece

    prompts = entry["prompts"]
    if not isinstance(prompts, list) or not prompts:
        raise JobError("prompts: give a list such as [{object: 1, frame: 0, point: [410, 220]}]")
    # As on the command line, a prompt without `frame` is on the shot's first frame (0 for
    # a video, e.g. 1001 for a plate): those go before the first --frame.
    order = sorted(range(len(prompts)), key=lambda i: isinstance(prompts[i], dict) and "frame" in prompts[i])
    for i in order:
        prompt = prompts[i]
        piece = _prompt_argv(prompt, root, f"prompts[{i}]", files)
        _check_parse(track, piece, f"prompts[{i}]")
        argv += piece
    try:
        args = track.parse_args(argv)
    except _ParseError as e:
        raise JobError(str(e)) from None

    # files: source, then the checkpoint file if any (from the options), then mask files
    reads = [(_read_location(source), "the input")]
    reads += [(Path(f).resolve(), "the checkpoint" if str(f) == args.checkpoint else "a mask file")
              for f in files[1:]]
    try:
        key = {"sam2long": __version__, "argv": argv, "files": [fingerprint(f) for f in files]}
    except ValueError as e:  # FrameError: a pattern that matches no frames
        raise JobError(f"input: {e}") from None
    name = str(entry.get("name") or entry["output"])
    shot = Shot(index=index, name=name, output=str(output), argv=argv, key=json.loads(json.dumps(key)))
    return shot, args, reads


def _checkpoint(root: Path, value, files: list) -> str:
    """A model name stays a name (cache or download); anything else is a file."""
    from ..catalog import variant_from_name
    from ..checkpoints import resolve_checkpoint
    from ..errors import CheckpointError

    if not isinstance(value, str) or not value:
        raise JobError("checkpoint: give a checkpoint file or a model name such as sam2.1_hiera_large")
    p = Path(value).expanduser()
    if len(p.parts) == 1 and variant_from_name(value) and not (root / p).is_file():
        return value
    try:
        path = resolve_checkpoint(root / p, download=False)
    except CheckpointError as e:
        raise JobError(f"checkpoint: {e} (relative paths are relative to the job file)") from None
    files.append(path)
    return str(path)


def _option_argv(action: argparse.Action, value, key) -> list[str]:
    flag = next(s for s in action.option_strings if s.startswith("--"))
    if action.nargs == 0:  # an on/off switch such as --reverse
        if not isinstance(value, bool):
            raise JobError(f"{key}: give true or false, not {value!r}")
        return [flag] if value else []
    if value is None:
        return []
    if isinstance(value, (list, dict)):
        raise JobError(f"{key}: give one value, not {value!r}")
    return [flag, _text(value)]


def _text(value) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def _numbers(value) -> str:
    """[410, 220] -> "410,220"; a string stays as written (the track parser checks it)."""
    return ",".join(_text(v) for v in value) if isinstance(value, list) else _text(value)


def _prompt_argv(prompt, root: Path, where: str, files: list) -> list[str]:
    if not isinstance(prompt, dict):
        raise JobError(f"{where}: give a mapping such as {{object: 1, frame: 0, point: [410, 220]}}")
    for key in prompt:
        if key not in PROMPT_KEYS:
            raise JobError(f"{where}.{key}: unknown prompt key; a prompt takes {', '.join(PROMPT_KEYS)}")
    kinds = [k for k in PROMPT_KINDS if k in prompt]
    if len(kinds) != 1:
        raise JobError(f"{where}: give exactly one of point, box or mask (one prompt per list entry)")
    kind = kinds[0]
    if "label" in prompt and kind != "point":
        raise JobError(f"{where}.label: a label (1 on the object, 0 not on it) goes with a point only")
    argv = ["--object", _text(prompt.get("object", 1))]
    if "frame" in prompt:
        argv += ["--frame", _text(prompt["frame"])]
    if kind == "mask":
        mask = _path(root, prompt["mask"], f"{where}.mask")
        if not mask.is_file():
            raise JobError(f"{where}.mask: {mask} does not exist (relative paths are relative to the job file)")
        files.append(mask)
        return [*argv, "--mask", str(mask)]
    text = _numbers(prompt[kind])
    if "label" in prompt:
        text += "," + _text(prompt["label"])
    return [*argv, f"--{kind}", text]


def _check_with_track(args):
    """The track command's own checks (frames, range, prompts inside the frames, mask
    files), as `sam2long track` makes them before loading a model or writing anything."""
    args.device = "auto"  # whether the device exists is for the machine that runs the shot
    try:
        cli.validate_inputs(args)
    except (ValueError, FileNotFoundError) as e:  # BadInput, PromptError, FrameError
        raise JobError(str(e)) from None


# --- records of finished outputs --------------------------------------------------------


def fingerprint(path) -> dict:
    """Size and modification time of a file, or of every file in a folder of frames or of
    a sequence named by a pattern."""
    from ..plates import find_sequence, is_sequence_path

    p = Path(path)
    if is_sequence_path(p):
        found = sorted(f for f in find_sequence(p)[0].values())
        return {"path": str(p), "files": [[f.name, f.stat().st_size, f.stat().st_mtime_ns] for f in found]}
    if p.is_dir():
        entries = sorted(os.scandir(p), key=lambda e: e.name)
        return {"path": str(p), "files": [[e.name, e.stat().st_size, e.stat().st_mtime_ns]
                                          for e in entries if e.is_file()]}
    st = p.stat()
    return {"path": str(p), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def read_record(output) -> dict | None:
    try:
        return json.loads((Path(output) / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def is_done(shot: Shot) -> bool:
    """The output is complete and was made from the same inputs and settings."""
    record = read_record(shot.output)
    return record is not None and record.get("key") == shot.key


def write_record(folder, shot: Shot, result: dict) -> None:
    text = json.dumps({"key": shot.key, "result": result}, indent=1)
    _write(Path(folder) / RECORD, text + "\n")


def mark_in_progress(folder, worker: str) -> None:
    """The record of a temporary folder while its shot runs: ours to remove, never done."""
    _write(Path(folder) / RECORD, json.dumps({"in_progress": worker}) + "\n")


def _write(path: Path, text: str) -> None:
    from ..writers import write_text_file  # a temporary file renamed into place, never through a link

    write_text_file(path, text)
