"""One shot of `sam2long batch`, in whichever process runs it: the in-process engine or a
Ray worker.

A try writes into `<output>.partial-<random>` next to its output, marked as ours while it
runs; the folder is renamed to `<output>` only when the shot is complete, with
`sam2long_job.json` inside recording what made it. Only folders that hold our record (or
empty ones) are ever replaced or removed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

from .jobs import BatchShot, mark_in_progress, write_record, written_by_us
from .run import BAD_INPUT, bad_input, check, load_model_for, run


class ModelCache:
    """Models by their settings (checkpoint, device, precision, image size): one load each per worker."""

    def __init__(self):
        self.models = {}

    def __call__(self, settings):
        if settings not in self.models:
            self.models[settings] = load_model_for(settings)
        return self.models[settings]


def remove_partials(output) -> None:
    """Temporary folders of earlier tries of this shot (a try runs only once at a time):
    only OUTPUT.partial-XXXX (mkdtemp's) and OUTPUT.old-PID folders that hold our record (or are empty:
    a try stopped between making its folder and marking it), never a link."""
    out = Path(output)
    ours = re.compile(re.escape(out.name) + r"\.(partial-[A-Za-z0-9_]+|old-\d+)")
    for p in glob.glob(glob.escape(str(out)) + ".*-*"):
        if not ours.fullmatch(os.path.basename(p)):
            continue
        if written_by_us(p):
            shutil.rmtree(p, ignore_errors=True)
        elif not os.path.islink(p):
            with contextlib.suppress(OSError):
                os.rmdir(p)  # only if empty


class OutputInTheWay(Exception):
    """Something that sam2long did not write sits where a shot's folder goes: it is kept."""


def new_partial(out: Path) -> Path:
    """A new, empty folder `OUTPUT.partial-XXXX` for one try: made by mkdtemp (random name,
    created exclusively), so a link planted at a predictable name is never written through;
    then given the mode an ordinary mkdir would (mkdtemp's is 0700, owner only)."""
    from ..media.files import ordinary_mode

    out.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{out.name}.partial-", dir=out.parent))
    os.chmod(partial, ordinary_mode(0o777))
    return partial


def _publish(partial: Path, out: Path) -> None:
    """Rename the complete folder into place. An older output is replaced only now, and
    only if sam2long wrote it (or it is an empty folder)."""
    if written_by_us(out):
        old = out.with_name(f"{out.name}.old-{os.getpid()}")
        os.replace(out, old)
        os.replace(partial, out)
        shutil.rmtree(old)
        return
    if os.path.lexists(out):
        try:
            out.rmdir()  # only an empty folder, never a link
        except OSError:
            raise OutputInTheWay(f"{out} appeared during the run and was not written by sam2long: it is "
                                 f"kept; move it away and run again") from None
    os.replace(partial, out)


def run_shot(shot: BatchShot, models, report) -> dict:
    """Track one shot into a temporary folder, then rename it to the output.

    `models(settings)` gives the model (a `ModelCache`); `report(event)` receives
    {"event": "started" | "frame", "shot": index, ...}.
    Returns {"shot", "status": "done" | "failed", "frames", "seconds", "error", "retry", "worker"}:
    a shot refused as bad input is not tried again (another try would be refused too).
    """
    out = Path(shot.output)
    remove_partials(out)
    partial = None  # made by this try, once the inputs are checked (only then removed below)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    result = {"shot": shot.index, "worker": worker}
    report({"event": "started", "shot": shot.index, "worker": worker})
    t0 = time.perf_counter()
    try:
        # Checked again here, before any folder is made: this machine's device, the files as
        # this machine sees them; then the model (a missing checkpoint is bad input too).
        checked = check(shot.job)
        with bad_input():
            model = models(shot.job.model)
        partial = new_partial(out)
        mark_in_progress(partial, worker)
        summary = run(checked.writing_to(partial), model=model,
                      on_frame=lambda record: report({"event": "frame", "shot": shot.index}))
        result.update(frames=summary.frames, seconds=round(time.perf_counter() - t0, 3))
        write_record(partial, shot, {"frames": result["frames"], "seconds": result["seconds"],
                                     "worker": worker, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        _publish(partial, out)
        return {**result, "status": "done"}
    except (*BAD_INPUT, OutputInTheWay) as e:  # another try would fail the same way
        return {**result, "status": "failed", "error": str(e), "retry": False}
    except Exception as e:  # noqa: BLE001 - any failure of one shot is that shot's, reported in the table
        return {**result, "status": "failed", "error": f"{type(e).__name__}: {e}", "retry": True}
    finally:
        if partial is not None:  # already renamed when the shot is done; rmtree never follows a link
            shutil.rmtree(partial, ignore_errors=True)
