"""One frame of the memory tree, for every object of a pass.

`TreeStep` advances a `Pass` by one frame: prompt frames start an object or correct
every pathway of it, then all distinct pathways of all tracked objects go through
the networks as one batch (`core.py`) and the tree rules (`tree.py`) keep P
candidates per object. Frames are committed as soon as every surviving pathway of
an object descends from the same node (the final best pathway must pass through it
too), or forced to the current best pathway beyond `max_lag`. Committed outputs
wait in `Outputs` until every object expected on their frame has one.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import NamedTuple

import torch

from .memory import MemoryEntry, Node, drop_unreachable, extend, plan_memory
from .tree import SAM3_MEMORY_THRESHOLD, Choice, TreeConfig, sam3_memory_score, select_candidates


class Output(NamedTuple):
    """One object's committed output on one frame."""

    lowres: torch.Tensor  # [h, w] mask logits at the network's resolution
    object_score: float  # object-presence logit
    pathway_score: float  # cumulative log-IoU score of the committed pathway


class Outputs:
    """Per-frame outputs of a pass: which objects a frame expects, and the outputs
    committed for it so far. A frame is done once every expected object has one."""

    def __init__(self):
        self._expected: dict[int, list] = {}  # frame -> obj_ids that will output on it
        self._ready: dict[int, dict] = {}  # frame -> obj_id -> Output

    def expect(self, t: int, obj_ids: list) -> None:
        self._expected[t] = obj_ids

    def put(self, t: int, obj_id: int, output: Output) -> None:
        self._ready.setdefault(t, {})[obj_id] = output

    def done(self, t: int) -> bool:
        return t in self._expected and all(o in self._ready.get(t, {}) for o in self._expected[t])

    def pop(self, t: int) -> dict[int, Output]:
        """The outputs of frame `t` by object, in expected order ({} if none), forgotten here."""
        objs = self._expected.pop(t, [])
        got = self._ready.pop(t, {})
        return {o: got[o] for o in objs}


@dataclass(eq=False)
class ObjectTree:
    """One object's tree within a pass."""

    obj_id: int
    prompt_entries: list  # prompt MemoryEntries reached in this pass
    pathways: list  # P leaf Nodes, best first; identical pathways share a Node
    frontier: Node  # last committed node
    emitted_to: int  # last frame whose output was handed out
    seeded: bool = False  # SAM2Long's single-path seed frame done

    # Pickled and deep-copied with the nodes as a flat list, oldest first, parents by
    # index, so a long uncommitted chain (thousands of frames) never recurses per frame.
    def __getstate__(self):
        order, index = [], {}
        for start in [*self.pathways, self.frontier]:
            chain, node = [], start
            while node is not None and id(node) not in index:
                chain.append(node)
                node = node.parent
            for n in reversed(chain):
                index[id(n)] = len(order)
                order.append(n)
        nodes = [
            (-1 if n.parent is None else index[id(n.parent)], {f: getattr(n, f) for f in _NODE_FIELDS})
            for n in order
        ]
        state = dict(self.__dict__)
        state.update(pathways=[index[id(p)] for p in self.pathways], frontier=index[id(self.frontier)], nodes=nodes)
        return state

    def __setstate__(self, state):
        state = dict(state)
        nodes = []
        for parent, values in state.pop("nodes"):
            nodes.append(Node(parent=nodes[parent] if parent >= 0 else None, **values))
        state.update(pathways=[nodes[i] for i in state["pathways"]], frontier=nodes[state["frontier"]])
        self.__dict__.update(state)


