"""The Ray engine of `sam2long batch`: one long-lived actor per worker holding its models,
shots submitted through `ray.util.ActorPool`.

A worker that dies (killed, out of memory) raises `ActorDiedError` for the shot it held:
that shot is counted as a failed try and resubmitted, and a fresh actor takes the dead
one's place in the pool. A local Ray started for the run listens on 127.0.0.1 only. Ray is
imported only here, and only for `--engine ray`.
"""

from __future__ import annotations

import math
import os
import sys

from .run import BadInput
from .shot_runner import ModelCache, run_shot

POLL_S = 0.25  # how often the Ray engine refreshes the progress while waiting
LOCAL_OBJECT_STORE = 128 * 2**20  # only shot descriptions and results travel through it
RAY_LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # "0": Ray binds its local cluster to 127.0.0.1


class EngineError(BadInput):
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

    def run(self, shot) -> dict:
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


def run_on_ray(shots: list, batch, workers: int | None = None, address: str | None = None,
               threads: int | None = None, dashboard: bool = False) -> None:
    """Run `shots` on Ray; `batch` (a `batch.BatchRun`) gets every event and result and says
    which failed shots are tried again."""
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
                    batch.report(event)

        for shot in shots:
            pool.submit(call, shot)
        while pool.has_next():
            try:
                result = pool.get_next_unordered(timeout=POLL_S)
                shot = batch.shots[result["shot"]]
            except TimeoutError:
                drain()
                continue
            except ActorDiedError as e:  # the pool dropped the dead actor: replace it
                shot = holding.pop(e.actor_id)
                pool.push(start(1)[0])
                result = {"status": "failed", "retry": True,
                          "error": "its worker died (process killed or out of memory)"}
            drain()
            if batch.finished(shot, result):
                pool.submit(call, shot)
    finally:
        if started:
            ray.shutdown()
