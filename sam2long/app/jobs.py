"""Job files for `sam2long batch`: many shots, each one a typed `TrackJob`.

A job file (YAML, or JSON) has `defaults` that every shot may override and a list of
`shots`, each with its input, output and prompts (the example: `help.JOB_FILE_EXAMPLE`, shown
by `sam2long batch --help`). Every key besides those is a track option, read with the same
checker as on the command line (`track_options.TRACK_OPTIONS`), and each shot is checked by
`run.check` as `sam2long track` checks its arguments. Relative paths are relative to the job
file. Each finished output holds `sam2long_job.json`, the record of what made it (the job and
the size and modification time of every input file), so a rerun can skip shots whose record
still matches.

Batch never destroys what it did not write: a job whose output is, holds or lies inside
an input, a mask file, the checkpoint, the job file or another shot's output is refused
(symlinks resolved), and only folders that hold our record (or empty ones) are replaced or removed.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from .. import __version__
from . import values
from .run import BAD_INPUT, BadInput, Prompt, TrackJob, check
from .track_options import option_keys, track_job

RECORD = "sam2long_job.json"

SHOT_KEYS = ("name", "input", "output", "prompts")
PROMPT_KINDS = ("point", "box", "mask")
PROMPT_KEYS = ("object", "frame", "label", *PROMPT_KINDS)
# The command line's own options, which a shot does not set: `output` and `prompts` say
# these, and the batch command owns the progress display and stdout.
_NOT_SHOT_OPTIONS = {"help", "out", "json", "quiet", "object", "frame", *PROMPT_KINDS}


class JobError(BadInput):
    """A job file problem: one line naming the file, the shot, the key and the fix."""


@dataclass(frozen=True)
class BatchShot:
    index: int  # position in the job file, from 0
    name: str
    job: TrackJob  # its output folder is the shot's output, an absolute path
    key: dict  # what made the output: equal keys, equal outputs (see `is_done`)

    @property
    def output(self) -> str:
        return self.job.output.folder


# --- reading and checking a job file ----------------------------------------------------


def load_job(path) -> list[BatchShot]:
    """Read and check the whole job file; raises `JobError` before anything is written.

    Refused, whatever the options: an output that is, holds or lies inside anything the
    job reads (see `_check_outputs`), and an existing output folder that sam2long did
    not write (`--force` replaces only outputs that hold our record).
    """
    path = Path(path).expanduser()
    job = _read(path)
    root = path.resolve().parent
    options = option_keys()

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

    shots, labels, reads = [], [], [(path.resolve(), "the job file")]
    for i, entry in enumerate(job["shots"]):
        if not isinstance(entry, dict):
            fail(f"shot {i + 1}", "give a mapping with input, output and prompts")
        labels.append(f"shot {i + 1} ({entry.get('name') or entry.get('output') or 'no output'})")
        try:
            shot, shot_reads = _shot(i, entry, defaults, root, options)
        except JobError as e:
            fail(labels[i], str(e))
        shots.append(shot)
        reads += [(p, f"{what} of shot {i + 1}") for p, what in shot_reads]
    # Where outputs go first: the track checks below would only say "--out is a file".
    for i, problem in _check_outputs(shots, reads):
        fail(labels[i], problem)
    for shot, label in zip(shots, labels):
        try:
            _check_with_track(shot.job)
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


def _check_outputs(shots: list[BatchShot], reads: list[tuple[Path, str]]):
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


def _checked(where: str, check, value):
    try:
        return check(value)
    except values.BadValue as e:
        raise JobError(f"{where}: {e}") from None


def _path(root: Path, value, key) -> Path:
    if not isinstance(value, str) or not value:
        raise JobError(f"{key}: give a path (relative to the job file or absolute)")
    return root / Path(value).expanduser()


def _read_location(source: Path) -> Path:
    """What an input stands for on disk: a video file, or the folder of an image sequence
    (a folder, a pattern such as plate.####.exr, or one numbered file), as `open_frames` reads it."""
    from ..media.plates import IMAGE_EXTENSIONS, is_sequence_path

    if is_sequence_path(source) or (source.is_file() and source.suffix.lower() in IMAGE_EXTENSIONS):
        return source.parent.resolve()
    return source.resolve()


def _shot(index, entry, defaults, root, options):
    """(BatchShot, [(resolved path, what) the shot reads])."""
    from ..media.plates import is_sequence_path

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
    files = [(source, "the input")]  # stamped (size, mtime) in the record

    given = {}  # by option key: the defaults, then the shot's own (null: the option's default)
    for key, value in [*defaults.items(), *((k, v) for k, v in entry.items() if k not in SHOT_KEYS)]:
        option = options[key]
        if value is None and option.check is not None:  # a switch is true or false, never null
            given.pop(option.key, None)
        elif option.name == "checkpoint":
            given[option.key] = _checkpoint(root, value, files)
        else:
            given[option.key] = _checked(key, option.read, value)

    prompts = entry["prompts"]
    if not isinstance(prompts, list) or not prompts:
        raise JobError("prompts: give a list such as [{object: 1, frame: 0, point: [410, 220]}]")
    # A prompt without `frame` is on the shot's first frame (0 for a video, e.g. 1001 for a
    # plate); as on the command line, those come before the ones with a frame.
    order = sorted(range(len(prompts)), key=lambda i: isinstance(prompts[i], dict) and "frame" in prompts[i])
    prompts = [_prompt(prompts[i], root, f"prompts[{i}]", files) for i in order]
    try:
        job = track_job(given, source=str(source), prompts=prompts, folder=str(output))
    except BadInput as e:
        raise JobError(str(e)) from None

    reads = [(_read_location(source), "the input")] + [(Path(f).resolve(), what) for f, what in files[1:]]
    try:
        key = {"sam2long": __version__, "job": asdict(job), "files": [file_stamps(f) for f, _ in files]}
    except ValueError as e:  # FrameError: a pattern that matches no frames
        raise JobError(f"input: {e}") from None
    name = str(entry.get("name") or entry["output"])
    return BatchShot(index=index, name=name, job=job, key=json.loads(json.dumps(key))), reads


def _checkpoint(root: Path, value, files: list) -> str:
    """A model name stays a name (cache or download); anything else is a file."""
    from ..models.catalog import variant_from_name
    from ..models.checkpoints import resolve_checkpoint
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
    files.append((path, "the checkpoint"))
    return str(path)


def _prompt(prompt, root: Path, where: str, files: list) -> Prompt:
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
    obj = _checked(f"{where}.object", values.one_or_more, prompt.get("object", 1))
    frame = _checked(f"{where}.frame", values.zero_or_more, prompt["frame"]) if "frame" in prompt else None
    if kind == "mask":
        mask = _path(root, prompt["mask"], f"{where}.mask")
        if not mask.is_file():
            raise JobError(f"{where}.mask: {mask} does not exist (relative paths are relative to the job file)")
        files.append((mask, "a mask file"))
        return Prompt(obj, frame, "mask", str(mask))
    value = prompt[kind]
    if "label" in prompt:  # [X, Y] and label L: the command line's X,Y,L
        label = prompt["label"]
        value = [*value, label] if isinstance(value, list) else f"{value},{label}"
    return Prompt(obj, frame, kind, _checked(where, values.point if kind == "point" else values.box, value))


def _check_with_track(job: TrackJob):
    """The track command's own checks (frames, range, prompts inside the frames, mask
    files), as `sam2long track` makes them before loading a model or writing anything;
    whether the device exists is for the machine that runs the shot."""
    try:
        check(job, device=False)
    except BAD_INPUT as e:
        raise JobError(str(e)) from None


# --- records of finished outputs --------------------------------------------------------


def file_stamps(path) -> dict:
    """Size and modification time of a file, or of every file in a folder of frames or of
    a sequence named by a pattern."""
    from ..media.plates import find_sequence, is_sequence_path

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


def is_done(shot: BatchShot) -> bool:
    """The output is complete and was made from the same inputs and settings."""
    record = read_record(shot.output)
    return record is not None and record.get("key") == shot.key


def write_record(folder, shot: BatchShot, result: dict) -> None:
    text = json.dumps({"key": shot.key, "result": result}, indent=1)
    _write(Path(folder) / RECORD, text + "\n")


def mark_in_progress(folder, worker: str) -> None:
    """The record of a temporary folder while its shot runs: ours to remove, never done."""
    _write(Path(folder) / RECORD, json.dumps({"in_progress": worker}) + "\n")


def _write(path: Path, text: str) -> None:
    from ..media.files import write_text_file  # a temporary file renamed into place, never through a link

    write_text_file(path, text)
