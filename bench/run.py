"""Benchmark: plain SAM 2 (the `sam2` package's SAM2VideoPredictor) vs our engine with the
tree off, P=1 and P=3, on the same seeded random weights, clips and prompts.

    PYTHONPATH=. python bench/run.py --quick            # a few minutes on a CPU
    PYTHONPATH=. python bench/run.py --full             # long (10,000-frame runs)
    PYTHONPATH=. python bench/run.py --device cuda --precision bf16 [--compile] --sections gpu
    PYTHONPATH=. python bench/run.py --sections batch   # `sam2long batch`: in-process, Ray 1/2/4 workers

Every measured case runs in a fresh subprocess (so peak process memory is per system);
cases of one table are interleaved in rounds so that load changes hit all systems alike.
Results are merged into bench/results.json (by section) and rendered to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import batch_bench  # bench/batch_bench.py: this script's folder is first on sys.path
import resume_bench  # bench/resume_bench.py
import sam3_bench  # bench/sam3_bench.py (not "sam3": that name is the package's)

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
MEDIA = ROOT.parent / "shared" / "media"
PREDICTOR = "sam2.sam2_video_predictor.SAM2VideoPredictor"
SYSTEMS = {  # name -> description
    "sam2": "SAM2VideoPredictor (plain SAM 2, `sam2` package)",
    "off": "ours, tree off (TreeConfig.sam2())",
    "p1": "ours, tree on, P=1",
    "p3agree": "ours, P=3, uncertainty=0 (certain-frames rule: no diversity pick)",
    "p3": "ours, P=3 default (random net: every frame uncertain, diverse pathways)",
}


# ------------------------------------------------------------------------------------------
# Small helpers (used inside workers)


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def tensor_bytes(obj, seen=None) -> int:
    """Bytes of the distinct tensors reachable through dicts/lists/tuples."""
    import torch

    seen = set() if seen is None else seen
    if isinstance(obj, torch.Tensor):
        if id(obj) in seen:
            return 0
        seen.add(id(obj))
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v, seen) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v, seen) for v in obj)
    return 0


class SyntheticFrames:
    """A moving square over textured noise, synthesised on demand (no clip held in memory):
    a FrameSource of any length."""

    def __init__(self, n: int, height: int = 72, width: int = 96, size: int = 20, first_index: int = 0):
        self.n, self.height, self.width, self.size, self.first_index = n, height, width, size, first_index
        self.backgrounds, self._cache = 8, {}  # a few cached noise backgrounds, cycled

    def __len__(self):
        return self.n

    def frame(self, i: int):
        import torch

        key = i % self.backgrounds
        if key not in self._cache:
            g = torch.Generator().manual_seed(key)
            self._cache[key] = (torch.rand(self.height, self.width, 3, generator=g) * 90).to(torch.uint8)
        f = self._cache[key].clone()
        x = 5 + (i * 2) % (self.width - self.size - 5)
        y = 10 + (i % 8)
        f[y : y + self.size, x : x + self.size] = torch.tensor([230, 60, 40], dtype=torch.uint8)
        return f

    def frames(self, indices):
        for i in indices:
            yield i, self.frame(i)

    def prompt(self):
        return (5 + self.size // 2, 10 + self.size // 2)


def open_clip(name: str, n: int):
    """-> (FrameSource limited to the first n frames, prompt point)"""
    if name.startswith("synth"):
        src = SyntheticFrames(n, 1080, 1920, size=200) if name == "synth1080" else SyntheticFrames(n)
        return src, src.prompt()
    from sam2long.media.frames import open_frames

    src = open_frames(MEDIA / f"{name}.mp4")
    n = min(n, len(src))

    class Head:  # the first n frames of a streamed video
        height, width, first_index = src.height, src.width, src.first_index

        def __len__(self):
            return n

        def frames(self, indices):
            return src.frames(indices)

    return Head(), (src.width // 2, src.height // 2)


def percentile(xs, q):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


# ------------------------------------------------------------------------------------------
# Host-device synchronisation counter


@contextlib.contextmanager
def count_syncs(counter: Counter):
    """Count calls that synchronise with the device on CUDA, by call site: tensor -> host
    reads (.cpu .item .tolist .numpy bool() float() int()) and host -> device tensors
    built from Python data (torch.tensor(..., device=...)), which PyTorch copies with a
    stream sync. Reads of tensors already on the host (results of .cpu()) are not counted."""
    import torch

    names = ("cpu", "item", "tolist", "numpy", "__bool__", "__float__", "__int__")
    saved = {n: getattr(torch.Tensor, n) for n in names}
    saved_tensor = torch.tensor
    host = {}  # storage address -> tensor moved to the host (kept alive while counting)

    def site():
        f = sys._getframe(2)
        return f"{os.path.relpath(f.f_code.co_filename, ROOT) if str(ROOT) in f.f_code.co_filename else Path(f.f_code.co_filename).name}:{f.f_lineno}"

    def wrap(name):
        orig = saved[name]

        def w(self, *a, **k):
            if self.untyped_storage().data_ptr() not in host:
                counter[f"{name} @ {site()}"] += 1
            out = orig(self, *a, **k)
            if name == "cpu" and isinstance(out, torch.Tensor):
                # Views of it are host data too; holding it keeps its address from being reused.
                host[out.untyped_storage().data_ptr()] = out
            return out

        return w

    def tensor(*a, **k):
        if k.get("device") is not None:
            counter[f"torch.tensor(device=) @ {site()}"] += 1
        return saved_tensor(*a, **k)

    for n in names:
        setattr(torch.Tensor, n, wrap(n))
    torch.tensor = tensor
    try:
        yield counter
    finally:
        for n, f in saved.items():
            setattr(torch.Tensor, n, f)
        torch.tensor = saved_tensor


@contextlib.contextmanager
def count_ops(counter: Counter):
    """Count ATen operators dispatched, views excluded (they launch no kernel): on a GPU
    each is about one kernel launch, so this is the per-frame launch overhead, measured on
    any device."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Mode(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not func.is_view:
                counter[str(func.overloadpacket)] += 1
            return func(*args, **(kwargs or {}))

    with Mode():
        yield counter


# ------------------------------------------------------------------------------------------
# Workers: one case per fresh process


def make_model(spec, target=None):
    import torch

    from sam2long.models.model import LoadedModel, build_net

    torch.manual_seed(0)
    net = build_net(spec["variant"], spec["image_size"])
    if target is not None:
        other = build_net(spec["variant"], spec["image_size"], target=target)
        other.load_state_dict(net.state_dict())
        net = other
    model = LoadedModel.from_net(net, spec["variant"], device=spec["device"], precision=spec["precision"])
    if spec.get("compile"):
        compile_net(model.net, ours=target is None)
    return model


def compile_net(net, ours: bool):
    import torch

    import sam2long.engine.core as core

    net.image_encoder.forward = torch.compile(net.image_encoder.forward, dynamic=False)
    net.sam_mask_decoder.forward = torch.compile(net.sam_mask_decoder.forward, dynamic=True)
    if ours:  # our batched memory attention is a function over the sam2 module's layers
        core.memory_attention = torch.compile(core.memory_attention, dynamic=True)
    else:
        net.memory_attention.forward = torch.compile(net.memory_attention.forward, dynamic=True)