@dataclass(eq=False)
class Pass:
    """One pass over the frames in one direction (part of the tracking state)."""

    sign: int  # +1 forward, -1 backward: frame t is followed by t + sign
    next_frame: int
    starts: dict  # obj_id -> frame where it starts in this pass (not yet started)
    silent_starts: bool  # "both": the backward pass does not re-emit start frames
    shot_length: int  # SAM 2's num_frames: frames known in the shot (pointer positions)
    objects: dict = field(default_factory=dict)  # obj_id -> ObjectTree

    def held_tensors(self) -> list:
        """The distinct tensors this pass holds: memories and pointers its pathways can
        still read, and the masks of frames not yet committed."""
        held = {}
        for obj in self.objects.values():
            entries = list(obj.prompt_entries)
            for leaf in set(obj.pathways):
                entries += [*leaf.reliable, *leaf.recent, leaf.entry]
                node = leaf
                while node is not None:  # outputs not yet committed
                    held[id(node.lowres)] = node.lowres
                    node = node.parent
            for e in entries:
                if e is not None:
                    held[id(e.ptr)], held[id(e.mem)] = e.ptr, e.mem
        return [t for t in held.values() if t is not None]


_NODE_FIELDS = [f.name for f in fields(Node) if f.name != "parent"]


def _retire(node: Node) -> None:
    """A node that is no longer a leaf keeps only its output (until emitted); its
    memory entries live on only in the lists of the pathways that can still read them."""
    node.entry, node.reliable, node.recent = None, (), ()


def _ancestor_at(node: Node, frame: int) -> Node:
    while node.frame != frame:
        node = node.parent
    return node


