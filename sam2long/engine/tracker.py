"""The tracker: prompts in, a stream of per-frame masks out.

For every object, P pathways (memory banks) each propose 3 candidates per frame;
the tree rules (`tree.py`) keep P of them. `Tracker` is the public API and plans
the passes (forward, backward, both; continuing a handed-over state); the
per-frame tree step and its commits are `step.py`.

Results stream exactly: a frame is emitted once every surviving pathway of an
object descends from the same node at that frame, because the final best pathway
must then pass through it too. At the end of the frames the best pathway is read
back, as in the paper. `max_lag` bounds the wait by committing to the current best
pathway (pruning the others), an approximation of the offline result.
"""

from __future__ import annotations

import collections
import contextlib
import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import FrameError, PromptError
from ..media.frames import FrameSource
from ..models.model import LoadedModel
from ..options import DIRECTIONS
from ..prompts import PromptSet
from .core import InferenceCore
from .snapshots import Snapshot, SnapshotDir, first_change, load_snapshot, prompt_digests
from .step import Output, Pass, TreeStep
from .tree import TreeConfig


@dataclass
class FrameResult:
    frame_idx: int
    obj_ids: list
    masks: torch.Tensor  # bool [n, H, W], CPU
    logits: torch.Tensor | None  # float32 [n, H, W], CPU, with return_logits=True
    object_scores: list
    pathway_scores: list


