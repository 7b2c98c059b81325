"""bench/run.py section `sam3`: SAM 3's tracker under our engine beside SAM 2.1 tiny and large.

Two measurements, each case in a fresh process (`run.run_case`):

* **cost** (`worker_cost`): per-frame cost of `Tracker.propagate` at the real input size
  (SAM 3 1008, SAM 2.1 1024) with the tree off (the family's own tracker), P=3 with
  agreeing pathways and P=3 with distinct ones. The clip is one frame repeated, so its
  image features are computed once, timed, and handed to every tracked frame (the
  engine's `encode_image` returns them); everything else (preprocessing, memory
  assembly, memory attention, decoder, tree rules, memory encoder) runs on every frame.
  Per-frame cost = encoder + tracked step. A hook on `InferenceCore.track` records,
  per frame, how many distinct pathways (memory plans) were computed and how many
  memory frames and pointers each read, which is how the tables know that "agreeing"
  pathways were computed once and "distinct" ones three times, and which frames had a
  full memory bank (the averaged ones).
* **state** (`worker_state`): `Tracker.state_nbytes()` at 100 and 1,000 frames at a
  reduced input size (SAM 3: 112 px with a 2-block trunk, real heads; SAM 2.1 tiny:
  64 px), with the distinct tensors it holds grouped by shape. The figure at the real
  input size is computed from them: spatial tensors (memories, pending masks) scale
  with the square of the input size, pointers do not. Computed, not measured.

Random weights: cost does not depend on weights, but a random net's object logit is
near 0, so no frame would enter SAM 3's (or the tree's) reliable memory and the bank
would never fill. The object-score head's output bias is raised by `PRESENT`, so the
object reads as present and tracked frames enter memory as on a clip that tracks well.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COST_MODELS = (("sam3", 1008), ("sam2.1_hiera_tiny", 1024), ("sam2.1_hiera_large", 1024))
STATE_MODELS = (("sam3", 112), ("sam2.1_hiera_tiny", 64))
STATE_FULL_SIZE = {"sam3": 1008, "sam2.1_hiera_tiny": 1024}
MODES = {"off": "tree off", "p3agree": "P=3 agreeing", "p3": "P=3 distinct"}
PRESENT = 8.0  # added to the object-score logit: well above the uncertainty threshold 2
FRAME_SIZE = (540, 960)  # the still clip's frames, H x W


def tree_for(mode: str, family):
    from sam2long.engine.tree import TreeConfig

    return {"off": TreeConfig.plain(family), "p3agree": TreeConfig(pathways=3, uncertainty=0.0),
            "p3": TreeConfig(pathways=3, uncertainty=1e6)}[mode]


def build_model(spec):
    """Seeded random weights, the object-score bias raised; SAM 3 reduced below 1008."""
    import torch

    from sam2long.models.model import LoadedModel, build_net

    torch.manual_seed(0)
    if spec["model"] == "sam3":
        from sam2long.models.sam3.network import SAM3_SIZES, build_tracker_net

        config = replace(SAM3_SIZES, image_size=spec["image_size"])
        if spec["image_size"] != SAM3_SIZES.image_size:  # the tests' reduced trunk, real heads
            sys.path.insert(0, str(ROOT / "tests"))
            from sam3_testing import REDUCED

            config = replace(REDUCED, image_size=spec["image_size"])
        net = build_tracker_net(config)
    else:
        net = build_net(spec["model"], spec["image_size"])
    head = net.sam_mask_decoder.pred_obj_score_head
    last = [m for m in head.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.bias += PRESENT
    return LoadedModel.from_net(net, spec["model"], device=spec["device"], precision=spec["precision"])


class StillClip:
    """A FrameSource of n copies of one frame (a red square on seeded noise)."""

    first_index = 0
    height, width = FRAME_SIZE

    def __init__(self, n: int):
        import torch

        self.n = n
        g = torch.Generator().manual_seed(0)
        self.image = (torch.rand(self.height, self.width, 3, generator=g) * 90).to(torch.uint8)
        self.image[200:300, 400:500] = torch.tensor([230, 60, 40], dtype=torch.uint8)
        self.point = (450, 250)

    def __len__(self):
        return self.n

    def frames(self, indices):
        for i in indices:
            yield i, self.image


class Clock:
    """CPU seconds of the process and wall seconds (after a CUDA sync on a GPU)."""

    def __init__(self, cuda: bool):
        import torch

        self.sync = torch.cuda.synchronize if cuda else (lambda: None)

    def now(self):
        self.sync()
        return time.process_time(), time.perf_counter()


def worker_cost(spec) -> dict:
    import torch

    import sam2long.engine.core as core_mod
    from sam2long.engine.tracker import Tracker

    torch.set_num_threads(spec["threads"])
    cuda = spec["device"].startswith("cuda")
    clock = Clock(cuda)
    t0 = clock.now()
    model = build_model(spec)
    build_cpu = clock.now()[0] - t0[0]
    clip = StillClip(spec["frames"])
    net = model.net
    stages = Counter()  # CPU (wall on a GPU) seconds of the current frame, by stage

    def timer(name, fn):
        def timed(*a, **k):
            start = clock.now()
            out = fn(*a, **k)
            end = clock.now()
            stages[name] += end[1] - start[1] if cuda else end[0] - start[0]
            return out

        return timed

    core_mod.memory_attention = timer("memory attention", core_mod.memory_attention)
    net.sam_mask_decoder.forward = timer("mask decoder", net.sam_mask_decoder.forward)
    net._encode_new_memory = timer("memory encoder", net._encode_new_memory)

    encoder = Tracker(model).core
    with torch.inference_mode(), model.autocast():
        if cuda:  # CUDA warm-up: kernels, allocator
            encoder.encode_image(encoder.preprocess(clip.image))
        start = clock.now()
        ff = encoder.encode_image(encoder.preprocess(clip.image))
        end = clock.now()
    encode = {"cpu_s": end[0] - start[0], "wall_s": end[1] - start[1]}

    modes = {}
    for mode in spec["modes"]:
        tracker = Tracker(model, tree_for(mode, encoder.family))
        tracker.add_points(0, 1, [clip.point], [1])
        core = tracker.core
        core.encode_image = lambda image: ff  # the still clip's features, computed once above
        frames, plans_seen = [], {}
        track = core.track

        def hooked(ff_, plans, *rest, _track=track):
            plans_seen.update(units=len(plans), spatial=[len(p.spatial) for p in plans],
                              pointers=[len(p.pointers) for p in plans])
            return _track(ff_, plans, *rest)

        core.track = hooked
        stages.clear()
        last = clock.now()

        def on_step(t):
            nonlocal last
            now = clock.now()
            frames.append({"frame": t, "cpu_s": now[0] - last[0], "wall_s": now[1] - last[1],
                           "stages": dict(stages), **plans_seen})
            stages.clear()
            plans_seen.clear()
            last = clock.now()

        for _ in tracker.propagate(clip, on_step=on_step):
            pass
        modes[mode] = {"frames": frames, "full_memory": core.num_maskmem}
    return {"spec": spec, "build_cpu_s": build_cpu, "encode": encode, "modes": modes,
            "params": sum(p.numel() for p in net.parameters()), "peak_rss": _peak_rss(),
            **({"peak_gpu": torch.cuda.max_memory_allocated()} if cuda else {})}


def worker_state(spec) -> dict:
    import torch

    from sam2long.engine.tracker import Tracker

    torch.set_num_threads(spec["threads"])
    model = build_model(spec)
    tracker = Tracker(model, tree_for(spec["mode"], model.family))
    clip = StillClip(max(spec["samples"]))
    tracker.add_points(0, 1, [clip.point], [1])
    at, count = {}, [0]

    def on_step(t):
        count[0] += 1
        if count[0] in spec["samples"]:
            groups = Counter()
            for x in tracker.state_tensors():
                groups[(tuple(x.shape), str(x.dtype).removeprefix("torch."), x.element_size())] += 1
            at[count[0]] = {"bytes": tracker.state_nbytes(),
                            "groups": [[list(s), d, e, n] for (s, d, e), n in sorted(groups.items())]}

    start = time.perf_counter()
    for _ in tracker.propagate(clip, on_step=on_step):
        pass
    return {"spec": spec, "at": at, "run_s": time.perf_counter() - start}


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def section(args, run_case, frames: int, state_samples=(100, 1000)) -> list:
    base = dict(device=args.device, precision=args.precision, threads=args.threads)
    out = [run_case(dict(base, kind="sam3cost", model=m, image_size=s, frames=frames, modes=list(MODES)))
           for m, s in COST_MODELS]
    out += [run_case(dict(base, kind="sam3state", model=m, image_size=s, mode=mode, samples=list(state_samples)))
            for m, s in STATE_MODELS for mode in ("off", "p3")]
    return out


# ------------------------------------------------------------------------------------------
# Report


def averaged(frames: list, full: int) -> list:
    """The tracked frames whose every pathway read a full memory bank; else the last one."""
    tracked = [f for f in frames if f.get("units")]
    full_frames = [f for f in tracked if min(f["spatial"]) >= full]
    return full_frames or tracked[-1:]


def full_size_bytes(groups: list, scale: float) -> float:
    """Bytes of the same tensors at an input `scale` times the side: memories [C, h, w] and
    pending masks [h, w] grow with the square of the side, pointers [C] do not."""
    return sum(n * math.prod(shape) * element * (scale**2 if len(shape) >= 2 else 1)
               for shape, _, element, n in groups)


def render(results: list, fmt_bytes) -> list:
    L = []
    cost = [r for r in results if r["spec"].get("kind") == "sam3cost"]
    state = [r for r in results if r["spec"].get("kind") == "sam3state"]
    if cost:
        sp = next((r["spec"] for r in cost), {})
        gpu = sp.get("device", "cpu").startswith("cuda")
        unit, key = ("s (wall, synced)", "wall_s") if gpu else ("CPU s", "cpu_s")
        L += [f"Seeded random weights (object-score bias +{PRESENT:g}, so frames enter memory), "
              f"`Tracker.propagate` on a still {FRAME_SIZE[1]}x{FRAME_SIZE[0]} clip of {sp.get('frames')} frames "
              f"(prompt + {sp.get('frames', 1) - 1} tracked), one point prompt, device `{sp.get('device')}`, "
              f"{sp.get('precision')}, torch threads {sp.get('threads')}. The frame's features are computed once "
              "(encoder column) and reused on every frame; per frame = encoder + tracked step. Averaged: the "
              "tracked frames whose memory bank was full (all 7 memory frames read by every pathway). Modes: tree "
              "off = `TreeConfig.sam3()` / `TreeConfig.sam2()` (the family's own tracker); P=3 agreeing = "
              "`TreeConfig(pathways=3, uncertainty=0.0)` (certain-frames rule: the three pathways stay one node, "
              "computed once); P=3 distinct = `TreeConfig(pathways=3, uncertainty=1e6)` (every frame picked for "
              "diversity: the pathways split from the second tracked frame on). 'Pathways computed' is the number of "
              "memory plans the engine's `track` received on each frame (hooked).", "",
              f"| model @ input | mode | encoder {unit} | tracked step {unit} | **per frame {unit}** | per frame wall s "
              f"| pathways computed per frame | memory frames / pointers read | frames averaged | step {unit} by "
              "tracked frame (warm-up) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in cost:
            name = f"{r['spec']['model']} @ {r['spec']['image_size']}"
            if "error" in r:
                L.append(f"| {name} | error: {r['error'][:100]} |" + " |" * 8)
                continue
            enc = r["encode"]
            for mode, m in r["modes"].items():
                avg = averaged(m["frames"], m["full_memory"])
                step = statistics.mean(f[key] for f in avg)
                step_wall = statistics.mean(f["wall_s"] for f in avg)
                units = sorted({f["units"] for f in avg})
                by_frame = ", ".join(f"{f[key]:.1f}" for f in m["frames"][1:])
                L.append(f"| {name} | {MODES[mode]} | {enc[key]:.1f} | {step:.2f} | "
                         f"**{enc[key] + step:.1f}** | {enc['wall_s'] + step_wall:.1f} | "
                         f"{'/'.join(map(str, units))} (per tracked frame: "
                         f"{' '.join(str(f.get('units', '-')) for f in m['frames'][1:])}) | "
                         f"{max(avg[-1]['spatial'])} / {max(avg[-1]['pointers'])} | "
                         f"{', '.join(str(f['frame']) for f in avg)} | {by_frame} |")
        L += ["", f"Stages of the averaged tracked frames ({unit}, mean per frame; the rest of a step is memory "
                  "assembly, prompt encoder, tree rules, preprocessing):", "",
              "| model @ input | mode | memory attention | mask decoder | memory encoder |", "|---|---|---|---|---|"]
        for r in cost:
            if "error" in r:
                continue
            for mode, m in r["modes"].items():
                avg = averaged(m["frames"], m["full_memory"])
                mean = lambda k: statistics.mean(f["stages"].get(k, 0.0) for f in avg)  # noqa: E731
                L.append(f"| {r['spec']['model']} @ {r['spec']['image_size']} | {mode} | "
                         f"{mean('memory attention'):.2f} | {mean('mask decoder'):.2f} | {mean('memory encoder'):.2f} |")
        L += ["", "| model | parameters | build CPU s | peak RSS | wall of the case | load (1 min) at its end |",
              "|---|---|---|---|---|---|"]
        L += [f"| {r['spec']['model']} | {r['params'] / 1e6:.1f} M | {r['build_cpu_s']:.1f} | "
              f"{fmt_bytes(r['peak_rss'])} | {r.get('wall_s', 0):.0f} s | {r.get('load', [float('nan')])[0]:.1f} |"
              for r in cost if "error" not in r]
    if state:
        L += ["", "Tracking state (`Tracker.state_nbytes()`) on the same still clip, same weights rule, measured at a "
                  "reduced input; **computed** at the real input from the tensors held (memories and pending masks "
                  "scale with the square of the input side, pointers do not).", "",
              "| model @ measured input | mode | frames | state bytes, measured | tensors held (shape x count) "
              "| at the real input, **computed** |", "|---|---|---|---|---|---|"]
        for r in state:
            sp = r["spec"]
            if "error" in r:
                L.append(f"| {sp['model']} @ {sp['image_size']} | {sp['mode']} | error: {r['error'][:100]} | | | |")
                continue
            full = STATE_FULL_SIZE[sp["model"]]
            for n, a in sorted(r["at"].items(), key=lambda kv: int(kv[0])):
                held = "; ".join(f"{'x'.join(map(str, s)) or 'scalar'} {d} x {c}" for s, d, _, c in a["groups"])
                L.append(f"| {sp['model']} @ {sp['image_size']} | {sp['mode']} | {int(n):,} | {a['bytes']:,} | "
                         f"{held} | {fmt_bytes(full_size_bytes(a['groups'], full / sp['image_size']))} @ {full} |")
    return L
