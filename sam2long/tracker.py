"""The tracker: prompts in, a stream of per-frame masks out.

For every object, P pathways (memory banks) each propose 3 candidates per frame;
the tree rules (`tree.py`) keep P of them. Pathways with the same history are one
shared `Node`, computed once; all distinct pathways of all objects go through the
networks as one batch per frame (`core.py`).

Results stream exactly: a frame is emitted once every surviving pathway of an
object descends from the same node at that frame, because the final best pathway
must then pass through it too. At the end of the frames the best pathway is read
back, as in the paper. `max_lag` bounds the wait by committing to the current best
pathway (pruning the others), an approximation of the offline result.
"""

from __future__ import annotations

import contextlib
import copy
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .core import InferenceCore
from .errors import FrameError, PromptError
from .frames import FrameSource
from .memory import MemoryEntry, Node, drop_unreachable, extend, plan_memory
from .model import LoadedModel
from .prompts import PromptSet
from .tree import Choice, TreeConfig, select_candidates

DIRECTIONS = ("forward", "backward", "both")


@dataclass
class FrameResult:
    frame_idx: int
    obj_ids: list
    masks: torch.Tensor  # bool [n, H, W], CPU
    logits: torch.Tensor | None  # float32 [n, H, W], CPU, with return_logits=True
    object_scores: list
    pathway_scores: list


def _retire(node: Node) -> None:
    """A node that is no longer a leaf keeps only its output (until emitted); its
    memory entries live on only in the lists of the pathways that can still read them."""
    node.entry, node.reliable, node.recent = None, (), ()


@dataclass(eq=False)
class _Object:
    """One object's tree within a pass."""

    obj_id: int
    cond: list  # prompt MemoryEntries reached in this pass
    pathways: list  # P leaf Nodes, best first; identical pathways share a Node
    frontier: Node  # last committed node
    emitted_to: int  # last frame whose output was handed out
    seeded: bool = False  # SAM2Long's single-path seed frame done


@dataclass(eq=False)
class _Pass:
    step: int  # +1 forward, -1 backward
    next_frame: int
    starts: dict  # obj_id -> frame where it starts in this pass (not yet started)
    silent_starts: bool  # "both": the backward pass does not re-emit start frames
    shot_length: int  # SAM 2's num_frames: frames known in the shot (pointer positions)
    objects: dict = field(default_factory=dict)  # obj_id -> _Object


@dataclass
class TrackingState:
    """Everything needed to continue tracking exactly, detached from any Tracker."""

    variant: str
    image_size: int
    tree: TreeConfig
    max_lag: int | None
    frame_size: tuple | None
    prompts: PromptSet
    run: _Pass | None