def tree_for(system):
    from sam2long.engine.tree import TreeConfig

    return {
        "off": TreeConfig.sam2(),
        "p1": TreeConfig(pathways=1),
        "p3agree": TreeConfig(pathways=3, uncertainty=0.0),
        "p3": TreeConfig(pathways=3),
    }[system]


def worker_track(spec) -> dict:
    """Track one clip with one system; per-frame times, memory, state bytes at samples."""
    import torch

    torch.set_num_threads(spec["threads"])
    cuda = spec["device"].startswith("cuda")
    samples = set(spec.get("samples", []))
    src, point = open_clip(spec["clip"], spec["frames"])
    n = len(src)
    stamps, state_at, rss_at, units = [], {}, {}, []
    cpu_stamps = []  # process CPU time: with one thread, insensitive to other jobs on the box
    counter, ops = Counter(), Counter()
    ops_at = []  # operators dispatched so far, at each frame's end
    sync_cm = count_syncs(counter) if spec.get("syncs") else contextlib.nullcontext()
    ops_cm = count_ops(ops) if spec.get("syncs") else contextlib.nullcontext()
    extra = {}
    base = {}

    def tick():
        if cuda and not spec.get("syncs"):
            torch.cuda.synchronize()
        stamps.append(time.perf_counter())
        cpu_stamps.append(time.process_time())
        ops_at.append(sum(ops.values()))
        if len(stamps) == 1:  # RSS growth is counted from the first (prompt) frame on
            base["rss"] = rss_bytes()

    if spec["system"] == "sam2":
        import sam2.sam2_video_predictor as svp

        from sam2long.engine.core import InferenceCore

        model = make_model(spec, target=PREDICTOR)
        pred, core = model.net, InferenceCore(model)
        t0 = time.perf_counter()

        def load(**kw):  # SAM 2 loads (and keeps) every frame, preprocessed as our engine does
            with torch.inference_mode():
                imgs = torch.cat([core.preprocess(f) for _, f in src.frames(range(n))])
            return imgs, src.height, src.width

        svp.load_video_frames = load
        with torch.inference_mode(), model.autocast():
            state = pred.init_state(video_path="unused")
            extra["init_s"] = time.perf_counter() - t0
            extra["images_bytes"] = tensor_bytes(state["images"])
            pred.add_new_points_or_box(state, 0, 1, points=[point], labels=[1])
            with sync_cm, ops_cm:
                for k, (t, _, masks) in enumerate(pred.propagate_in_video(state)):
                    _ = (masks[0, 0] > 0).cpu()  # to the host, as our tracker hands masks out
                    tick()
                    if k + 1 in samples:
                        held = {key: v for key, v in state.items() if key not in ("images",)}
                        state_at[k + 1] = tensor_bytes(held)
                        rss_at[k + 1] = rss_bytes() - base["rss"]
                    units.append(1)
    else:
        from sam2long.engine.tracker import Tracker

        model = make_model(spec)
        tracker = Tracker(model, tree_for(spec["system"]))
        tracker.add_points(0, 1, [point], [1])
        orig_track = tracker.core.track

        def track(ff, plans, *rest):
            units.append(len(plans))
            return orig_track(ff, plans, *rest)

        tracker.core.track = track

        def on_step(t):
            tick()
            k = len(stamps)
            if k in samples:
                state_at[k] = tracker.state_nbytes()
                rss_at[k] = rss_bytes() - base["rss"]

        with sync_cm, ops_cm:
            for r in tracker.propagate(src, on_step=on_step):
                pass
    dts = [b - a for a, b in zip(stamps, stamps[1:])]  # frame 0 (the prompt frame) excluded
    warm = spec.get("warmup", 0)  # first frames dropped: CUDA/compile warm-up and the memory filling up
    extra["warmup_s"], dts = sum(dts[:warm]), dts[warm:]
    out = {
        "spec": spec,
        "frames": len(stamps),
        "dts": dts,
        "cpu_dts": [b - a for a, b in zip(cpu_stamps, cpu_stamps[1:])],
        "state_at": state_at,
        "rss_at": rss_at,
        "peak_rss": peak_rss_bytes(),
        "units_mean": sum(units) / max(1, len(units)),
        "units_max": max(units, default=0),
        **extra,
    }
    if cuda:
        out["peak_gpu"] = torch.cuda.max_memory_allocated()
    if spec.get("syncs"):
        tracked = max(1, len(stamps))
        out["syncs"] = dict(counter)
        out["syncs_per_frame"] = sum(counter.values()) / tracked
        per_frame = [b - a for a, b in zip(ops_at, ops_at[1:])]  # the prompt frame excluded
        out["ops_median"] = percentile(per_frame, 0.5)
        out["ops_top"] = {k: v / tracked for k, v in ops.most_common(8)}
    return out


def worker_micro(spec) -> dict:
    """Batched track step (3 distinct memory plans in one call) vs 3 calls of one plan,
    and the same for the memory commit, timed interleaved on one frame's features."""
    import torch

    from sam2long.engine.tracker import Tracker

    torch.set_num_threads(spec["threads"])
    cuda = spec["device"].startswith("cuda")
    model = make_model(spec)
    src, point = open_clip(spec["clip"], spec["frames"])
    tracker = Tracker(model, tree_for("p3"))
    tracker.add_points(0, 1, [point], [1])
    core = tracker.core
    grabbed = {}
    orig = core.track

    def track(ff, plans, *rest):
        grabbed["ff"], grabbed["plans"] = ff, plans
        return orig(ff, plans, *rest)

    core.track = track
    for _ in tracker.propagate(src):
        pass
    ff, plans = grabbed["ff"], grabbed["plans"]

    def timed(fn):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        r = fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - t0, r

    res = {"batched_track": [], "single_track": [], "batched_commit": [], "single_commit": []}
    with torch.inference_mode(), model.autocast():
        for _ in range(spec["repeats"]):
            dt, dec = timed(lambda: orig(ff, plans))
            res["batched_track"].append(dt)
            res["batched_commit"].append(timed(lambda: core.commit(ff, dec, [(u, 0) for u in range(len(plans))]))[0])
            s_t = s_c = 0.0
            for p in plans:
                dt, d1 = timed(lambda: orig(ff, [p]))
                s_t += dt
                s_c += timed(lambda: core.commit(ff, d1, [(0, 0)]))[0]
            res["single_track"].append(s_t)
            res["single_commit"].append(s_c)
    return {"spec": spec, "units": len(plans), "memories": [len(p.spatial) for p in plans], **res}


