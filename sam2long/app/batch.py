"""`sam2long batch JOBS.yaml`: track many shots, here or on a Ray cluster.

The job file is read and checked by `jobs.load_job` into typed jobs; each shot runs through
`run.run`, the same run as `sam2long track`, by `shot_runner.run_shot` (a temporary folder
renamed into place when the shot is complete; a rerun skips outputs whose record still
matches). Engines: in-process (default), one shot after another with one model cache; or
Ray (`--engine ray`, see `ray_engine`), imported only then.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass

from . import values
from .help import BATCH_EPILOG
from .jobs import BatchShot, JobError, is_done, load_job
from .ray_engine import EngineError, import_ray, run_on_ray
from .run import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, exit_code
from .shot_runner import ModelCache, remove_partials, run_shot


def add_batch_parser(sub) -> None:
    b = sub.add_parser("batch", help="track many shots listed in a job file, here or on a Ray cluster",
                       description="Track every shot of a job file, each as `sam2long track` would, and "
                                   "skip the shots that are already done.",
                       epilog=BATCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("jobs", metavar="JOBS", help="the job file (.yaml, .yml or .json)")
    b.add_argument("--check", action="store_true", help="check the job file, say how many shots are done, exit")
    b.add_argument("--force", action="store_true", help="redo shots that are already done")
    b.add_argument("--retries", type=values.argparse_type(values.zero_or_more), default=1, metavar="N",
                   help="tries after a failed one, per shot (default 1)")
    b.add_argument("--engine", choices=("in-process", "ray"), default="in-process",
                   help="where the shots run (default in-process)")
    b.add_argument("--workers", type=values.argparse_type(values.one_or_more), default=None, metavar="N",
                   help="with --engine ray: workers (default one per GPU, else one per 2 cores)")
    b.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="with --engine ray: an existing Ray cluster (shared filesystem needed)")
    b.add_argument("--ray-dashboard", action="store_true",
                   help="with --engine ray and no --ray-address: start Ray's dashboard too (on 127.0.0.1)")
    b.add_argument("--threads", type=values.argparse_type(values.one_or_more), default=None, metavar="N",
                   help="torch CPU threads per worker (default: torch's own in-process; for Ray CPU workers, "
                        "the cores shared out among the workers)")
    b.add_argument("--quiet", action="store_true", help="no progress bar or per-shot lines")
    b.add_argument("--json", action="store_true",
                   help="one JSON line per shot event (started, done, retry, failed, skipped; with the Unix "
                        "time) on stdout, then a summary line")


# --- the run: retries, progress, table ---------------------------------------------------


@dataclass
class Outcome:
    status: str = "pending"  # pending | done | skipped | failed | interrupted
    tries: int = 0
    frames: int | None = None
    seconds: float | None = None
    error: str = ""


class Progress:
    """One bar on stderr (shots done, frames done across workers), a line per finished
    or failed shot; with --json, one JSON line per shot event on stdout."""

    def __init__(self, shots: int, json_lines: bool, quiet: bool):
        from tqdm import tqdm

        self.tqdm = tqdm
        self.json = json_lines
        self.quiet = quiet
        self.frames = 0
        self.bar = tqdm(total=shots, unit="shot", desc="shots", disable=quiet, file=sys.stderr,
                        dynamic_ncols=True, postfix={"frames": 0})

    def event(self, e: dict) -> None:
        if e["event"] == "frame":
            self.frames += 1
            self.bar.set_postfix(frames=self.frames)
            return
        if self.json:
            print(json.dumps({**e, "time": round(time.time(), 3)}), flush=True)
        if e["event"] in ("done", "skipped", "failed"):
            self.bar.update(1)
        if self.quiet or e["event"] in ("started", "skipped"):  # skipped shots: one line for all
            return
        what = {
            "done": lambda: f"done, {e['frames']} frames in {e['seconds']:.1f}s",
            "retry": lambda: f"failed (try {e['try']}), trying again: {e['error']}",
            "failed": lambda: f"FAILED after {e['try']} tr{'y' if e['try'] == 1 else 'ies'}: {e['error']}",
        }[e["event"]]()
        self.tqdm.write(f"sam2long batch: {e['shot']}: {what}", file=sys.stderr)

    def close(self) -> None:
        self.bar.close()


class BatchRun:
    """The state of every shot; decides which failed tries are tried again."""

    def __init__(self, shots: list[BatchShot], retries: int, progress: Progress):
        self.shots = {s.index: s for s in shots}
        self.outcomes = {s.index: Outcome() for s in shots}
        self.workers = {}  # shot index -> the worker of its latest try (a dead worker reports nothing)
        self.retries = retries
        self.progress = progress

    def report(self, event: dict) -> None:
        """An event from a worker: "shot" is the shot's index."""
        shot = self.shots[event["shot"]]
        if event["event"] == "started":
            self.workers[shot.index] = event["worker"]
            event = {**event, "try": self.outcomes[shot.index].tries + 1, "output": shot.output}
        self.progress.event({**event, "shot": shot.name})

    def skip(self, shot: BatchShot) -> None:
        self.outcomes[shot.index].status = "skipped"
        self.progress.event({"event": "skipped", "shot": shot.name, "output": shot.output})

    def finished(self, shot: BatchShot, result: dict) -> bool:
        """Record a try's result; True if the shot should be tried again."""
        o = self.outcomes[shot.index]
        o.tries += 1
        event = {"shot": shot.name, "try": o.tries, "output": shot.output,
                 "worker": result.get("worker") or self.workers.get(shot.index)}
        if result["status"] == "done":
            o.status, o.frames, o.seconds, o.error = "done", result["frames"], result["seconds"], ""
            self.progress.event({"event": "done", **event, "frames": o.frames, "seconds": o.seconds})
            return False
        o.error = result["error"]
        again = result.get("retry", True) and o.tries <= self.retries
        o.status = "pending" if again else "failed"
        self.progress.event({"event": "retry" if again else "failed", **event, "error": o.error})
        return again

    def table(self) -> str:
        rows = [("shot", "status", "tries", "frames", "seconds", "error")]
        for index, o in self.outcomes.items():
            rows.append((self.shots[index].name, o.status, str(o.tries or ""),
                         "" if o.frames is None else str(o.frames),
                         "" if o.seconds is None else f"{o.seconds:.1f}", o.error))
        widths = [max(len(r[k]) for r in rows) for k in range(5)]
        return "\n".join("  ".join(c.ljust(w) for c, w in zip(r[:5], widths)) + "  " + r[5] for r in rows)

    def counts(self) -> dict:
        counts = {}
        for o in self.outcomes.values():
            counts[o.status] = counts.get(o.status, 0) + 1
        return counts