class TreeStep:
    """Advances `run` frame by frame; committed outputs go to `self.outputs`."""

    def __init__(self, core, prompts, tree: TreeConfig, max_lag: int | None, frame_size: tuple, run: Pass):
        self.core, self.prompts, self.tree, self.max_lag = core, prompts, tree, max_lag
        self.frame_size = frame_size  # (H, W) of the source frames, for prompt coordinates
        self.run = run
        self.outputs = Outputs()

    def __call__(self, t: int, frame) -> None:
        run, core, cfg = self.run, self.core, self.tree
        H, W = self.frame_size
        starting = [o for o, s in run.starts.items() if s == t]
        prompted = [o for o in run.objects if t in self.prompts.by_object.get(o, {})]
        tracking = [o for o in run.objects if o not in prompted]
        expected = sorted(o for o in starting + list(run.objects) if not (run.silent_starts and o in starting))
        self.outputs.expect(t, expected)
        if not expected and not starting:
            return
        features = core.encode_image(core.preprocess(frame))

        prompting = starting + prompted
        inputs = [self.prompts.model_inputs(self.prompts.by_object[o][t], H, W, core.image_size) for o in prompting]
        for obj_id, (lowres, entry) in zip(prompting, core.prompt(t, features, inputs)):
            if obj_id in run.starts and run.starts[obj_id] == t:
                del run.starts[obj_id]
                root = Node(t, None, 0.0, entry.object_score, None, None)
                run.objects[obj_id] = ObjectTree(obj_id, [entry], [root] * cfg.pathways, root, emitted_to=t)
                if not run.silent_starts:
                    self.outputs.put(t, obj_id, Output(lowres, entry.object_score, 0.0))
            else:  # a correction: every pathway takes the prompt's mask on this frame
                obj = run.objects[obj_id]
                obj.prompt_entries.append(entry)
                shared = {}
                for leaf in obj.pathways:
                    if id(leaf) not in shared:
                        shared[id(leaf)] = Node(
                            t, leaf, leaf.score, entry.object_score, lowres, None, leaf.reliable, leaf.recent
                        )
                        _retire(leaf)
                obj.pathways = [shared[id(leaf)] for leaf in obj.pathways]
                self._commit(obj)

        if tracking:
            self._track(t, features, [run.objects[o] for o in tracking])
        for o in tracking + prompted:
            obj = run.objects[o]
            drop_unreachable(list(set(obj.pathways)), t + run.sign, cfg, core.num_maskmem)

    def finish(self) -> None:
        """End of the frames: hand out each object's best pathway (the paper's offline answer)."""
        for obj in self.run.objects.values():
            self._emit_path(obj, obj.pathways[0])

    # ---- the batched tree step ----------------------------------------------------------------
    def _track(self, t, features, objects):
        core, cfg = self.core, self.tree
        units, plans = [], []  # one unit per distinct pathway of each object
        unit_of = {}
        for obj in objects:
            for leaf in obj.pathways:
                if id(leaf) not in unit_of:
                    unit_of[id(leaf)] = len(units)
                    units.append(leaf)
                    plans.append(plan_memory(
                        leaf, t, obj.prompt_entries, cfg, core.num_maskmem, core.max_ptrs, core.max_prompt_frames
                    ))
        decoded = core.track(features, plans, self.run.shot_length)

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

        ptrs, mems = core.commit(features, decoded, picks)
        frame_reliable = None
        if cfg.reliability == "sam3-joint":  # SAM 3's predictor: one decision for the frame
            score = sam3_memory_score(decoded.object_logits_cpu, [max(ious) for ious in decoded.ious_cpu])
            frame_reliable = score > SAM3_MEMORY_THRESHOLD
        made = {}
        for k, (key, (parent, unit, choice)) in enumerate(new_nodes.items()):
            logit = decoded.object_logits_cpu[unit]
            entry = MemoryEntry(t, ptrs[k], logit, decoded.ious_cpu[unit][choice.index], mems[k])
            reliable, recent = extend(parent, entry, cfg, frame_reliable)
            # Clones, so a kept node does not pin the whole batch's tensors.
            entry.ptr, entry.mem = entry.ptr.clone(), entry.mem.clone()
            lowres = decoded.lowres[unit, choice.index].clone()
            made[key] = Node(t, parent, choice.score, logit, lowres, entry, reliable, recent)
        for leaf in units:
            _retire(leaf)
        for obj, keys in pending:
            obj.pathways = [made[k] for k in keys]
            self._commit(obj)

    # ---- commits ------------------------------------------------------------------------------
    def _commit(self, obj: ObjectTree) -> None:
        self._commit_agreed(obj)
        if self.max_lag is not None:
            self._commit_lagging(obj)

    def _commit_agreed(self, obj: ObjectTree) -> None:
        """Commit the newest frame on which all pathways pass through the same node (exact)."""
        nodes = list(obj.pathways)
        while len({id(n) for n in nodes}) > 1 and nodes[0].frame != obj.frontier.frame:
            nodes = [n.parent for n in nodes]
        agreed = nodes[0]
        if len({id(n) for n in nodes}) == 1 and agreed is not obj.frontier:
            self._commit_to(obj, agreed)

    def _commit_lagging(self, obj: ObjectTree) -> None:
        """Beyond `max_lag` frames uncommitted, commit the best pathway's frame `max_lag`
        behind and prune the pathways that do not pass through it (an approximation)."""
        sign = self.run.sign
        leaf = obj.pathways[0]
        if (leaf.frame - obj.frontier.frame) * sign <= self.max_lag:
            return
        target_frame = leaf.frame - sign * self.max_lag
        target = _ancestor_at(leaf, target_frame)
        obj.pathways = [p for p in obj.pathways if _ancestor_at(p, target_frame) is target]
        self._commit_to(obj, target)

    def _commit_to(self, obj: ObjectTree, node: Node) -> None:
        self._emit_path(obj, node)
        obj.frontier, node.parent = node, None

    def _emit_path(self, obj: ObjectTree, node: Node) -> None:
        """Hand out the outputs on the path ending at `node` not handed out yet."""
        sign = self.run.sign
        chain = []
        while node is not None and (node.frame - obj.emitted_to) * sign > 0:
            chain.append(node)
            node = node.parent
        for n in reversed(chain):
            self.outputs.put(n.frame, obj.obj_id, Output(n.lowres, n.object_score, n.score))
            n.lowres = None
        if chain:
            obj.emitted_to = chain[0].frame