@dataclass
class TrackingState:
    """Everything needed to continue tracking exactly, detached from any Tracker."""

    variant: str
    image_size: int
    tree: TreeConfig
    max_lag: int | None
    frame_size: tuple | None
    prompts: PromptSet
    run: Pass | None


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
        self._run: Pass | None = None
        self._restored: Snapshot | None = None  # from_snapshot(): the pass continues from it

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

    @classmethod
    def from_snapshot(cls, model: LoadedModel, snapshot, copy_snapshot: bool = True) -> "Tracker":
        """A tracker that continues the pass of `snapshot` (a `Snapshot` or its file, see
        `propagate(snapshot_every=...)`). Add every prompt of the run first (the same ones
        on the frames before `snapshot.next_frame`, any on later frames), then call
        `propagate` with the same frames, direction and range: it yields the frames from
        `snapshot.head` on, exactly as the uninterrupted run with these prompts would.
        `copy_snapshot=False` uses a `Snapshot` object as it is (it is then used up)."""
        if isinstance(snapshot, Snapshot) and copy_snapshot:
            snapshot = copy.deepcopy(snapshot)  # the caller's snapshot stays reusable
        elif not isinstance(snapshot, Snapshot):
            snapshot = load_snapshot(snapshot, model.device)
        if (snapshot.variant, snapshot.image_size) != (model.variant, model.image_size):
            raise ValueError(
                f"this snapshot was tracked with {snapshot.variant} at {snapshot.image_size}px, not "
                f"{model.variant} at {model.image_size}px; resume with the same model"
            )
        tracker = cls(model, snapshot.tree, snapshot.max_lag)
        tracker._frame_size, tracker._run, tracker._restored = snapshot.frame_size, snapshot.run, snapshot
        return tracker

    def state_tensors(self) -> list:
        """The distinct tensors held by the tracking state (memories, pointers, pending masks)."""
        return [] if self._run is None else self._run.held_tensors()

    def state_nbytes(self) -> int:
        """Bytes of tensors held by the tracking state (memories, pointers, pending masks)."""
        return sum(t.numel() * t.element_size() for t in self.state_tensors())

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
        snapshot_every: int | None = None,
        snapshot_dir=None,
    ):
        """Track through `source`, yielding a FrameResult per frame in processing order.

        `shot_length`: frames in the whole shot when `source` is only its first chunk
        (default: the source ends the shot, `first_index + len(source)`). As in SAM 2,
        object pointers are positioned by distance / (min(shot_length, 16) - 1), so only
        shots shorter than 16 frames depend on it. A continued run keeps the length of
        the run it continues, extended to the end of each new chunk: a stream whose first
        chunk has fewer than 16 frames matches one uninterrupted run only if that first
        chunk is given the shot's length (any value >= 16 for an open-ended stream).

        `snapshot_every` K with `snapshot_dir` (a folder, or a `SnapshotDir`): after each
        frame whose next frame is a multiple of K, a `Snapshot` that continues at that next
        frame is saved there (one direction only, not "both"; a `SnapshotDir` with
        `max_kept` thins them out on long shots). Resume from one with `Tracker.from_snapshot`."""
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
        snapshots = None
        if snapshot_every is not None or snapshot_dir is not None:
            if snapshot_dir is None or not isinstance(snapshot_every, int) or snapshot_every < 1:
                raise ValueError("snapshots need both snapshot_every (a whole number >= 1) and snapshot_dir")
            if direction == "both":
                raise ValueError("snapshots are kept for one direction; track forward or backward to keep them")
            folder = snapshot_dir if isinstance(snapshot_dir, SnapshotDir) else SnapshotDir(snapshot_dir)
            snapshots = (snapshot_every, folder)
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
            yield from self._continue(source, direction, start, end, return_logits, on_step, snapshots)
            return
        runs = []
        if direction in ("forward", "both"):
            starts = self._first_prompts(start, end, latest=False)
            runs.append(Pass(+1, min(starts.values()), starts, silent_starts=False, shot_length=shot_length))
            if direction == "both":
                back = dict(starts)  # the forward pass consumes its own dict
                runs.append(Pass(-1, max(back.values()), back, silent_starts=True, shot_length=shot_length))
        else:
            starts = self._first_prompts(start, end, latest=True)
            runs.append(Pass(-1, max(starts.values()), starts, silent_starts=False, shot_length=shot_length))
        for run in runs:
            self._run = run
            stop = end if run.sign > 0 else start
            yield from self._run_pass(source, stop, return_logits, on_step, snapshots)
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

    def _continue(self, source, direction, start, end, return_logits, on_step, snapshots):
        run = self._run
        if direction != ("forward" if run.sign > 0 else "backward"):
            raise ValueError("a continued run keeps its direction; start a new Tracker to change it")
        if not (start <= run.next_frame <= end):
            raise FrameError(
                f"the tracking state continues at frame {run.next_frame}, but the frames given are "
                f"{start}..{end}; give the chunk that contains frame {run.next_frame}"
            )
        if self._restored is not None:
            self._check_restored(end if run.sign > 0 else start)
        # Objects not started yet (new ones, or given an earlier prompt since): they start
        # at their first prompt still ahead, as a run with all the prompts would; one whose
        # prompts were all removed does not start.
        for obj_id in [o for o in run.starts if o not in self.prompts.by_object]:
            del run.starts[obj_id]
        for obj_id, per_frame in self.prompts.by_object.items():
            if obj_id in run.objects:
                continue
            ahead = [f for f in per_frame if (f - run.next_frame) * run.sign >= 0]
            if not ahead:
                raise PromptError(
                    f"object {obj_id}'s prompts are on frames already tracked (the state is at frame "
                    f"{run.next_frame}); prompt it on a frame still ahead, or track again from the start"
                )
            run.starts[obj_id] = min(ahead) if run.sign > 0 else max(ahead)
        yield from self._run_pass(source, end if run.sign > 0 else start, return_logits, on_step, snapshots)

    def _check_restored(self, stop):
        snap = self._restored
        if stop != snap.stop:
            raise FrameError(f"the snapshot's pass ends at frame {snap.stop}, not {stop}; "
                             "give the same range as the run it was taken from")
        sign = self._run.sign
        consumed = {f: d for f, d in prompt_digests(self.prompts).items() if (snap.next_frame - f) * sign > 0}
        changed = first_change(snap.prompt_digests, consumed)
        if changed is not None:
            raise PromptError(
                f"the prompts on frame {changed} differ from the run the snapshot was taken from, which "
                f"had already tracked that frame (it continues at frame {snap.next_frame}); resume from "
                "an earlier snapshot, or track from the start"
            )

    def _run_pass(self, source, stop, return_logits, on_step, snapshots=None):
        run = self._run
        order = list(range(run.next_frame, stop + run.sign, run.sign))
        tree_step = TreeStep(self.core, self.prompts, self.tree, self.max_lag, self._frame_size, run)
        waiting = collections.deque(order)  # frames not handed out yet, in order
        if self._restored is not None:  # frames from the snapshot's head on are still to hand out
            tree_step.outputs = self._restored.outputs
            waiting = collections.deque(range(self._restored.head, stop + run.sign, run.sign))
            self._restored = None
        digests = None
        for t, frame in source.frames(order):
            with self._computing():
                tree_step(t, frame)
            run.next_frame = t + run.sign
            if on_step is not None:
                on_step(t)
            yield from self._hand_out(waiting, tree_step.outputs, return_logits, finished=False)
            if snapshots is not None and snapshots[1].due(run.next_frame, snapshots[0]) and t != stop:
                if digests is None:  # the prompts do not change during a pass
                    digests = prompt_digests(self.prompts)
                snapshots[1].save(self._snapshot(tree_step.outputs, waiting, stop, digests), snapshots[0])
        tree_step.finish()  # end of the frames: the best pathways are read back
        yield from self._hand_out(waiting, tree_step.outputs, return_logits, finished=True)

    def _snapshot(self, outputs, waiting, stop, digests) -> Snapshot:
        # Live objects, serialised at once by the caller (nothing is copied twice).
        run = self._run
        return Snapshot(
            variant=self.model.variant, image_size=self.model.image_size, tree=self.tree, max_lag=self.max_lag,
            frame_size=self._frame_size,
            prompt_digests={f: d for f, d in digests.items() if (run.next_frame - f) * run.sign > 0},
            run=run, outputs=outputs, head=waiting[0] if waiting else run.next_frame, stop=stop,
        )

    def _hand_out(self, waiting, outputs, return_logits, finished):
        """Results of the frames at the head of `waiting` whose outputs are all in (all of
        them once `finished`), in order; frames where no object is tracked yield none."""
        while waiting and (finished or outputs.done(waiting[0])):
            t = waiting.popleft()
            result = self._result(t, outputs.pop(t), return_logits)
            if result is not None:
                yield result

    @contextlib.contextmanager
    def _computing(self):
        # Entered per step, never across a yield, so callers never run in these modes.
        with torch.inference_mode(), self.model.autocast():
            yield

    def _result(self, t: int, got: dict[int, Output], return_logits: bool) -> FrameResult | None:
        if not got:
            return None
        H, W = self._frame_size
        objs = list(got)
        lowres = torch.stack([got[o].lowres for o in objs]).float()
        logits = F.interpolate(lowres[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
        # Threshold where the logits are; copy bool masks (4x fewer bytes) unless logits are wanted.
        masks = (logits > 0).cpu()
        return FrameResult(
            frame_idx=t,
            obj_ids=objs,
            masks=masks,
            logits=logits.cpu() if return_logits else None,
            object_scores=[float(got[o].object_score) for o in objs],
            pathway_scores=[float(got[o].pathway_score) for o in objs],
        )