def worker_profile(spec) -> dict:
    """Where a frame's time goes: wall time of each engine stage, summed over frames."""
    import torch

    import sam2long.engine.core as core_mod
    from sam2long.engine.tracker import Tracker

    torch.set_num_threads(spec["threads"])
    cuda = spec["device"].startswith("cuda")
    model = make_model(spec)
    src, point = open_clip(spec["clip"], spec["frames"])
    tracker = Tracker(model, tree_for(spec["system"]))
    tracker.add_points(0, 1, [point], [1])
    core = tracker.core
    acc = Counter()

    def timer(name, fn):
        def w(*a, **k):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            r = fn(*a, **k)
            if cuda:
                torch.cuda.synchronize()
            acc[name] += time.perf_counter() - t0
            return r

        return w

    core.preprocess = timer("preprocess (resize, normalise)", core.preprocess)
    core.encode_image = timer("image encoder", core.encode_image)
    core._assemble = timer("memory assembly (_assemble)", core._assemble)
    core_mod.memory_attention = timer("memory attention", core_mod.memory_attention)
    net = model.net
    net.sam_mask_decoder.forward = timer("mask decoder", net.sam_mask_decoder.forward)
    net._encode_new_memory = timer("memory encoder (commit)", net._encode_new_memory)
    core.track = timer("_track total", core.track)
    stamps = []
    t_start = time.perf_counter()
    for r in tracker.propagate(src, on_step=lambda t: stamps.append(time.perf_counter())):
        pass
    total = time.perf_counter() - t_start
    return {"spec": spec, "total": total, "frames": len(stamps), "stages": dict(acc)}


# ------------------------------------------------------------------------------------------
# Host memory of the ComfyUI node path (fake ComfyUI modules, tests/comfy_fake)

HOSTMEM_CKPT = "random_sam2.1_hiera_tiny.pt"
HOSTMEM_SIZE = (1080, 1920)
HOSTMEM_SQUARE = 200  # side of the moving square, px


def hostmem_frame(i: int, background):
    """Frame i of the synthetic 1080p shot: a square moving over a smooth gradient."""
    h, w = HOSTMEM_SIZE
    f = background.copy()
    x = 100 + (i * 7) % (w - HOSTMEM_SQUARE - 200)
    y = 400 + (i % 50)
    f[y:y + HOSTMEM_SQUARE, x:x + HOSTMEM_SQUARE] = (230, 60, 40)
    return f


def make_hostmem_inputs(work: Path, frames: int) -> dict:
    """The synthetic shot (an mp4 written frame by frame with PyAV, never held whole) and a
    random-weight checkpoint in models/sam2; made once, reused by every case."""
    import av
    import numpy as np
    import torch

    from sam2long.models.model import build_net

    for d in ("models/sam2", "input", "output", "temp"):
        (work / d).mkdir(parents=True, exist_ok=True)
    out = {}
    ckpt = work / "models" / "sam2" / HOSTMEM_CKPT
    if not ckpt.exists():
        torch.manual_seed(0)
        torch.save({"model": build_net("sam2.1_hiera_tiny").state_dict()}, ckpt)
    clip = work / "input" / f"synth1080_{frames}.mp4"
    if not clip.exists():
        t0 = time.perf_counter()
        h, w = HOSTMEM_SIZE
        yy, xx = np.mgrid[0:h, 0:w]
        bg = (np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (w + h)], -1) // 2 + 30).astype(np.uint8)
        tmp = clip.with_name(".partial_" + clip.name)
        with av.open(str(tmp), "w", format="mp4") as c:
            s = c.add_stream("mpeg4", rate=24)
            s.width, s.height, s.pix_fmt = w, h, "yuv420p"
            for i in range(frames):
                for p in s.encode(av.VideoFrame.from_ndarray(hostmem_frame(i, bg), format="rgb24")):
                    c.mux(p)
            for p in s.encode():
                c.mux(p)
        os.replace(tmp, clip)
        out["generate_s"] = time.perf_counter() - t0
    out["clip"], out["clip_bytes"] = str(clip), clip.stat().st_size
    return out


def vm_hwm_bytes() -> int:
    """Peak RSS since the last reset_peak_rss() (VmHWM; ru_maxrss cannot be reset)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:  # "5" resets the peak RSS to the current RSS
        f.write("5")


def decode_like_core(path: str, n: int):
    """The first n frames as one IMAGE batch, the way core's GetVideoComponents builds it
    (VideoFromFile.get_components: a list of float frames, then torch.stack)."""
    import av
    import torch

    frames = []
    with av.open(path) as c:
        for f in c.decode(video=0):
            if len(frames) == n:
                break
            frames.append(torch.from_numpy(f.to_ndarray(format="rgb24")) / 255.0)
    return torch.stack(frames)


def worker_hostmem(spec) -> dict:
    """One queue of the node path in a fresh process: peak RSS above the RSS before the run.

    stream: SAM2Long Load Shot -> Track (shot) -> Save Mattes.
    image:  core-style decode to IMAGE -> Track (images) -> every frame of the MASK output
            saved as a PNG (what MaskToImage -> SaveImage does)."""
    import torch

    torch.set_num_threads(spec["threads"])
    work = Path(spec["work"])
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    import comfy_fake

    comfy_fake.install(str(work / "models"))
    fp = sys.modules["folder_paths"]
    run_dir = work / "output" / f"{spec['path']}_{spec['frames']}"
    shutil.rmtree(run_dir, ignore_errors=True)
    for name, folder in (("input", work / "input"), ("output", run_dir), ("temp", work / "temp")):
        folder.mkdir(parents=True, exist_ok=True)
        if not hasattr(fp, f"get_{name}_directory"):
            setattr(fp, f"get_{name}_directory", lambda folder=folder: str(folder))
    import loader_options
    import nodes
    import nodes.loader
    from nodes.paths import register_model_folder

    loader_options.patch(nodes.loader, image_size=spec["image_size"])  # a small input, as the tests use

    register_model_folder()
    run = comfy_fake.run_node
    (model,), _ = run(nodes.SAM2LongModelLoader, ckpt_name=HOSTMEM_CKPT)
    h, w = HOSTMEM_SIZE
    cx, cy = 100 + HOSTMEM_SQUARE / 2, 400 + HOSTMEM_SQUARE / 2
    (prompts,), _ = run(nodes.SAM2LongPrompt, frame_index=0, coordinates="normalized",
                        positive_coords=json.dumps([{"x": cx / w, "y": cy / h}]))
    n = spec["frames"]
    before = rss_bytes()
    reset_peak_rss()
    stages, t0 = {}, time.perf_counter()

    def stage(name):
        stages[name] = {"peak": vm_hwm_bytes(), "s": time.perf_counter() - t0}
        reset_peak_rss()

    if spec["path"] == "stream":
        (shot, count, *_), _ = run(nodes.SAM2LongLoadShot, path=spec["clip"], frame_count=n)
        assert count == n, (count, n)
        (track, masks, _state), _ = run(nodes.SAM2LongTrack, model=model, shot=shot, prompts=prompts)
        del masks, _state
        stage("load shot + track")
        if spec.get("save") == "cryptomatte":  # every frame's soft mattes read back, one EXR per frame
            (folder,), _ = run(nodes.SAM2LongSaveMattes, track=track, folder=str(run_dir / "mattes"),
                               format="cryptomatte")
        else:
            (folder,), _ = run(nodes.SAM2LongSaveMattes, track=track, folder=str(run_dir / "mattes"), mode="union")
        stage("save mattes")
        written = sum(1 for p in Path(folder).rglob("*.png")) + sum(1 for p in Path(folder).rglob("*.exr"))
    else:
        images = decode_like_core(spec["clip"], n)
        stage("decode to IMAGE")
        (track, masks, _state), _ = run(nodes.SAM2LongTrack, model=model, images=images, prompts=prompts)
        stage("track")
        from PIL import Image

        out = run_dir / "mattes"
        out.mkdir(exist_ok=True)
        for i, m in enumerate(masks):
            Image.fromarray((255.0 * m.numpy()).astype("uint8")).save(out / f"matte_{i:05d}.png", compress_level=3)
        stage("save masks")
        written = len(masks)
    peak = max(s["peak"] for s in stages.values())
    return {"spec": spec, "rss_before": before, "peak_rss": peak, "peak_above_before": peak - before,
            "stages": stages, "written": written, "run_s": time.perf_counter() - t0}


def worker_preprocess(spec) -> dict:
    """Per-frame cost of turning one 1920x1080 RGB frame into model input: the old
    torch bilinear resize against SAM 2's pixels (PIL on the host, the torch copy of
    PIL's bicubic for frames on a device), from uint8 and from float (IMAGE) frames."""
    import numpy as np
    import torch
    import torch.nn.functional as F

    from sam2long.engine.resize import model_input, normalise, pil_bicubic, quantise
    from sam2long.models.family import IMG_MEAN, IMG_STD

    torch.set_num_threads(spec["threads"])
    dev = torch.device(spec["device"])
    size = spec["image_size"]
    frame = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    host8, host_f = torch.from_numpy(frame), torch.from_numpy(frame).float() / 255
    dev8, dev_f = host8.to(dev), host_f.to(dev)
    mean = torch.tensor(IMG_MEAN, device=dev).view(3, 1, 1)
    std = torch.tensor(IMG_STD, device=dev).view(3, 1, 1)

    def old_bilinear(x):  # the preprocessing before SAM 2's pixels (up to commit aa235a4)
        x = x.to(dev).permute(2, 0, 1).float() / 255
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return (x - mean) / std

    def torch_bicubic(x):  # what model_input does for a frame already on a device
        return normalise(pil_bicubic(quantise(x).permute(2, 0, 1), size).permute(1, 2, 0))

    cases = {
        "before: torch bilinear+antialias, uint8 frame": lambda: old_bilinear(host8),
        "now, host uint8 frame (files): PIL bicubic": lambda: model_input(frame, size, dev),
        "now, host float frame (IMAGE): quantise + PIL bicubic": lambda: model_input(host_f, size, dev),
        f"torch copy of PIL bicubic, uint8 frame on {dev.type}": lambda: torch_bicubic(dev8),
        f"torch copy of PIL bicubic, float frame on {dev.type}": lambda: torch_bicubic(dev_f),
    }
    if dev.type != "cpu":
        cases[f"before: torch bilinear+antialias, frame on {dev.type}"] = lambda: old_bilinear(dev8)
    out = {}
    for name, fn in cases.items():
        fn()  # warm-up (coefficient tables, kernels)
        dts = []
        for _ in range(spec["repeats"]):
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            fn()
            if dev.type == "cuda":
                torch.cuda.synchronize()
            dts.append(time.perf_counter() - t0)
        out[name] = dts
    return {"spec": spec, "cases": out}