class Tracker:
    def __init__(self, model: LoadedModel, tree: TreeConfig | None = None, max_lag: int | None = None):
        if max_lag is not None and max_lag < 1:
            raise ValueError(f"max_lag must be >= 1 or None, got {max_lag!r}")
        self.model = model
        self.tree = tree or TreeConfig()
        self.max_lag = max_lag
        self.core = InferenceCore(model)
        self.prompts = PromptSet()
        self._frame_size = None  # (H, W) of the frames tracked so far
        self._run: _Pass | None = None

    # ---- prompts ----------------------------------------------------------------------------
    def add_points(self, frame: int, obj_id: int, points, labels=None):
        self.prompts.add_points(frame, obj_id, points, labels)

    def add_box(self, frame: int, obj_id: int, box, points=None, labels=None):
        self.prompts.add_box(frame, obj_id, box, points, labels)

    def add_mask(self, frame: int, obj_id: int, mask):
        self.prompts.add_mask(frame, obj_id, mask)

    # ---- state ------------------------------------------------------------------------------
    def state(self) -> TrackingState:
        """A detached copy of the tracking state (tensors included)."""
        return copy.deepcopy(
            TrackingState(
                variant=self.model.variant,
                image_size=self.model.image_size,
                tree=self.tree,
                max_lag=self.max_lag,
                frame_size=self._frame_size,
                prompts=self.prompts,
                run=self._run,
            )
        )

    @classmethod
    def resume(cls, model: LoadedModel, state: TrackingState) -> "Tracker":
        if (state.variant, state.image_size) != (model.variant, model.image_size):
            raise ValueError(
                f"this state was tracked with {state.variant} at {state.image_size}px, not "
                f"{model.variant} at {model.image_size}px; resume with the same model"
            )
        state = copy.deepcopy(state)
        tracker = cls(model, state.tree, state.max_lag)
        tracker.prompts, tracker._frame_size, tracker._run = state.prompts, state.frame_size, state.run
        return tracker

    def state_nbytes(self) -> int:
        """Bytes of tensors held by the tracking state (memories, pointers, pending masks)."""
        seen, total = set(), 0

        def add(t):
            nonlocal total
            if t is not None and id(t) not in seen:
                seen.add(id(t))
                total += t.numel() * t.element_size()

        if self._run is None:
            return 0
        for obj in self._run.objects.values():
            entries = list(obj.cond)
            for leaf in set(obj.pathways):
                entries += list(leaf.reliable) + list(leaf.recent)
                if leaf.entry is not None:
                    entries.append(leaf.entry)
                node = leaf
                while node is not None:  # outputs not yet committed
                    add(node.lowres)
                    node = node.parent
            for e in entries:
                if id(e) not in seen:
                    seen.add(id(e))
                    add(e.ptr)
                    add(e.mem)
        return total

    # ---- propagation ------------------------------------------------------------------------
    def propagate(
        self,
        source: FrameSource,
        direction: str = "forward",
        start: int | None = None,
        end: int | None = None,
        return_logits: bool = False,
        on_step=None,
        shot_length: int | None = None,
    ):
        """Track through `source`, yielding a FrameResult per frame in processing order.

        `shot_length`: frames in the whole shot when `source` is only its first chunk
        (default: the source ends the shot, `first_index + len(source)`). As in SAM 2,
        object pointers are positioned by distance / (min(shot_length, 16) - 1), so only
        shots shorter than 16 frames depend on it. A continued run keeps the length of
        the run it continues, extended to the end of each new chunk: a stream whose first
        chunk has fewer than 16 frames matches one uninterrupted run only if that first
        chunk is given the shot's length (any value >= 16 for an open-ended stream)."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        first, last = source.first_index, source.first_index + len(source) - 1
        size = (source.height, source.width)
        if self._frame_size is not None and self._frame_size != size:
            raise FrameError(
                f"these frames are {size[1]}x{size[0]} but the state was tracked on "
                f"{self._frame_size[1]}x{self._frame_size[0]} frames; give frames of the same shot"
            )
        start = first if start is None else start
        end = last if end is None else end
        if not (first <= start <= end <= last):
            raise FrameError(f"start/end {start}..{end} must lie within the frames {first}..{last}")
        if shot_length is not None and shot_length <= last:
            raise ValueError(f"shot_length {shot_length} is shorter than the frames given (0..{last}); "
                             "give the whole shot's frame count, or leave it out")
        shot_length = last + 1 if shot_length is None else int(shot_length)
        # A continued run may hold prompts of earlier chunks: check frames only on a fresh run.
        self.prompts.check(source.height, source.width, first, last, frames=self._run is None)
        if not self.prompts.by_object:
            raise PromptError("no prompts: add a point, box or mask for at least one object first")
        self._frame_size = size

        if self._run is not None:
            self._run.shot_length = max(self._run.shot_length, shot_length)
            yield from self._continue(source, direction, start, end, return_logits, on_step)
            return
        runs = []
        if direction in ("forward", "both"):
            starts = self._first_prompts(start, end, latest=False)
            runs.append(_Pass(+1, min(starts.values()), starts, silent_starts=False, shot_length=shot_length))
            if direction == "both":
                back = dict(starts)  # the forward pass consumes its own dict
                runs.append(_Pass(-1, max(back.values()), back, silent_starts=True, shot_length=shot_length))
        else:
            starts = self._first_prompts(start, end, latest=True)
            runs.append(_Pass(-1, max(starts.values()), starts, silent_starts=False, shot_length=shot_length))
        for run in runs:
            self._run = run
            stop = end if run.step > 0 else start
            yield from self._run_pass(source, stop, return_logits, on_step)
        if direction == "both":
            self._run = None  # two passes over one shot: nothing to continue

    def _first_prompts(self, start, end, latest):
        starts = {}
        for obj_id, per_frame in self.prompts.by_object.items():
            frames = [f for f in per_frame if start <= f <= end]
            if frames:
                starts[obj_id] = max(frames) if latest else min(frames)
        if not starts:
            raise PromptError(f"no prompt lies in frames {start}..{end}; prompt an object inside the range")
        return starts

    def _continue(self, source, direction, start, end, return_logits, on_step):
        run = self._run
        if direction != ("forward" if run.step > 0 else "backward"):
            raise ValueError("a continued run keeps its direction; start a new Tracker to change it")
        if not (start <= run.next_frame <= end):
            raise FrameError(
                f"the tracking state continues at frame {run.next_frame}, but the frames given are "
                f"{start}..{end}; give the chunk that contains frame {run.next_frame}"
            )
        # Objects prompted since: they start at their first prompt still ahead.
        for obj_id, per_frame in self.prompts.by_object.items():
            if obj_id in run.objects or obj_id in run.starts:
                continue
            ahead = [f for f in per_frame if (f - run.next_frame) * run.step >= 0]
            if not ahead:
                raise PromptError(
                    f"object {obj_id}'s prompts are on frames already tracked (the state is at frame "
                    f"{run.next_frame}); prompt it on a frame still ahead, or track again from the start"
                )
            run.starts[obj_id] = min(ahead) if run.step > 0 else max(ahead)
        yield from self._run_pass(source, end if run.step > 0 else start, return_logits, on_step)

    def _run_pass(self, source, stop, return_logits, on_step):
        run = self._run
        order = list(range(run.next_frame, stop + run.step, run.step))
        expected: dict[int, list] = {}  # frame -> objects that will output on it
        ready: dict[int, dict] = {}  # frame -> obj_id -> (lowres, object score, pathway score)
        cursor = 0
        for t, frame in source.frames(order):
            with self._computing():
                self._step(t, frame, expected, ready)
            run.next_frame = t + run.step
            if on_step is not None:
                on_step(t)
            while cursor < len(order) and self._frame_done(order[cursor], expected, ready):
                result = self._result(order[cursor], expected, ready, return_logits)
                cursor += 1
                if result is not None:
                    yield result
        # End of the frames: read the best pathway back (the paper's offline answer).
        for obj in run.objects.values():
            self._emit_path(obj, obj.pathways[0], ready)
        while cursor < len(order):
            result = self._result(order[cursor], expected, ready, return_logits)
            cursor += 1
            if result is not None:
                yield result

    @contextlib.contextmanager
    def _computing(self):
        # Entered per step, never across a yield, so callers never run in these modes.
        with torch.inference_mode(), self.model.autocast():
            yield

    # ---- one frame ----------------------------------------------------------------------------
    def _step(self, t, frame, expected, ready):
        run, core, cfg = self._run, self.core, self.tree
        H, W = self._frame_size
        starting = [o for o, s in run.starts.items() if s == t]
        prompted = [o for o in run.objects if t in self.prompts.by_object.get(o, {})]
        tracking = [o for o in run.objects if o not in prompted]
        expected[t] = sorted(o for o in starting + list(run.objects) if not (run.silent_starts and o in starting))
        if not expected[t] and not starting:
            return
        ff = core.encode_image(core.preprocess(frame))

        for obj_id in starting + prompted:
            prompt = self.prompts.by_object[obj_id][t]
            points, labels, mask = self.prompts.model_inputs(prompt, H, W, core.image_size)
            lowres, entry = core.prompt(t, ff, points, labels, mask)
            if obj_id in run.starts and run.starts[obj_id] == t:
                del run.starts[obj_id]
                root = Node(t, None, 0.0, entry.object_score, None, None)
                run.objects[obj_id] = _Object(obj_id, [entry], [root] * cfg.pathways, root, emitted_to=t)
                if not run.silent_starts:
                    ready.setdefault(t, {})[obj_id] = (lowres, entry.object_score, 0.0)
            else:  # a correction: every pathway takes the prompt's mask on this frame
                obj = run.objects[obj_id]
                obj.cond.append(entry)
                shared = {}
                for leaf in obj.pathways:
                    if id(leaf) not in shared:
                        shared[id(leaf)] = Node(
                            t, leaf, leaf.score, entry.object_score, lowres, None, leaf.reliable, leaf.recent
                        )
                        _retire(leaf)
                obj.pathways = [shared[id(leaf)] for leaf in obj.pathways]
                self._commit(obj, ready)

        if tracking:
            self._track(t, ff, [run.objects[o] for o in tracking], ready)
        for o in tracking + prompted:
            obj = run.objects[o]
            drop_unreachable(list(set(obj.pathways)), t + run.step, cfg, core.num_maskmem)

    def _track(self, t, ff, objects, ready):
        core, cfg = self.core, self.tree
        units, plans = [], []  # one unit per distinct pathway of each object
        unit_of = {}
        for obj in objects:
            for leaf in obj.pathways:
                if id(leaf) not in unit_of:
                    unit_of[id(leaf)] = len(units)
                    units.append(leaf)
                    plans.append(plan_memory(leaf, t, obj.cond, cfg, core.num_maskmem, core.max_ptrs))
        decoded = core.track(ff, plans, self._run.shot_length)

        picks, new_nodes, pending = [], {}, []
        for obj in objects:
            rows = [unit_of[id(leaf)] for leaf in obj.pathways]
            if not obj.seeded:
                # Seed frame: SAM 2's greedy pick (first highest IoU), single path, score 0.
                ious = decoded.ious_cpu[rows[0]]
                best = max(range(len(ious)), key=lambda j: (ious[j], -j))
                choices = [Choice(0, best, 0.0)] * cfg.pathways
                obj.seeded = True
            else:
                choices = select_candidates(
                    [leaf.score for leaf in obj.pathways],
                    [decoded.ious_cpu[r] for r in rows],
                    [decoded.object_logits_cpu[r] for r in rows],
                    cfg.pathways,
                    cfg.uncertainty,
                )
            keys = []
            for c in choices:
                parent = obj.pathways[c.parent]
                key = (id(parent), c.index)
                if key not in new_nodes:
                    new_nodes[key] = (parent, rows[c.parent], c)
                    picks.append((rows[c.parent], c.index))
                keys.append(key)
            pending.append((obj, keys))

        ptrs, mems = core.commit(ff, decoded, picks)
        made = {}
        for k, (key, (parent, unit, choice)) in enumerate(new_nodes.items()):
            logit = decoded.object_logits_cpu[unit]
            entry = MemoryEntry(t, ptrs[k], logit, decoded.ious_cpu[unit][choice.index], mems[k])
            reliable, recent = extend(parent, entry, cfg)
            # Clones, so a kept node does not pin the whole batch's tensors.
            entry.ptr, entry.mem = entry.ptr.clone(), entry.mem.clone()
            lowres = decoded.lowres[unit, choice.index].clone()
            made[key] = Node(t, parent, choice.score, logit, lowres, entry, reliable, recent)
        for leaf in units:
            _retire(leaf)
        for obj, keys in pending:
            obj.pathways = [made[k] for k in keys]
            self._commit(obj, ready)

    # ---- commits and output -------------------------------------------------------------------
    def _commit(self, obj: _Object, ready):
        """Emit frames on which all pathways agree; force it beyond max_lag."""
        nodes = list(obj.pathways)
        while len({id(n) for n in nodes}) > 1 and nodes[0].frame != obj.frontier.frame:
            nodes = [n.parent for n in nodes]
        agreed = nodes[0]
        if len({id(n) for n in nodes}) == 1 and agreed is not obj.frontier:
            self._emit_path(obj, agreed, ready)
            obj.frontier, agreed.parent = agreed, None
        if self.max_lag is None:
            return
        step = self._run.step
        leaf = obj.pathways[0]
        lag = (leaf.frame - obj.frontier.frame) * step
        if lag <= self.max_lag:
            return
        target_frame = leaf.frame - step * self.max_lag
        target = leaf
        while target.frame != target_frame:
            target = target.parent
        keep = []
        for p in obj.pathways:
            n = p
            while n.frame != target_frame:
                n = n.parent
            if n is target:
                keep.append(p)
        obj.pathways = keep
        self._emit_path(obj, target, ready)
        obj.frontier, target.parent = target, None

    def _emit_path(self, obj: _Object, node: Node, ready):
        """Hand out the outputs on the path ending at `node` not handed out yet."""
        step = self._run.step
        chain = []
        while node is not None and (node.frame - obj.emitted_to) * step > 0:
            chain.append(node)
            node = node.parent
        for n in reversed(chain):
            ready.setdefault(n.frame, {})[obj.obj_id] = (n.lowres, n.object_score, n.score)
            n.lowres = None
        if chain:
            obj.emitted_to = chain[0].frame

    @staticmethod
    def _frame_done(t, expected, ready):
        return t in expected and all(o in ready.get(t, {}) for o in expected[t])

    def _result(self, t, expected, ready, return_logits):
        objs = expected.pop(t, [])
        got = ready.pop(t, {})
        if not objs:
            return None
        H, W = self._frame_size
        lowres = torch.stack([got[o][0] for o in objs]).float()
        logits = F.interpolate(lowres[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
        # Threshold where the logits are; copy bool masks (4x fewer bytes) unless logits are wanted.
        masks = (logits > 0).cpu()
        return FrameResult(
            frame_idx=t,
            obj_ids=objs,
            masks=masks,
            logits=logits.cpu() if return_logits else None,
            object_scores=[float(got[o][1]) for o in objs],
            pathway_scores=[float(got[o][2]) for o in objs],
        )
