"""The `batch` section of bench/run.py: `sam2long batch` as a user runs it.

One job file of synthetic shots (a square moving over noise, written as H.264) and a
random-weight checkpoint, run with `--force --json` in a fresh process: in-process,
then on a local Ray started by the command with 1, 2 and 4 CPU workers, the
configurations interleaved round by round. The JSON events carry the time, so each run
splits into start-up (process start to the first shot started: imports, and for Ray
`ray.init` and the workers) and the shots phase (first shot started to last shot done;
the first shot of each worker includes its model load).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

CONFIGS = [("in-process", None), ("ray", 1), ("ray", 2), ("ray", 4)]


def make_job(folder: Path, shots: int, frames: int, image_size: int) -> Path:
    import av
    import numpy as np
    import torch

    from sam2long.models.model import build_net

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    torch.save({"model": build_net("sam2.1_hiera_tiny", image_size=image_size).state_dict()}, folder / "net.pt")
    rng = np.random.default_rng(0)
    h, w, size = 72, 96, 20
    entries = []
    for k in range(shots):
        path = folder / f"shot{k:02d}.mp4"
        with av.open(str(path), "w") as c:
            s = c.add_stream("libx264", rate=24)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            for i in range(frames):
                img = rng.integers(0, 90, (h, w, 3), dtype=np.uint8)
                x, y = 5 + (i * 2 + k) % (w - size - 5), 10 + i % 8
                img[y:y + size, x:x + size] = (230, 60, 40)
                for p in s.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        entries.append({"input": path.name, "output": f"out/shot{k:02d}", "no_preview": True,
                        "prompts": [{"object": 1, "frame": 0, "point": [15 + k % 3, 20]}]})
    job = folder / "job.json"
    job.write_text(json.dumps({"defaults": {"checkpoint": "net.pt", "image_size": image_size, "device": "cpu"},
                               "shots": entries}, indent=1))
    return job


def run_once(job: Path, root: Path, engine: str, workers: int | None) -> dict:
    argv = [sys.executable, "-m", "sam2long", "batch", str(job), "--force", "--json", "--quiet", "--threads", "1"]
    if engine == "ray":
        argv += ["--engine", "ray", "--workers", str(workers)]
    env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    t0 = time.time()
    p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=3600)
    wall = time.time() - t0
    events = [json.loads(line) for line in p.stdout.splitlines() if line.startswith("{")]
    started = [e["time"] for e in events if e.get("event") == "started"]
    done = [e for e in events if e.get("event") == "done"]
    out = {"engine": engine, "workers": workers, "rc": p.returncode, "wall_s": wall, "load": os.getloadavg()[0]}
    if p.returncode or not done:
        out["error"] = (p.stderr.strip().splitlines() or [f"rc {p.returncode}"])[-1]
        return out
    out.update(shots=len(done), startup_s=min(started) - t0, shots_s=max(e["time"] for e in done) - min(started),
               in_shot_s=[e["seconds"] for e in done], workers_seen=len({e["worker"] for e in done}))
    print(f"  batch {engine} workers={workers}: {wall:.0f}s (start-up {out['startup_s']:.1f}s, "
          f"shots {out['shots_s']:.1f}s)  load {out['load']:.1f}", flush=True)
    return out


def section(args, root: Path, shots: int = 6, frames: int = 6, image_size: int = 64, rounds: int = 2) -> list:
    """Every configuration `rounds` times, interleaved; one result per configuration."""
    try:
        import ray  # noqa: F401
        configs = CONFIGS
    except ImportError:
        print("  ray is not installed: measuring the in-process engine only", flush=True)
        configs = CONFIGS[:1]
    folder = Path(args.batch_dir)
    job = make_job(folder, shots, frames, image_size)
    runs = {c: [] for c in configs}
    for _ in range(rounds):
        for c in configs:
            runs[c].append(run_once(job, root, *c))
    spec = {"shots": shots, "frames": frames, "image_size": image_size, "variant": "sam2.1_hiera_tiny",
            "cores": os.cpu_count()}
    return [{"spec": {**spec, "engine": c[0], "workers": c[1]}, "runs": r} for c, r in runs.items()]


def _median(runs, key):
    values = [r[key] for r in runs if "error" not in r]
    return statistics.median(values) if values else float("nan")


def render(results: list) -> list[str]:
    first = results[0]["spec"]
    L = [f"{first['shots']} shots of {first['frames']} frames (96x72 H.264, one point each, P=3 default, no "
         f"preview), {first['variant']} with random weights at a {first['image_size']} px input (small, so the "
         f"engine overheads show), `sam2long batch --force --json --quiet --threads 1` in a fresh process, {first['cores']} "
         f"cores. Medians of the rounds; start-up = process start to the first shot started; shots phase = first "
         f"shot started to last shot done (each worker's first shot loads the model). One torch thread per "
         f"worker in every configuration (`--threads 1`), so one worker leaves the other core idle.", "",
         "| engine | workers | rounds | start-up s | shots phase s | s per shot (phase / shots) | mean in-shot s "
         "| shots/hour (phase) | shots/hour (end to end) | load (1 min) per round |",
         "|---|---|---|---|---|---|---|---|---|---|"]
    per_shot = {}
    for r in results:
        sp, runs = r["spec"], r["runs"]
        ok = [x for x in runs if "error" not in x]
        if not ok:
            L.append(f"| {sp['engine']} | {sp['workers'] or '-'} | error: {runs[0].get('error', '')[:80]} |" + " |" * 7)
            continue
        phase, wall, startup = _median(ok, "shots_s"), _median(ok, "wall_s"), _median(ok, "startup_s")
        n = ok[0]["shots"]
        in_shot = statistics.median(statistics.mean(x["in_shot_s"]) for x in ok)
        per_shot[(sp["engine"], sp["workers"])] = (startup, phase / n)
        L.append(f"| {sp['engine']} | {sp['workers'] or '-'} | {len(ok)} | {startup:.1f} | {phase:.1f} | "
                 f"{phase / n:.2f} | {in_shot:.2f} | {n / phase * 3600:.0f} | {n / wall * 3600:.0f} | "
                 f"{', '.join('%.1f' % x['load'] for x in runs)} |")
    base, ray1 = per_shot.get(("in-process", None)), per_shot.get(("ray", 1))
    if base and ray1:
        L += ["", f"Ray engine overhead against in-process, same shots, one worker: start-up "
                  f"**{ray1[0] - base[0]:+.1f} s** ({ray1[0]:.1f} s vs {base[0]:.1f} s), per shot "
                  f"**{ray1[1] - base[1]:+.2f} s** ({ray1[1]:.2f} s vs {base[1]:.2f} s)."]
    return L