# --- the in-process engine ----------------------------------------------------------


def run_in_process(shots: list[BatchShot], batch: BatchRun, threads: int | None = None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)
    models = ModelCache()
    for shot in shots:
        while batch.finished(shot, run_shot(shot, models, batch.report)):
            pass


# --- the command -----------------------------------------------------------------------


def run_batch(args) -> int:
    err = sys.stderr
    if args.engine != "ray" and (args.workers or args.ray_address or args.ray_dashboard):
        print("sam2long batch: error: --workers, --ray-address and --ray-dashboard go with --engine ray", file=err)
        return EXIT_BAD_INPUT
    if args.ray_address and args.ray_dashboard:
        print("sam2long batch: error: --ray-dashboard is for the local Ray; a cluster given by --ray-address "
              "has its own dashboard (ray start --include-dashboard)", file=err)
        return EXIT_BAD_INPUT
    try:
        shots = load_job(args.jobs)
        if args.engine == "ray":
            import_ray(local=not args.ray_address)
    except (JobError, EngineError) as e:
        print(f"sam2long batch: error: {e}", file=err)
        return exit_code(e)
    done = set() if args.force else {s.index for s in shots if is_done(s)}
    if args.check:
        print(f"sam2long batch: {args.jobs}: {len(shots)} shot(s) OK, {len(done)} already done", file=err)
        return EXIT_OK

    t0 = time.perf_counter()
    if done and not args.quiet:
        print(f"sam2long batch: {len(done)} of {len(shots)} shot(s) already done, skipped "
              f"(their outputs record the same inputs and settings; --force redoes them)", file=err)
    progress = Progress(len(shots), args.json, args.quiet)
    batch = BatchRun(shots, args.retries, progress)
    todo = []
    for shot in shots:
        if shot.index in done:
            batch.skip(shot)
        else:
            todo.append(shot)
    interrupted = False
    try:
        if todo and args.engine == "ray":
            run_on_ray(todo, batch, args.workers, args.ray_address, args.threads, args.ray_dashboard)
        elif todo:
            run_in_process(todo, batch, args.threads)
    except KeyboardInterrupt:
        interrupted = True
    except EngineError as e:
        progress.close()
        print(f"sam2long batch: error: {e}", file=err)
        return exit_code(e)
    finally:
        progress.close()
        for shot in todo:
            o = batch.outcomes[shot.index]
            if o.status != "done":
                remove_partials(shot.output)
                if interrupted:
                    o.status = "interrupted"

    counts = batch.counts()
    if args.json:
        print(json.dumps({"summary": {**counts, "seconds": round(time.perf_counter() - t0, 3)}}), flush=True)
    print(batch.table(), file=err if args.json else sys.stdout, flush=True)
    if interrupted:
        print("sam2long batch: interrupted; finished shots are kept, run the same command to do the rest",
              file=err)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if counts.get("failed") else EXIT_OK