WORKERS = {"track": worker_track, "micro": worker_micro, "profile": worker_profile, "preprocess": worker_preprocess,
           "hostmem": worker_hostmem, "sam3cost": sam3_bench.worker_cost, "sam3state": sam3_bench.worker_state}


def run_case(spec: dict, timeout: int = 7200) -> dict:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    t0 = time.perf_counter()
    p = subprocess.run(
        [sys.executable, str(Path(__file__)), "--worker", json.dumps(spec)],
        capture_output=True, text=True, env=env, timeout=timeout,
    )
    line = [x for x in p.stdout.splitlines() if x.startswith("RESULT ")]
    if p.returncode or not line:
        sys.stderr.write(p.stderr[-3000:])
        return {"spec": spec, "error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else f"rc {p.returncode}"}
    out = json.loads(line[-1][7:])
    out["wall_s"] = time.perf_counter() - t0
    out["load"] = os.getloadavg()
    what = spec.get("system", spec.get("path", spec.get("model", "")))
    print(f"  {spec.get('kind')} {what} {spec.get('clip')} n={spec.get('frames')} "
          f"@{spec['image_size']}: {out['wall_s']:.0f}s  load {out['load'][0]:.1f}", flush=True)
    return out


# ------------------------------------------------------------------------------------------
# Sections (the orchestrator)


def base(args, **kw):
    spec = dict(kind="track", variant=args.variant, image_size=args.image_size, device=args.device,
                precision=args.precision, compile=args.compile, threads=args.threads, clip="synth", frames=10)
    spec.update(kw)
    return spec


def interleaved(specs, rounds):
    """Run every spec `rounds` times, round-robin; merge per-frame times of the rounds."""
    merged = {}
    for r in range(rounds):
        for i, s in enumerate(specs):
            out = run_case(s)
            if i not in merged:
                merged[i] = out
            elif "error" not in out and "error" not in merged[i]:
                m = merged[i]
                m["dts"] += out["dts"]
                m["cpu_dts"] = m.get("cpu_dts", []) + out.get("cpu_dts", [])
                m["peak_rss"] = max(m["peak_rss"], out["peak_rss"])
                m["load_rounds"] = m.get("load_rounds", [m["load"][0]]) + [out["load"][0]]
    return [merged[i] for i in range(len(specs))]


def section_table(args, clip, frames, image_size, systems, rounds, variant=None):
    specs = [base(args, clip=clip, frames=frames, image_size=image_size, system=s,
                  variant=variant or args.variant) for s in systems]
    return interleaved(specs, rounds)


def section_long(args, lengths, systems, sam2_cap):
    out = []
    for s in systems:
        n = max(lengths) if s != "sam2" else min(max(lengths), sam2_cap)
        out.append(run_case(base(args, clip="synth", frames=n, image_size=64, system=s,
                                 samples=[x for x in lengths if x <= n])))
    return out


def section_syncs(args, frames):
    return [run_case(base(args, clip="synth", frames=frames, image_size=64, system=s, syncs=True))
            for s in ("sam2", "off", "p3")]


def section_hostmem(args, stream_frames, image_frames, image_size):
    """Streamed node path at each of stream_frames, IMAGE-batch path at each of image_frames
    (one synthetic 1080p shot of max(stream_frames) frames, cut by frame count)."""
    work = Path(args.hostmem_dir)
    inputs = make_hostmem_inputs(work, max(stream_frames + image_frames))
    print(f"  synthetic 1080p clip {inputs['clip']} ({fmt_bytes(inputs['clip_bytes'])}"
          + (f", generated in {inputs['generate_s']:.0f} s)" if "generate_s" in inputs else ", reused)"), flush=True)
    spec = dict(kind="hostmem", work=str(work), clip=inputs["clip"], image_size=image_size, threads=args.threads,
                save=args.hostmem_save)
    cases = [dict(spec, path="image", frames=n) for n in image_frames]
    cases += [dict(spec, path="stream", frames=n) for n in stream_frames]
    out = [run_case(c) for c in cases]
    return [dict(r, generate_s=inputs.get("generate_s"), clip_bytes=inputs["clip_bytes"]) for r in out]


def section_micro(args, sizes, repeats):
    return [run_case(base(args, kind="micro", clip="synth", frames=8, image_size=sz, repeats=repeats))
            for sz in sizes]


def section_preprocess(args, repeats):
    return [run_case(base(args, kind="preprocess", clip="noise1080", frames=1, repeats=repeats))]


def section_profile(args, image_size, frames):
    return [run_case(base(args, kind="profile", clip="bedroom", frames=frames, image_size=image_size, system=s))
            for s in ("off", "p3")]


# ------------------------------------------------------------------------------------------
# Report


def fmt_bytes(n):
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def stats(dts):
    med = statistics.median(dts) if dts else float("nan")
    return med, percentile(dts, 0.9), (1.0 / statistics.mean(dts) if dts else float("nan"))


def table_rows(results):
    ref = next((r for r in results if r["spec"].get("system") == "sam2" and "error" not in r), None)
    off = next((r for r in results if r["spec"].get("system") == "off" and "error" not in r), None)
    rows = ["| system | frames timed | median s/frame | p90 s/frame | p10 s/frame | frames/s | x SAM 2 (median) "
            "| x tree-off (median) | x tree-off (p10) | CPU s/frame (median) | pathways batched per frame | peak RSS "
            "| peak GPU | load (1 min) |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        s = r["spec"].get("system")
        if "error" in r:
            rows.append(f"| {SYSTEMS.get(s, s)} | error: {r['error'][:80]} |" + " |" * 12)
            continue
        med, p90, fps = stats(r["dts"])
        x_ref = med / stats(ref["dts"])[0] if ref else float("nan")
        x_off = med / stats(off["dts"])[0] if off else float("nan")
        p10 = percentile(r["dts"], 0.1)
        x_off10 = p10 / percentile(off["dts"], 0.1) if off else float("nan")
        cpu = f"{statistics.median(r['cpu_dts']):.3f}" if r.get("cpu_dts") else "-"
        loads = r.get("load_rounds", [r["load"][0]])
        rows.append(
            f"| {SYSTEMS.get(s, s)} | {len(r['dts'])} | {med:.3f} | {p90:.3f} | {p10:.3f} | {fps:.2f} | {x_ref:.2f} "
            f"| {x_off:.2f} | {x_off10:.2f} | {cpu} "
            f"| {r['units_mean']:.2f} | {fmt_bytes(r['peak_rss'])} | {fmt_bytes(r.get('peak_gpu'))} "
            f"| {', '.join(f'{x:.1f}' for x in loads)} |"
        )
    return rows


def ratio_lines(results):
    """The targets' ratios from one table's medians."""
    out = [""]
    for label, q in (("median", 0.5), ("p10, the least-contended frames", 0.1)):
        out += _ratios(results, q, label)
    return out if len(out) > 1 else []


def _ratios(results, q, label):
    med = {r["spec"].get("system"): percentile(r["dts"], q) for r in results if "error" not in r and r.get("dts")}
    out = []
    if "p3agree" in med and "off" in med:
        out.append(f"- ({label}) P=3 where the pathways agree / tree off: **{med['p3agree'] / med['off']:.2f}x** "
                   f"(target <= 1.2x).")
    if "p3" in med and "p1" in med:
        out.append(f"- ({label}) P=3 distinct pathways / (3 x P=1 steps): **{med['p3'] / (3 * med['p1']):.2f}** "
                   f"(P=3 distinct / P=1 = {med['p3'] / med['p1']:.2f}x; target: clearly below 1).")
    return out


def hostmem_rows(results):
    """Table of the hostmem section, then the targets: streamed 2,000 vs 200 frames, IMAGE path slope."""
    ok = [r for r in results if "error" not in r]
    L = []
    if ok:
        sp = ok[0]["spec"]
        L += [f"Synthetic {HOSTMEM_SIZE[1]}x{HOSTMEM_SIZE[0]} mp4 ({fmt_bytes(ok[0]['clip_bytes'])}, written frame by "
              "frame with PyAV" + (f" in {ok[0]['generate_s']:.0f} s" if ok[0].get("generate_s") else "") +
              f"), one object prompted by a point on frame 0, sam2.1_hiera_tiny with random weights at "
              f"{sp['image_size']} px network input (the tests' loader setting, tests/loader_options.py), "
              f"{sp['threads']} torch thread. Nodes called as ComfyUI calls them, through the fake ComfyUI modules "
              "(tests/comfy_fake), each case in a fresh process. **Peak above before** = peak RSS during the run "
              "(VmHWM, reset just before it) minus the RSS after imports, model load and prompt.", "",
              "- stream: SAM2Long Load Shot (path, frame_count) -> SAM2Long Track (shot) -> SAM2Long Save Mattes "
              + ("(Cryptomatte EXR from the soft mattes)." if sp.get("save") == "cryptomatte" else "(union, PNG)."),
              "- image: the frames decoded into one IMAGE batch as core GetVideoComponents does (a list of float "
              "frames, then torch.stack) -> SAM2Long Track (images) -> each frame of its MASK output saved as a PNG "
              "(what MaskToImage -> SaveImage does).", ""]
    L += ["| path | frames | RSS before | peak RSS | peak above before | per frame | stages (peak RSS, s since start) "
          "| matte files | run s |", "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        sp = r["spec"]
        if "error" in r:
            L.append(f"| {sp['path']} | {sp['frames']} | error: {r['error'][:80]} |" + " |" * 6)
            continue
        st = "; ".join(f"{k}: {fmt_bytes(v['peak'])}, {v['s']:.0f} s" for k, v in r["stages"].items())
        L.append(f"| {sp['path']} | {sp['frames']} | {fmt_bytes(r['rss_before'])} | {fmt_bytes(r['peak_rss'])} | "
                 f"{fmt_bytes(r['peak_above_before'])} | {fmt_bytes(r['peak_above_before'] / sp['frames'])} | {st} | "
                 f"{r['written']} | {r['run_s']:.0f} |")
    by = {(r["spec"]["path"], r["spec"]["frames"]): r for r in ok}
    stream = sorted(n for p, n in by if p == "stream")
    L.append("")
    if len(stream) >= 2:
        a, b = by[("stream", stream[0])], by[("stream", stream[-1])]
        L.append(f"- streamed, {stream[-1]} vs {stream[0]} frames: peak RSS {fmt_bytes(b['peak_rss'])} vs "
                 f"{fmt_bytes(a['peak_rss'])} = **{b['peak_rss'] / a['peak_rss']:.3f}x** (target within 10%); "
                 f"peak above before {fmt_bytes(b['peak_above_before'])} vs {fmt_bytes(a['peak_above_before'])} "
                 f"(target < 2 GiB at {stream[-1]} frames: "
                 f"**{'met' if b['peak_above_before'] < 2 * 1024 ** 3 else 'NOT met'}**).")
    image = sorted(n for p, n in by if p == "image")
    if len(image) >= 2:
        xs = image
        ys = [by[("image", n)]["peak_above_before"] for n in xs]
        mx, my = statistics.mean(xs), statistics.mean(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
        L.append(f"- IMAGE-batch path: **{slope / 1e6:.1f} MB per frame** (least-squares slope of the peak above "
                 f"before over {', '.join(map(str, xs))} frames); at that slope 2,000 frames would need "
                 f"{fmt_bytes(slope * 2000)} and 10,000 frames {fmt_bytes(slope * 10000)}.")
    return L


def render(data: dict, meta: dict) -> str:
    L = ["# Benchmark results", "",
         "Generated by `bench/run.py` (see `bench/README.md`). Every figure below was measured by the script;",
         "rerun it to refresh. Sections run at different times keep their own metadata.", ""]
    notes = [
        "## What is measured, and caveats", "",
        "- **Weights**: seeded random weights (`torch.manual_seed(0); build_net(variant, image_size)`), the same for",
        "  every system (the SAM2VideoPredictor gets the same state dict). Random weights cost exactly what real",
        "  ones cost per network call, but a random net is uncertain on every frame (object logit about 0.2, below",
        "  the uncertainty threshold 2), so with the default TreeConfig the P=3 pathways are always picked for",
        "  diversity and stay distinct: the worst case for cost.",
        "- **P=3 'agree' (certain-frames rule)**: `TreeConfig(pathways=3, uncertainty=0.0)`: diversity is off, so",
        "  the best P of the candidates are kept by score. After the seed frame the P pathways are one shared node;",
        "  its candidates appear P times with equal scores and the stable sort keeps the copies, so the pathways",
        "  stay one node, computed once per frame: the regime of frames where all pathways agree (column",
        "  'pathways batched per frame' = 1). With the default rule a random net forces them apart (about 3).",
        "- **Per-frame time** is the wall time between consecutive frames of the propagation loop (the prompt",
        "  frame excluded). For ours it includes streaming decode (PyAV, real clips) and resizing; the",
        "  SAM2VideoPredictor decodes and resizes every frame up front (`init_state`, reported apart) and",
        "  keeps them all in memory.",
        "- **Peak RSS** is `ru_maxrss` of a fresh process per system (model build included).",
        "- **Tracking-state bytes**: ours = `Tracker.state_nbytes()`; SAM 2 = tensors reachable from its",
        "  `inference_state` except the preloaded frames (reported apart).",
        "- **Syncs**: calls that synchronise host and device on CUDA, counted by call site on a CPU run: tensor",
        "  reads to the host (`.cpu() .item() .tolist() .numpy() bool() float() int()`, not on tensors already",
        "  moved to the host) and `torch.tensor(..., device=...)` (a host-to-device copy PyTorch follows with",
        "  a stream sync). Other implicit syncs (boolean-mask indexing, `nonzero`) are not counted.",
        "- **Operators per frame**: ATen operators dispatched per tracked frame, views excluded (median over",
        "  frames, prompt frame excluded): on a GPU each is about one kernel launch, the per-frame overhead",
        "  that eager PyTorch pays whatever the resolution. Counted on the same CPU run as the syncs.",
        "- CPU runs use `torch.set_num_threads(1)` (the box has 2 cores shared with other jobs; the 1-minute",
        "  load average at the end of each case is in the tables). Systems of one table are interleaved in rounds.",
        "- **GPU** (`--device cuda --precision bf16 --sections gpu`, and again with `--compile`): a synthetic",
        "  1920x1080 clip, frames uploaded and resized to the model's input on the device inside the timed loop",
        "  (the SAM2VideoPredictor does that in `init_state`); the first `--gpu-warmup` tracked frames (CUDA",
        "  and compile warm-up, memory filling up) are not timed; one section per variant and compile setting.",
        "  Sections appear below only once measured on a GPU.",
        "",
    ]
    L += notes
    titles = {
        "cpu1024": "Real clip at the real 1024 input, SAM 2.1 tiny, CPU",
        "cups1024": "cups.mp4 at the 1024 input, SAM 2.1 tiny, CPU",
        "pair1024": "Rerun, interleaved with process CPU time: bedroom.mp4 at 1024, SAM 2.1 tiny, CPU",
        "synth256": "Synthetic clip (moving square) at 256 px input, SAM 2.1 tiny",
        "long": "Growth with length: 64 px input, synthetic generator-backed clip",
        "micro": "Batching: one track step of 3 distinct pathways vs 3 single-pathway calls",
        "syncs": "Host-device synchronisations and operator launches per frame",
        "profile": "Profile: where a frame's time goes (bedroom.mp4, SAM 2.1 tiny, 1024 input)",
        "gpu": "GPU: frames/s at 1080p",
        "hostmem": "Host memory of the ComfyUI node path: a synthetic 1080p shot, streamed vs IMAGE batch",
        "preprocess": "Preprocessing: one 1920x1080 frame to model input, per frame",
        "batch": "Many shots: `sam2long batch`, in-process and on a local Ray (CPU workers)",
        "plates": "Plates: decode cost per frame (EXR, DPX, PNG) against MP4",
        "sam3": "SAM 3's tracker beside SAM 2.1 tiny and large: per-frame cost at the real input, tracking state",
        "resume": "Resume: a correction re-queued late in a long shot (issue 20)",
    }
    order = ("cpu1024", "pair1024", "cups1024", "synth256", "gpu", "sam3", "hostmem", "long", "micro", "syncs",
             "profile", "preprocess", "batch", "plates", "resume")
    names = []
    for k in order:  # GPU sections are saved one per variant and compile setting: gpu[-compile]-VARIANT
        if k == "gpu":
            names += sorted(n for n in data if n.startswith("gpu-"))
        elif k == "sam3":  # sam3 on the CPU, sam3-DEVICE elsewhere
            names += ["sam3"] + sorted(n for n in data if n.startswith("sam3-"))
        else:
            names += [k + "-full", k]
    for name in names:
        if name not in data:
            continue
        key = "gpu" if name.startswith("gpu-") else "sam3" if name.startswith("sam3") else name.removesuffix("-full")
        sec = data[name]
        m = sec["meta"]
        title = f"{titles[key]}: {name.removeprefix('gpu-')}" if key == "gpu" else titles[key]
        if key == "sam3" and name != "sam3":
            title += f" ({name.removeprefix('sam3-')})"
        L += [f"## {title}" + (" (--full)" if name.endswith("-full") else ""), "",
              f"{m['date']} · commit `{m['commit']}` · {m['machine']} · torch {m['torch']} · load at start "
              f"{m['load_start']} · command: `{m['command']}`", ""]
        res = sec["results"]
        if key in ("cpu1024", "pair1024", "cups1024", "synth256"):
            first = next((r for r in res if "error" not in r), None)
            if first:
                sp = first["spec"]
                L.append(f"Clip `{sp['clip']}`, first {sp['frames']} frames per round, {sp['variant']}, "
                         f"input {sp['image_size']} px, one object prompted by a point on frame 0.")
                L.append("")
            L += table_rows(res)
            L += ratio_lines(res)
            init = [r for r in res if "init_s" in r]
            if init:
                L += ["", f"SAM2VideoPredictor `init_state` (decode + resize + hold all frames): "
                          f"{init[0]['init_s']:.2f} s, frames held {fmt_bytes(init[0]['images_bytes'])}."]
        elif key == "gpu":
            first = next((r for r in res if "error" not in r), None)
            if first:
                sp = first["spec"]
                L += [f"{sp['variant']}, {sp['precision']}, torch.compile {'on' if sp.get('compile') else 'off'}, "
                      f"synthetic 1920x1080 clip, input {sp['image_size']} px, {sp['frames']} frames; the first "
                      f"{sp.get('warmup', 0)} tracked frames are warm-up (time in the last column), not timed.", ""]
            L += table_rows(res) + ratio_lines(res)
            L += ["", "| system | warm-up s |", "|---|---|"]
            L += [f"| {SYSTEMS.get(r['spec']['system'])} | {r.get('warmup_s', float('nan')):.1f} |" for r in res
                  if "error" not in r]
        elif key == "long":
            L += ["| system | length | tracking-state bytes | vs at 100 | RSS growth since frame 0 | median s/frame "
                  "(whole run) | p90 | frames/s | peak RSS |", "|---|---|---|---|---|---|---|---|---|"]
            for r in res:
                s = r["spec"].get("system")
                if "error" in r:
                    L.append(f"| {SYSTEMS.get(s, s)} | error: {r['error'][:80]} |" + " |" * 7)
                    continue
                med, p90, fps = stats(r["dts"])
                st = {int(k): v for k, v in r["state_at"].items()}
                rs = {int(k): v for k, v in r["rss_at"].items()}
                b100 = st.get(100)
                for n in sorted(st):
                    rel = f"{st[n] / b100:.3f}x" if b100 else "-"
                    L.append(f"| {SYSTEMS.get(s, s)} | {n} | {st[n]:,} | {rel} | {fmt_bytes(rs.get(n))} | "
                             f"{med:.4f} | {p90:.4f} | {fps:.1f} | {fmt_bytes(r['peak_rss'])} |")
            capped = [r for r in res if r["spec"].get("system") == "sam2" and "error" not in r]
            if capped:
                L += ["", f"SAM2VideoPredictor is capped at {capped[0]['spec']['frames']} frames: it preloads every "
                          f"frame (here {fmt_bytes(capped[0].get('images_bytes'))}) and keeps every frame's outputs, "
                          "so its state grows with length by design."]
        elif key == "hostmem":
            L += hostmem_rows(res)
        elif key == "micro":
            L += ["| input px | distinct pathways | memory frames per pathway | batched track (median s) | "
                  "3 single track calls (median s) | ratio | batched commit | 3 single commits | ratio |",
                  "|---|---|---|---|---|---|---|---|---|"]
            for r in res:
                if "error" in r:
                    L.append(f"| {r['spec']['image_size']} | error: {r['error'][:80]} |" + " |" * 7)
                    continue
                bt, st_, bc, sc = (statistics.median(r[k]) for k in
                                   ("batched_track", "single_track", "batched_commit", "single_commit"))
                L.append(f"| {r['spec']['image_size']} | {r['units']} | {r['memories']} | {bt:.4f} | {st_:.4f} | "
                         f"{bt / st_:.2f} | {bc:.4f} | {sc:.4f} | {bc / sc:.2f} |")
        elif key == "syncs":
            for r in res:
                s = r["spec"].get("system")
                if "error" in r:
                    L.append(f"- {SYSTEMS.get(s, s)}: error {r['error'][:80]}")
                    continue
                ops = f"; {r['ops_median']:.0f} operators per frame (median)" if "ops_median" in r else ""
                L.append(f"- **{SYSTEMS.get(s, s)}**: {r['syncs_per_frame']:.2f} syncs per frame "
                         f"({r['frames']} frames incl. the prompt frame){ops}")
                for site, c in sorted(r["syncs"].items(), key=lambda kv: -kv[1]):
                    L.append(f"  - {c / r['frames']:.2f}/frame `{site}`")
                if "ops_top" in r:
                    top = ", ".join(f"{k.removeprefix('aten.')} {v:.0f}" for k, v in r["ops_top"].items())
                    L.append(f"  - most dispatched operators per frame: {top}")
        elif key == "plates":
            from plates import render_plates  # bench/plates.py

            L += render_plates(res)
        elif key == "profile":
            L += ["| system | frames | total s | stage | s | share of total |", "|---|---|---|---|---|---|"]
            for r in res:
                if "error" in r:
                    continue
                s = r["spec"]["system"]
                for stage, v in sorted(r["stages"].items(), key=lambda kv: -kv[1]):
                    L.append(f"| {SYSTEMS.get(s, s)} | {r['frames']} | {r['total']:.1f} | {stage} | {v:.2f} | "
                             f"{v / r['total']:.0%} |")
            L += ["", "Stages nest: memory assembly, memory attention and the mask decoder are inside `_track total`; "
                      "the memory encoder runs in the prompt and commit steps."]
        elif key == "preprocess":
            for r in res:
                if "error" in r:
                    L.append(f"error: {r['error'][:120]}")
                    continue
                sp = r["spec"]
                L += [f"Noise frame 1920x1080 -> {sp['image_size']} px on `{sp['device']}`, {sp['threads']} thread(s), "
                      f"median of {sp['repeats']} after a warm-up; output on the device. 'now' is what "
                      "`InferenceCore.preprocess` does for each kind of frame.", "",
                      "| path | median ms/frame | p90 ms |", "|---|---|---|"]
                for name, dts in r["cases"].items():
                    L.append(f"| {name} | {1000 * statistics.median(dts):.1f} | {1000 * percentile(dts, 0.9):.1f} |")
        elif key == "batch":
            L += batch_bench.render(res)
        elif key == "sam3":
            L += sam3_bench.render(res, fmt_bytes)
        elif key == "resume":
            L += resume_bench.render(res, fmt_bytes)
        L.append("")
    notes_md = HERE / "NOTES.md"
    if notes_md.exists():  # hand-written reading of the figures (profile, changes, recommendations)
        L += [notes_md.read_text()]
    return "\n".join(L)


def git_commit():
    try:
        return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def machine(args):
    import torch

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    s = f"{cpu}, {os.cpu_count()} cores"
    if args.device.startswith("cuda") and torch.cuda.is_available():
        s += f", {torch.cuda.get_device_name()}"
    return s


def save(section: str, results, args, results_path: Path):
    import fcntl

    import torch

    meta = dict(date=datetime.datetime.now().isoformat(timespec="minutes"), commit=git_commit(),
                machine=machine(args), torch=torch.__version__, load_start=args.load_start,
                command="python bench/run.py " + " ".join(sys.argv[1:]))
    with open(str(results_path) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        data = json.loads(results_path.read_text()) if results_path.exists() else {}
        data[section] = {"meta": meta, "results": results}
        results_path.write_text(json.dumps(data, indent=1))
        Path(args.out).write_text(render(data, meta))
    print(f"wrote section {section} -> {args.out}", flush=True)


QUICK = dict(cpu1024_frames=3, cpu1024_rounds=1, synth_frames=8, synth_rounds=1, long=[100, 300], sam2_cap=300,
             micro_sizes=[64, 256], micro_repeats=5, sync_frames=20, profile_frames=8, preprocess_repeats=10,
             plate_frames=8)
FULL = dict(cpu1024_frames=20, cpu1024_rounds=1, synth_frames=40, synth_rounds=2, long=[100, 1000, 10000], sam2_cap=1000,
            micro_sizes=[1024, 256], micro_repeats=3, sync_frames=40, profile_frames=8, preprocess_repeats=30,
            plate_frames=12)
# The default set; also: hostmem, gpu, sam3 (about 25 minutes on a CPU).
SECTIONS = ("syncs", "micro", "synth256", "cpu1024", "long", "profile", "preprocess", "batch", "plates")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--quick", action="store_true", help="a few minutes on a CPU (default)")
    g.add_argument("--full", action="store_true", help="20 frames at 1024, 10,000-frame growth runs (long)")
    ap.add_argument("--out", default=str(HERE / "RESULTS.md"))
    ap.add_argument("--results", default=str(HERE / "results.json"), help="merged raw results (JSON)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", help="fp32 | bf16 | fp16 (CUDA autocast)")
    ap.add_argument("--compile", action="store_true", help="torch.compile encoder, memory attention, decoder")
    ap.add_argument("--variant", default="sam2.1_hiera_tiny")
    ap.add_argument("--image-size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker (CPU)")
    ap.add_argument("--sections", default=None, help=f"comma list of {', '.join(SECTIONS)}, hostmem, gpu, sam3")
    ap.add_argument("--rounds", type=int, default=None,
                    help="rounds of the clip tables (systems interleaved round by round; more rounds, less drift)")
    ap.add_argument("--gpu-variants", default="sam2.1_hiera_tiny,sam2.1_hiera_large", help="gpu section: variants")
    ap.add_argument("--gpu-frames", type=int, default=120, help="gpu section: frames tracked per system")
    ap.add_argument("--gpu-warmup", type=int, default=20, help="gpu section: first tracked frames not timed")
    ap.add_argument("--hostmem-dir", default=str(Path(os.environ.get("TMPDIR", "/tmp")) / "sam2long_hostmem"),
                    help="hostmem section: where the synthetic 1080p shot, checkpoint and mattes go (several GB free)")
    ap.add_argument("--hostmem-stream", default="200,2000", help="hostmem section: streamed shot lengths")
    ap.add_argument("--hostmem-image", default="50,100,200", help="hostmem section: IMAGE-batch lengths")
    ap.add_argument("--hostmem-save", default="png", choices=("png", "cryptomatte"),
                    help="hostmem section: what the streamed path's Save Mattes writes (union PNG, or Cryptomatte "
                         "EXRs from the soft mattes)")
    ap.add_argument("--hostmem-image-size", type=int, default=64,
                    help="hostmem section: network input size (host memory, not network cost, is measured)")
    ap.add_argument("--sam3-frames", type=int, default=9,
                    help="sam3 section: frames per cost case (prompt + tracked; the memory bank is full from the 7th)")
    ap.add_argument("--resume-frames", type=int, default=2000, help="resume section: frames in the shot")
    ap.add_argument("--resume-full-size", type=int, default=8,
                    help="resume section: frames tracked at 1024 px before one snapshot is measured (0: skip)")
    ap.add_argument("--resume-check", action="store_true",
                    help="resume section: also track afresh and compare the masks (doubles the time)")
    ap.add_argument("--batch-dir", default="/tmp/sam2long_bench_batch", help="batch section: job, clips, outputs")
    ap.add_argument("--render-only", action="store_true", help="rewrite --out from --results, measure nothing")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        spec = json.loads(args.worker)
        print("RESULT " + json.dumps(WORKERS[spec["kind"]](spec)), flush=True)
        return
    if args.render_only:
        Path(args.out).write_text(render(json.loads(Path(args.results).read_text()), {}))
        return
    cfg = FULL if args.full else QUICK
    args.load_start = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    sections = args.sections.split(",") if args.sections else (["gpu"] if args.device.startswith("cuda") else list(SECTIONS))
    rp = Path(args.results)
    rounds = args.rounds
    for sec in sections:
        print(f"[{sec}]", flush=True)
        if sec == "syncs":
            res = section_syncs(args, cfg["sync_frames"])
        elif sec == "micro":
            res = section_micro(args, cfg["micro_sizes"], cfg["micro_repeats"])
        elif sec == "synth256":
            res = section_table(args, "synth", cfg["synth_frames"], 256, list(SYSTEMS),
                                rounds or cfg["synth_rounds"])
        elif sec == "cpu1024":
            res = section_table(args, "bedroom", cfg["cpu1024_frames"], 1024, list(SYSTEMS),
                                rounds or cfg["cpu1024_rounds"])
        elif sec == "pair1024":  # SAM 2 vs tree off only, interleaved, with process CPU time per frame
            res = section_table(args, "bedroom", 10, 1024, ["sam2", "off", "p3"], 2)
        elif sec == "cups1024":
            res = section_table(args, "cups", cfg["cpu1024_frames"], 1024, list(SYSTEMS),
                                rounds or cfg["cpu1024_rounds"])
        elif sec == "long":
            res = section_long(args, cfg["long"], ["off", "p3", "sam2"], cfg["sam2_cap"])
        elif sec == "profile":
            res = section_profile(args, 1024, cfg["profile_frames"])
        elif sec == "hostmem":
            ints = lambda text: [int(x) for x in text.split(",") if x.strip()]  # noqa: E731
            res = section_hostmem(args, ints(args.hostmem_stream), ints(args.hostmem_image), args.hostmem_image_size)
        elif sec == "preprocess":
            res = section_preprocess(args, cfg["preprocess_repeats"])
        elif sec == "batch":
            res = batch_bench.section(args, ROOT, rounds=rounds or 2)
        elif sec == "resume":  # issue 20: a re-queued correction, in this process
            res = resume_bench.section(args)
        elif sec == "plates":  # decode cost of image sequences, in this process (no model)
            from plates import section_plates  # bench/plates.py

            res = section_plates(MEDIA, cfg["plate_frames"])
        elif sec == "sam3":  # saved as sam3 on the CPU, sam3-DEVICE elsewhere
            res = sam3_bench.section(args, run_case, args.sam3_frames)
            save("sam3" if args.device == "cpu" else f"sam3-{args.device.replace(':', '')}-{args.precision}", res,
                 args, rp)
            continue
        elif sec == "gpu":  # one section per variant, so tiny and large can run in separate calls
            for variant in args.gpu_variants.split(","):
                specs = [base(args, clip="synth1080", frames=args.gpu_frames, image_size=args.image_size, system=s,
                              variant=variant, warmup=args.gpu_warmup) for s in ("sam2", "off", "p1", "p3agree", "p3")]
                save(f"gpu{'-compile' if args.compile else ''}-{variant}", interleaved(specs, 1), args, rp)
            continue
        else:
            raise SystemExit(f"unknown section {sec!r}")
        save(sec + ("-full" if args.full else ""), res, args, rp)


if __name__ == "__main__":
    main()
