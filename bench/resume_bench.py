"""Resume bench (issue 20): a long synthetic shot tracked through the Track node's code
(`nodes.track.track_into_store`, against the test suite's fake ComfyUI modules), then re-queued
with one more correction late in the shot.

    PYTHONPATH=. python bench/run.py --sections resume       # ~5 min on one CPU core
    PYTHONPATH=. python bench/run.py --sections resume --resume-frames 300   # a quick look

Measured: wall time of the first run and of the re-queue, frames each tracked, time spent
writing snapshots, their disk beside the mattes', and the process's resident memory
(sampled every frame) before and during both runs. With --resume-check the re-queued
masks are compared with a fresh run's with all the prompts (tests/test_nodes_resume.py
checks the same on short clips).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
W, H, IMAGE_SIZE = 96, 64, 64


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _write_shot(path: Path, n: int) -> None:
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=24)
        s.width, s.height, s.pix_fmt = W, H, "yuv420p"
        for i in range(n):
            f = rng.integers(0, 60, (H, W, 3), dtype=np.uint8)
            x = 4 + (i * 2) % (W - 28)
            f[14:34, x:x + 20] = (230, 80, 40)
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)


def _folder_bytes(folder: Path, skip: str | None = None) -> int:
    total = 0
    for p in folder.rglob("*"):
        if p.is_file() and (skip is None or skip not in p.parts):
            total += p.stat().st_size
    return total


def _memories(snaps) -> dict:
    """Spatial memories and other tensors held by the last snapshot, to scale it to 1024 px."""
    snap = snaps.load(snaps.frames()[-1])
    held = snap.run.held_tensors()
    mems = [t for t in held if t.dim() == 3 and t.dtype.is_floating_point and t.element_size() == 2]
    return {"memories": len(mems), "memory_bytes": sum(t.numel() * 2 for t in mems),
            "other_bytes": sum(t.numel() * t.element_size() for t in held) - sum(t.numel() * 2 for t in mems)}


def _full_size(args, frames: int) -> dict:
    """One snapshot of the tracking state at SAM 2's 1024 px: its size and the time to write it,
    after `frames` frames of P=3 (the memory bank is full from the 8th)."""
    import torch

    from sam2long import TensorFrames, Tracker
    from sam2long.engine.snapshots import SnapshotDir
    from sam2long.models.model import LoadedModel, build_net

    torch.manual_seed(0)
    model = LoadedModel.from_net(build_net(args.variant, image_size=1024), args.variant, device="cpu")
    g = torch.Generator().manual_seed(0)
    clip = (torch.rand(frames + 1, 540, 960, 3, generator=g) * 255).to(torch.uint8)
    tracker = Tracker(model)
    tracker.add_points(0, 0, [[400.0, 250.0]])
    store = SnapshotDir(tempfile.mkdtemp(prefix="sam2long_resume_1024_"))
    steps = []
    t0 = time.perf_counter()
    for _ in tracker.propagate(TensorFrames(clip), snapshot_every=frames, snapshot_dir=store,
                               on_step=lambda t: steps.append(time.perf_counter())):
        pass
    per_frame = (steps[-1] - steps[0]) / max(1, len(steps) - 1)
    return {"frames": frames, "bytes": store.nbytes(), "write_s": store.seconds, "frame_s": per_frame,
            "total_s": time.perf_counter() - t0}


def section(args) -> list:
    frames, at = args.resume_frames, args.resume_frames * 9 // 10
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    import torch

    import comfy_fake

    work = Path(tempfile.mkdtemp(prefix="sam2long_resume_bench_"))
    (work / "models").mkdir()
    comfy_fake.install(str(work / "models"))
    torch.set_num_threads(args.threads)
    from nodes import track as track_node
    from nodes.prompts import PromptChain, PromptEntry
    from sam2long.media.shot import open_shot
    from sam2long.models.model import LoadedModel, build_net

    torch.manual_seed(0)
    model = LoadedModel.from_net(build_net(args.variant, image_size=IMAGE_SIZE), args.variant, device="cpu")
    _write_shot(work / "shot.mp4", frames)
    shot = open_shot(work / "shot.mp4")
    first = PromptChain((PromptEntry(obj_id=0, frame=0, points=((14.0, 24.0),), labels=(1,)),))
    corrected = first + PromptChain((PromptEntry(obj_id=0, frame=at, points=((40.0, 24.0),), labels=(1,)),))
    spill = work / "spill"

    def timed(prompts):
        samples, steps = [_rss()], []

        def on_step(t):
            steps.append(t)
            samples.append(_rss())

        t0 = time.perf_counter()
        track, _, _ = track_node.track_into_store(model, None, prompts, on_step=on_step, shot=shot, spill_dir=str(spill))
        return track, time.perf_counter() - t0, len(steps), max(samples), samples[0]

    track1, t_first, n_first, rss_first, rss_start = timed(first)
    stored = track_node._run_cache().find(track_node._run_cache()._runs[-1].key, model)
    snaps = stored.snapshots
    track2, t_again, n_again, rss_again, _ = timed(corrected)
    store2 = track_node._run_cache()._runs[-1].snapshots
    result = {
        "frames": frames, "correction_at": at, "frame_size": f"{W}x{H}", "image_size": IMAGE_SIZE,
        "variant": args.variant, "pathways": 3, "snapshot_every": track_node.SNAPSHOT_EVERY,
        "snapshots_kept": track_node.SNAPSHOTS_KEPT,
        "first_s": t_first, "first_frames": n_first, "again_s": t_again, "again_frames": n_again,
        "snapshot_write_s": snaps.seconds, "snapshots": len(snaps.frames()), "snapshot_bytes": snaps.nbytes(),
        "snapshot_spacing": track_node.SNAPSHOT_EVERY * snaps.spacing,
        "mattes_bytes": _folder_bytes(track1.folder, skip="snapshots"),
        "second_store_snapshots": len(store2.frames()),
        "rss_start": rss_start, "rss_first_max": rss_first, "rss_again_max": rss_again,
        "state_bytes_per_snapshot": snaps.nbytes() / max(1, len(snaps.frames())),
        **_memories(snaps),
    }
    if args.resume_full_size:
        result["full_size"] = _full_size(args, args.resume_full_size)
    if args.resume_check:
        track_node._RUNS = None
        fresh, t_fresh, _, _, _ = timed(corrected)
        result["identical"] = bool(torch.equal(fresh.union(), track2.union()))
        result["fresh_s"] = t_fresh
    comfy_fake.uninstall()
    return [result]


def render(results: list, fmt_bytes) -> list:
    L = []
    for r in results:
        ratio = r["again_s"] / r["first_s"]
        L += [
            f"A {r['frames']}-frame synthetic shot ({r['frame_size']} H.264, a square moving over noise), "
            f"random-weight `{r['variant']}` at {r['image_size']} px, P={r['pathways']}, one object, CPU; "
            f"through `nodes.track.track_into_store` (the Track node's code, fake ComfyUI). Then re-queued with one "
            f"more click on frame {r['correction_at']}. Snapshots every {r['snapshot_every']} frames, at most "
            f"{r['snapshots_kept']} kept per run (the spacing doubles beyond).", "",
            "| | first run | re-queue with a correction |", "|---|---|---|",
            f"| wall time | {r['first_s']:.1f} s | {r['again_s']:.1f} s ({ratio:.1%} of the first run) |",
            f"| frames tracked | {r['first_frames']} | {r['again_frames']} |",
            f"| resident memory, max while tracking (before: {fmt_bytes(r['rss_start'])}) | "
            f"{fmt_bytes(r['rss_first_max'])} | {fmt_bytes(r['rss_again_max'])} |",
            "",
            f"- Snapshot writing: {r['snapshot_write_s']:.2f} s of the first run's {r['first_s']:.1f} s "
            f"({r['snapshot_write_s'] / r['first_s']:.1%}).",
            f"- Disk: {r['snapshots']} snapshots kept (spacing {r['snapshot_spacing']} frames at the end), "
            f"{fmt_bytes(r['snapshot_bytes'])} ({fmt_bytes(r['state_bytes_per_snapshot'])} each), beside "
            f"{fmt_bytes(r['mattes_bytes'])} of mattes.",
        ]
        if "full_size" in r:
            f = r["full_size"]
            L.append(f"- At SAM 2's 1024 px (same variant, random weights, P=3, a 960x540 noise clip, CPU): a "
                     f"snapshot after {f['frames']} frames (memory bank full) is {fmt_bytes(f['bytes'])} for one "
                     f"object, written in {f['write_s']:.2f} s, against {f['frame_s']:.1f} s per tracked frame "
                     f"here; every {r['snapshot_every']} frames that is "
                     f"{f['write_s'] / (r['snapshot_every'] * f['frame_s']):.2%} of the tracking time on this CPU. "
                     "On a GPU a frame takes tens of milliseconds (not measured here: no GPU lent); at 30 ms a "
                     f"write this long every {r['snapshot_every']} frames would be "
                     f"{f['write_s'] / (r['snapshot_every'] * 0.03):.1%} (the write went to the page cache here; "
                     "a slow temp disk costs more).")
        if "identical" in r:
            L.append(f"- Masks of the re-queue identical to a fresh run with both prompts "
                     f"({r['fresh_s']:.1f} s): {r['identical']}.")
        if "full_size" in r:  # measured above: no estimate needed
            continue
        scale = (1024 // 16) ** 2 / (r["image_size"] // 16) ** 2
        at_1024 = r["memory_bytes"] * scale + r["other_bytes"] * scale  # the low-res masks scale alike
        L.append(f"- The last snapshot holds {r['memories']} spatial memories ({fmt_bytes(r['memory_bytes'])}) and "
                 f"{fmt_bytes(r['other_bytes'])} of pointers and pending masks. Both grow with the token grid, "
                 f"(image_size / 16)^2: at SAM 2's 1024 px the same state is about {fmt_bytes(at_1024)} per object "
                 f"and snapshot (an estimate from this count, not measured), so the cache's disk is bounded by "
                 "SNAPSHOTS_KEPT per run, RESUMABLE_RUNS runs and SNAPSHOT_DISK_BUDGET (`nodes/track.py`).")
    return L
