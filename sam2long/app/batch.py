"""`sam2long batch JOBS.yaml`: track many shots, here or on a Ray cluster.

The job file is read and checked by `sam2long.jobs`. Each shot runs through the same
code as `sam2long track` (`cli.run_track`), with a model cache so that a worker loads
each checkpoint once. A shot writes into `<output>.partial-<random>` next to its output
and that folder is renamed to `<output>` only when the shot is complete, with
`sam2long_job.json` inside recording what made it; a rerun skips outputs whose record
still matches.

Engines: in-process (default), one shot after another; or Ray (`--engine ray`), with
one long-lived actor per worker holding the models, shots submitted through
`ray.util.ActorPool`. A worker that dies (killed, out of memory) raises
`ActorDiedError` for the shot it held: that shot is counted as a failed try and
resubmitted, and a fresh actor takes the dead one's place in the pool. Ray is imported
only for `--engine ray`.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import io
import json
import math
import os
import re
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from . import cli
from .jobs import JobError, Shot, is_done, load_job, mark_in_progress, write_record, written_by_us

EXIT_FAILED = 1
POLL_S = 0.25  # how often the Ray engine refreshes the progress while waiting
LOCAL_OBJECT_STORE = 128 * 2**20  # only shot descriptions and results travel through it
RAY_LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray binds its local cluster to 127.0.0.1

BATCH_EPILOG = """\
job file (YAML or JSON; relative paths are relative to the job file):

  defaults: {checkpoint: sam2.1_hiera_large, pathways: 3}
  shots:
    - input: shots/sh010/plate.mp4        # anything `sam2long track` reads
      output: mattes/sh010                # the layout `sam2long track --out` writes
      prompts:
        - {object: 1, frame: 0, point: [410, 220]}
        - {object: 1, frame: 0, point: [500, 300], label: 0}
        - {object: 2, frame: 40, box: [350, 120, 500, 400]}
        - {object: 3, frame: 0, mask: sh010_obj3.png}
    - {input: shots/sh020/plate, output: mattes/sh020, reverse: true,
       prompts: [{frame: 99, point: [640, 360]}]}

  Any `sam2long track` option can be set in `defaults` or per shot, with its long
  name (`iou-threshold` or `iou_threshold`); a switch takes true or false. A prompt
  without `object` or `frame` is for object 1 on frame 0. `name` labels a shot in
  the progress and the table (default: its output).

engines:
  in-process (default): one shot after another in this process, each checkpoint
    loaded once.
  --engine ray: a local Ray started for the run, listening on 127.0.0.1 only
    (its dashboard only with --ray-dashboard), with --workers N (default one per
    GPU; without a GPU one per 2 cores, each with cores / N torch threads, or
    --threads), or an existing cluster with --ray-address ADDRESS (e.g. auto, or
    ray://head:10001). On a cluster, every node needs sam2long installed and the
    same paths to the inputs, the job file's folder and the outputs (a shared
    filesystem, as on a render farm).

failures:
  A shot writes into OUTPUT.partial-XXXX and is renamed to OUTPUT when complete, so a
  half-done shot never looks done. A shot that fails (or whose worker dies) is tried
  again, up to --retries times; a shot refused as bad input (exit code 2 of `sam2long
  track`) is not. A rerun skips shots whose output records the same inputs and
  settings (OUTPUT/sam2long_job.json); --force redoes them. The run ends with a table
  and exits 1 if any shot failed, 2 if the job file is refused, 130 on Ctrl-C.

refused, with or without --force (batch never destroys what it did not write):
  an output that is, holds or lies inside an input (a video, a frame folder, a
  pattern's folder), a mask file, the checkpoint, the job file or another shot's
  output (symlinks resolved); an existing output folder without sam2long_job.json.
  --force replaces only outputs that sam2long wrote.
"""


def add_batch_parser(sub) -> None:
    b = sub.add_parser("batch", help="track many shots listed in a job file, here or on a Ray cluster",
                       description="Track every shot of a job file, each as `sam2long track` would, and "
                                   "skip the shots that are already done.",
                       epilog=BATCH_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("jobs", metavar="JOBS", help="the job file (.yaml, .yml or .json)")
    b.add_argument("--check", action="store_true", help="check the job file, say how many shots are done, exit")
    b.add_argument("--force", action="store_true", help="redo shots that are already done")
    b.add_argument("--retries", type=cli._nonneg_int, default=1, metavar="N",
                   help="tries after a failed one, per shot (default 1)")
    b.add_argument("--engine", choices=("in-process", "ray"), default="in-process",
                   help="where the shots run (default in-process)")
    b.add_argument("--workers", type=cli._pos_int, default=None, metavar="N",
                   help="with --engine ray: workers (default one per GPU, else one per 2 cores)")
    b.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="with --engine ray: an existing Ray cluster (shared filesystem needed)")
    b.add_argument("--ray-dashboard", action="store_true",
                   help="with --engine ray and no --ray-address: start Ray's dashboard too (on 127.0.0.1)")
    b.add_argument("--threads", type=cli._pos_int, default=None, metavar="N",
                   help="torch CPU threads per worker (default: torch's own in-process; for Ray CPU workers, "
                        "the cores shared out among the workers)")
    b.add_argument("--quiet", action="store_true", help="no progress bar or per-shot lines")
    b.add_argument("--json", action="store_true",
                   help="one JSON line per shot event (started, done, retry, failed, skipped; with the Unix "
                        "time) on stdout, then a summary line")


# --- one shot, in whichever process runs it ---------------------------------------------


class ModelCache:
    """Models by (checkpoint, device, precision, image size): one load each per worker."""

    def __init__(self):
        self.models = {}

    def __call__(self, args):
        key = (args.checkpoint, args.device, args.precision, args.image_size)
        if key not in self.models:
            from ..loading import load_model

            self.models[key] = load_model(args.checkpoint, device=args.device, precision=args.precision,
                                          image_size=args.image_size, progress=False)
        return self.models[key]


class _FrameLines:
    """stdout of a track run with --json: one callback per frame line; the summary is kept."""

    def __init__(self, on_frame):
        self.on_frame = on_frame
        self.pending = ""
        self.summary = {}

    def write(self, text: str) -> int:
        self.pending += text
        while "\n" in self.pending:
            line, self.pending = self.pending.split("\n", 1)
            if line.strip():
                record = json.loads(line)
                if "summary" in record:
                    self.summary = record["summary"]
                else:
                    self.on_frame()
        return len(text)

    def flush(self) -> None:
        pass


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
    from ..writers import ordinary_mode

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


def run_shot(shot: Shot, load_model, report) -> dict:
    """Track one shot into a temporary folder, then rename it to the output.

    `report(event)` receives {"event": "started" | "frame", "shot": index, ...}.
    Returns {"shot", "status": "done" | "failed", "frames", "seconds", "error", "retry", "worker"}.
    """
    out = Path(shot.output)
    remove_partials(out)
    partial = None  # made by this try, once the inputs are checked (only then removed below)
    worker = f"{socket.gethostname()}:{os.getpid()}"
    result = {"shot": shot.index, "worker": worker}
    report({"event": "started", "shot": shot.index, "worker": worker})
    lines = _FrameLines(lambda: report({"event": "frame", "shot": shot.index}))
    err = io.StringIO()
    t0 = time.perf_counter()
    try:
        args = shot.track_args(str(out))  # --out is set to the try's own folder below
        try:  # checked again here: this machine's device, the files as this machine sees them
            cli.validate_inputs(args)
            model = load_model(args)
        except (ValueError, FileNotFoundError) as e:  # bad input, checkpoint: another try would fail too
            return {**result, "status": "failed", "error": str(e), "retry": False}
        partial = new_partial(out)
        args.out = str(partial)
        mark_in_progress(partial, worker)
        with contextlib.redirect_stderr(err):
            rc = cli.run_track(args, model=model, stdout=lines)
        if rc == cli.EXIT_INTERRUPTED:
            raise KeyboardInterrupt
        if rc != cli.EXIT_OK:  # refused as bad input: another try would be refused too
            messages = [line for line in err.getvalue().splitlines() if line.strip()]
            error = messages[-1].removeprefix("sam2long: error: ") if messages else f"exit code {rc}"
            return {**result, "status": "failed", "error": error, "retry": False}
        result.update(frames=lines.summary.get("frames"), seconds=round(time.perf_counter() - t0, 3))
        write_record(partial, shot, {"frames": result["frames"], "seconds": result["seconds"],
                                     "worker": worker, "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        _publish(partial, out)
        return {**result, "status": "done"}
    except OutputInTheWay as e:
        return {**result, "status": "failed", "error": str(e), "retry": False}
    except Exception as e:  # noqa: BLE001 - any failure of one shot is that shot's, reported in the table
        return {**result, "status": "failed", "error": f"{type(e).__name__}: {e}", "retry": True}
    finally:
        if partial is not None:  # already renamed when the shot is done; rmtree never follows a link
            shutil.rmtree(partial, ignore_errors=True)


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


class Run:
    """The state of every shot; decides which failed tries are tried again."""

    def __init__(self, shots: list[Shot], retries: int, progress: Progress):
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

    def skip(self, shot: Shot) -> None:
        self.outcomes[shot.index].status = "skipped"
        self.progress.event({"event": "skipped", "shot": shot.name, "output": shot.output})

    def finished(self, shot: Shot, result: dict) -> bool:
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


# --- engines ---------------------------------------------------------------------------


def run_in_process(shots: list[Shot], run: Run, threads: int | None = None) -> None:
    if threads:
        import torch

        torch.set_num_threads(threads)
    models = ModelCache()
    for shot in shots:
        while run.finished(shot, run_shot(shot, models, run.report)):
            pass


class EngineError(Exception):
    """The engine cannot run at all (Ray missing, workers that cannot start): exit code 2."""


def import_ray(local: bool = False):
    """Ray, imported; `local`: for a cluster that `start_local_ray` will start here."""
    if local and "ray" not in sys.modules:
        # Read by Ray when it is imported: a single-machine Ray whose servers all listen on
        # 127.0.0.1 (Ray's own mode on macOS and Windows), not on the machine's network address.
        os.environ[RAY_LOOPBACK_ONLY] = "0"
    try:
        import ray
    except ImportError:
        raise EngineError("--engine ray needs Ray: pip install 'sam2long[ray]' (or pip install ray), "
                          "or leave out --engine to run the shots in this process") from None
    return ray


class _ShotWorker:
    """A Ray actor: keeps its models and runs the shots it is given, one at a time."""

    def __init__(self, events, threads: int | None):
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.events = events
        self.models = ModelCache()

    def actor_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_actor_id()

    def run(self, shot: Shot) -> dict:
        return run_shot(shot, self.models, self.events.put)


def start_local_ray(ray, dashboard: bool = False, **options):
    """A Ray cluster for this run on this machine only. Ray moves cloudpickled objects
    and has no authentication: every server listens on 127.0.0.1, and the dashboard
    (also on 127.0.0.1) runs only when asked for. Returns Ray's context."""
    options = {"object_store_memory": LOCAL_OBJECT_STORE, "logging_level": "WARNING", **options}
    context = ray.init(address="local", include_dashboard=dashboard, dashboard_host="127.0.0.1", **options)
    host = ray.get_runtime_context().gcs_address.rsplit(":", 1)[0].strip("[]")
    if host not in ("127.0.0.1", "::1"):
        ray.shutdown()
        raise EngineError(f"the local Ray would listen on {host}, not on 127.0.0.1 only (Ray was imported "
                          f"before sam2long could ask for that): set {RAY_LOOPBACK_ONLY}=0 before the run, or "
                          f"start a cluster yourself and give --ray-address")
    return context


def worker_shape(resources: dict, workers: int | None):
    """(workers, Ray resources of one worker, torch threads of a CPU worker)."""
    gpus, cpus = resources.get("GPU", 0), resources.get("CPU", 1)
    if gpus >= 1:
        n = workers or int(gpus)
        return n, {"num_gpus": min(1.0, math.floor(gpus / n * 1000) / 1000)}, None
    n = workers or max(1, int(cpus) // 2)
    # rounded down so that n workers always fit in the cluster's CPUs
    return n, {"num_cpus": math.floor(cpus / n * 1000) / 1000}, max(1, int(cpus // n))


def run_on_ray(shots: list[Shot], run: Run, workers: int | None = None, address: str | None = None,
               threads: int | None = None, dashboard: bool = False) -> None:
    ray = import_ray(local=not address)
    from ray.exceptions import ActorDiedError
    from ray.util import ActorPool
    from ray.util.queue import Queue

    started = not ray.is_initialized()
    if started and address:
        ray.init(address=address, logging_level="WARNING")
    elif started:
        start_local_ray(ray, dashboard)
    try:
        count, resources, cpu_threads = worker_shape(ray.cluster_resources(), workers)
        threads = threads or cpu_threads
        events = Queue(actor_options={"num_cpus": 0})
        worker_class = ray.remote(max_restarts=0, **resources)(_ShotWorker)
        actor_ids = {}

        def start(n):
            actors = [worker_class.remote(events, threads) for _ in range(n)]
            try:
                actor_ids.update(zip(actors, ray.get([a.actor_id.remote() for a in actors])))
            except ray.exceptions.RayActorError as e:
                raise EngineError(f"a Ray worker could not start ({str(e).splitlines()[0]}): every node needs "
                                  f"sam2long and its dependencies installed") from None
            return actors

        pool = ActorPool(start(count))
        holding = {}  # actor id -> the shot it was given last

        def call(actor, shot):
            holding[actor_ids[actor]] = shot
            return actor.run.remote(shot)

        def drain():
            pending = events.qsize()
            if pending:
                for event in events.get_nowait_batch(pending):
                    run.report(event)

        for shot in shots:
            pool.submit(call, shot)
        while pool.has_next():
            try:
                result = pool.get_next_unordered(timeout=POLL_S)
                shot = run.shots[result["shot"]]
            except TimeoutError:
                drain()
                continue
            except ActorDiedError as e:  # the pool dropped the dead actor: replace it
                shot = holding.pop(e.actor_id)
                pool.push(start(1)[0])
                result = {"status": "failed", "retry": True,
                          "error": "its worker died (process killed or out of memory)"}
            drain()
            if run.finished(shot, result):
                pool.submit(call, shot)
    finally:
        if started:
            ray.shutdown()


# --- the command -----------------------------------------------------------------------


def run_batch(args) -> int:
    err = sys.stderr
    if args.engine != "ray" and (args.workers or args.ray_address or args.ray_dashboard):
        print("sam2long batch: error: --workers, --ray-address and --ray-dashboard go with --engine ray", file=err)
        return cli.EXIT_BAD_INPUT
    if args.ray_address and args.ray_dashboard:
        print("sam2long batch: error: --ray-dashboard is for the local Ray; a cluster given by --ray-address "
              "has its own dashboard (ray start --include-dashboard)", file=err)
        return cli.EXIT_BAD_INPUT
    try:
        shots = load_job(args.jobs)
        if args.engine == "ray":
            import_ray(local=not args.ray_address)
    except (JobError, EngineError) as e:
        print(f"sam2long batch: error: {e}", file=err)
        return cli.EXIT_BAD_INPUT
    done = set() if args.force else {s.index for s in shots if is_done(s)}
    if args.check:
        print(f"sam2long batch: {args.jobs}: {len(shots)} shot(s) OK, {len(done)} already done", file=err)
        return cli.EXIT_OK

    t0 = time.perf_counter()
    if done and not args.quiet:
        print(f"sam2long batch: {len(done)} of {len(shots)} shot(s) already done, skipped "
              f"(their outputs record the same inputs and settings; --force redoes them)", file=err)
    progress = Progress(len(shots), args.json, args.quiet)
    run = Run(shots, args.retries, progress)
    todo = []
    for shot in shots:
        if shot.index in done:
            run.skip(shot)
        else:
            todo.append(shot)
    interrupted = False
    try:
        if todo and args.engine == "ray":
            run_on_ray(todo, run, args.workers, args.ray_address, args.threads, args.ray_dashboard)
        elif todo:
            run_in_process(todo, run, args.threads)
    except KeyboardInterrupt:
        interrupted = True
    except EngineError as e:
        progress.close()
        print(f"sam2long batch: error: {e}", file=err)
        return cli.EXIT_BAD_INPUT
    finally:
        progress.close()
        for shot in todo:
            o = run.outcomes[shot.index]
            if o.status != "done":
                remove_partials(shot.output)
                if interrupted:
                    o.status = "interrupted"

    counts = run.counts()
    if args.json:
        print(json.dumps({"summary": {**counts, "seconds": round(time.perf_counter() - t0, 3)}}), flush=True)
    print(run.table(), file=err if args.json else sys.stdout, flush=True)
    if interrupted:
        print("sam2long batch: interrupted; finished shots are kept, run the same command to do the rest",
              file=err)
        return cli.EXIT_INTERRUPTED
    return EXIT_FAILED if counts.get("failed") else cli.EXIT_OK
