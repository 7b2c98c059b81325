"""SAM2Long Track: prompts + frames -> a compact track result and a MASK batch.

Frames come from an IMAGE batch (track kept in memory) or are streamed from a shot
handle or core's VIDEO (masks spilled to ComfyUI's temp folder as they are committed).
Deterministic for equal inputs, so ComfyUI's own output cache already avoids
re-tracking when only downstream nodes change; a changed file behind a shot changes
Load Shot's fingerprint, which re-runs this node. A forward run of a shot keeps
snapshots (engine/snapshots.py) in a bounded cache of runs (engine/runcache.py): queued
again with prompts changed only from some frame on, it resumes from the last snapshot
the change cannot affect and reuses the masks before it (`_resume`).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

import torch
from comfy_api.latest import io
from sam2long.options import DIRECTIONS
from sam2long.engine.tree import MAX_IOU_THRESHOLD, MAX_PATHWAYS, MAX_UNCERTAINTY, TreeConfig

from . import access, served
from .prompts import PromptChain, apply_prompts
from .runtime import check_interrupt, intermediate_device
from .sockets import CATEGORY, ModelType, PromptsType, ShotType, StateType, TrackType
from .widgets import MAX_FRAMES, real, whole

SOFT_BITS = 8  # tracks keep each object's probability too (soft mattes), quantised to 8 bits
MAX_PUSH_AGREE = 100
PUSH_IOU = 0.9  # a pushed-back mask "agrees" with the forward one from this IoU on

log = logging.getLogger("SAM2Long")

# Resuming a re-queued shot (issue 20): snapshots every SNAPSHOT_EVERY frames, at most
# SNAPSHOTS_KEPT per run (the spacing doubles beyond, see SnapshotDir), for the last
# RESUMABLE_RUNS runs within a disk budget. Measured in bench/RESULTS.md ("Resume").
def _snapshot_every() -> int:
    text = os.environ.get("SAM2LONG_SNAPSHOT_EVERY", "32")
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"SAM2Long: SAM2LONG_SNAPSHOT_EVERY must be a whole number >= 1 (frames), got {text!r}")
    return value


SNAPSHOT_EVERY = _snapshot_every()  # the environment may set it (SAM2LONG_SNAPSHOT_EVERY)
SNAPSHOTS_KEPT = 16
RESUMABLE_RUNS = 8
SNAPSHOT_DISK_BUDGET = 4 << 30


def _run_cache():
    from sam2long.engine.runcache import RunCache

    global _RUNS
    if _RUNS is None:
        _RUNS = RunCache(RESUMABLE_RUNS, SNAPSHOT_DISK_BUDGET)
    return _RUNS


_RUNS = None


@dataclass(frozen=True, eq=False)
class ShotState:
    """What flows through a SAM2LONG_STATE socket: the engine's detached state after
    a forward run, and the global frame index the next chunk must start at."""

    state: object
    next_index: int
    height: int
    width: int


def video_file(video) -> str:
    """The real path of the file behind a core VIDEO value, for streaming (never
    get_components(), which decodes every frame into memory). Like a typed path, it must
    lie inside the folders the pack may read (nodes/access.py): another pack's node may
    have made the VIDEO from any path."""
    source = video.get_stream_source() if hasattr(video, "get_stream_source") else None
    if isinstance(source, (str, os.PathLike)):
        return access.readable(os.path.abspath(os.fspath(source)), f"the VIDEO's file {os.fspath(source)!r}")
    raise ValueError("SAM2Long: this VIDEO is not a file on disk (it was built in memory, e.g. by Create "
                     "Video), so it cannot be streamed. Load the file with SAM2Long Load Shot (or core "
                     "Load Video), or connect its frames to the images input instead.")


def spill_folder() -> str:
    """Where streamed tracks spill their masks: ComfyUI's temp folder (emptied at start-up)."""
    import folder_paths

    return os.path.join(folder_paths.get_temp_directory(), "sam2long")


def _check_prompt_range(prompts, count: int) -> None:
    for e in prompts.entries:
        if not 0 <= e.frame < count:
            raise ValueError(
                f"SAM2Long: a prompt for object {e.obj_id} is on frame {e.frame}, but the shot's range has "
                f"frames 0..{count - 1}. frame_index counts from the first frame of the range (Load Shot's "
                "first_frame); move the prompt or widen the range.")


def _frame_span(start_frame, end_frame, n: int) -> tuple[int, int]:
    """The first and last frame (of a batch or range of n) the widgets ask to track."""
    start = whole(start_frame, "start_frame", 0, MAX_FRAMES)
    end = whole(end_frame, "end_frame", -1, MAX_FRAMES)
    return start, n - 1 if end < 0 else min(end, n - 1)


def track_into_store(model_handle, images: torch.Tensor | None, prompts: PromptChain | None = None,
              state: ShotState | None = None, pathways: int = TreeConfig.pathways,
              iou_threshold: float = TreeConfig.iou_threshold, uncertainty: float = TreeConfig.uncertainty,
              direction: str = "forward", start_frame: int = 0, end_frame: int = -1,
              on_step=None, shot=None, spill_dir: str | None = None, push_back: int = 0):
    """Track and return (track, ShotState, index of the first frame tracked). Frame numbers
    are local to the batch or the shot's range. From `images` the track is kept in memory;
    from a `shot` (sam2long.media.shot.Shot) frames are streamed and masks spilled to `spill_dir`."""
    from sam2long import TensorFrames, Tracker, TreeConfig
    from sam2long.media.trackstore import SpillBuilder, TrackBuilder

    push_back = whole(push_back, "push_back", 0, MAX_PUSH_AGREE)

    if shot is not None:
        n, h, w = shot.count, shot.height, shot.width
    elif images is None or images.ndim != 4:
        raise ValueError("SAM2Long: images must be an IMAGE batch [frames, height, width, channels]")
    else:
        n, h, w = int(images.shape[0]), int(images.shape[1]), int(images.shape[2])
    if direction not in DIRECTIONS:
        raise ValueError(f"SAM2Long: direction must be one of {DIRECTIONS}, got {direction!r}")
    has_prompts = prompts is not None and len(prompts.entries) > 0
    if state is not None:
        if not isinstance(state, ShotState):
            raise ValueError("SAM2Long: the state input must come from a SAM2Long Track node")
        if direction != "forward":
            raise ValueError("SAM2Long: continuing from a state tracks forward only; set direction to forward")
        if (state.height, state.width) != (h, w):
            raise ValueError(f"SAM2Long: this chunk is {w}x{h} but the state comes from a "
                             f"{state.width}x{state.height} shot")
        if shot is not None and state.next_index != shot.start:
            raise ValueError(f"SAM2Long: the state continues at frame {state.next_index} of the shot, but "
                             f"this range starts at frame {shot.start}; set Load Shot's first_frame to "
                             f"{state.next_index}")
        first = state.next_index
    elif not has_prompts:
        raise ValueError("SAM2Long: nothing to track. Connect a SAM2Long Prompt node (or a state "
                         "from the previous chunk).")
    else:
        first = shot.start if shot is not None else 0
    if has_prompts and shot is not None:
        _check_prompt_range(prompts, n)
    start, end = _frame_span(start_frame, end_frame, n)
    if start > end:
        raise ValueError(f"SAM2Long: start_frame {start_frame} is after end_frame {end} (the batch has {n} frames)")

    tree = None
    if state is None:  # a continued chunk keeps the tree of the state it continues
        try:
            tree = TreeConfig(pathways=whole(pathways, "pathways", 1, MAX_PATHWAYS),
                              iou_threshold=real(iou_threshold, "iou_threshold", 0.0, MAX_IOU_THRESHOLD),
                              uncertainty=real(uncertainty, "uncertainty", 0.0, MAX_UNCERTAINTY))
        except ValueError as e:
            raise ValueError(e if str(e).startswith("SAM2Long:") else f"SAM2Long: {e}") from None

    model = model_handle.acquire() if hasattr(model_handle, "acquire") else model_handle
    frames = shot.frames(first) if shot is not None else TensorFrames(images, first_index=first)
    with torch.no_grad():
        if state is not None:
            # resume() works on its own deep copy: the cached input state is never mutated.
            tracker = Tracker.resume(model, state.state)
        else:
            tracker = Tracker(model, tree=tree)
        if has_prompts:
            apply_prompts(tracker, prompts, first, n, h, w)
        if shot is not None:
            builder = SpillBuilder(spill_dir, n, h, w, first_index=first,
                                   first_number=shot.range_number, padding=shot.padding, soft_bits=SOFT_BITS)
        else:
            builder = TrackBuilder(n, h, w, first_index=first, soft_bits=SOFT_BITS)
        if has_prompts:
            builder.ensure_objects(prompts.obj_ids)
        first_tracked, keep = None, {}
        try:
            if shot is not None and state is None:  # a new run of a shot: resume an earlier one?
                tracker, first_tracked = _resume(model_handle, model, tracker, prompts, shot, tree, direction,
                                                 first, first + start, first + end, builder, push_back,
                                                 Path(spill_dir).parent / "sam2long_resume", keep)
            # A range of a longer file: SAM 2 would see the whole file (pointer positions).
            shot_length = shot.total if shot is not None else None
            for r in tracker.propagate(frames, direction=direction, start=first + start, end=first + end,
                                       on_step=on_step, shot_length=shot_length, return_logits=True,
                                       **keep.get("propagate", {})):
                builder.add(r.frame_idx, r.obj_ids, r.masks, r.object_scores, r.logits)
                if first_tracked is None:
                    first_tracked = r.frame_idx - first
            if push_back and state is None and direction == "forward":
                pushed = _push_back(model, tree, tracker.prompts, shot, images, first, first + start, first + end,
                                    builder, push_back, keep.get("since"), on_step)
                if "run" in keep:
                    keep["run"].extra["pushed"] = {**keep.get("pushed_before", {}), **pushed}
            elif push_back:
                log.info("SAM2Long Track: push_back works on forward runs without a state input; not pushed")
        except BaseException:  # interrupted or failed: nothing half-done is kept
            builder.abort()
            if "run" in keep:
                keep["run"].remove()
            raise
        new_state = ShotState(state=tracker.state(), next_index=first + end + 1, height=h, width=w)
        result = builder.build()
        if "run" in keep:
            from sam2long.media.trackstore import linked_copy

            # The cache's own links to the masks: the result's folder still goes when ComfyUI drops it.
            keep["run"].track, keep["run"].first_tracked = linked_copy(result, keep["folder"]), first_tracked
            _run_cache().add(keep["run"])
    return result, new_state, start if first_tracked is None else first_tracked


def _push_back(model, tree, prompts, shot, images, first, start, end, builder, agree, since, on_step):
    """Push the corrections backward (engine/pushback.py) into `builder`, those at or after
    `since` (a resumed run; None: all). -> (obj_id, prompt frame) -> first frame replaced"""
    from sam2long import TensorFrames
    from sam2long.engine.pushback import push_back
    from sam2long.media.trackstore import built_mask, replace_frame

    source = shot.frames(first) if shot is not None else TensorFrames(images, first_index=first)
    pushed, replaced = {}, 0
    for t, obj_id, mask, score, logits, frame in push_back(
            model, tree, prompts, source, lambda o, t: built_mask(builder, o, t - first), agree, PUSH_IOU, since=since,
            within=(start, end), shot_length=shot.total if shot is not None else None, on_step=on_step):
        replace_frame(builder, t, obj_id, mask, score, logits)
        pushed[(obj_id, frame)] = min(t, pushed.get((obj_id, frame), t))
        replaced += 1
    log.info("SAM2Long Track: %d correction(s) pushed back, %d masks replaced", len(pushed), replaced)
    return pushed


def _resume(model_handle, model, tracker, prompts, shot, tree, direction, first, start, end, builder, push_back,
            parent, keep):
    """For a forward run of a shot: when an earlier run of the same model, frames, range and
    tree is cached, continue from its last snapshot that the changed prompts cannot affect,
    with the masks before it taken from that run. Fills `keep` with what to keep for the
    next time (a folder under `parent` for the snapshots and links to the masks).
    -> (tracker to propagate, first position tracked so far or None)"""
    from sam2long import Tracker
    from sam2long.engine.snapshots import SnapshotDir, prompt_digests
    from sam2long.engine.runcache import StoredRun
    from sam2long.media.trackstore import reuse_frames

    if direction != "forward":
        log.info("SAM2Long Track: tracking %s from the start (corrections resume forward runs only)", direction)
        return tracker, None
    key = (model.variant, model.image_size, str(model.device), model.precision, shot.path, shot.fingerprint,
           shot.start, shot.count, shot.total, start, end, tree, push_back)
    digests = prompt_digests(tracker.prompts)
    parent.mkdir(parents=True, exist_ok=True)
    keep["folder"] = Path(tempfile.mkdtemp(prefix="sam2long_run_", dir=str(parent)))
    store = SnapshotDir(keep["folder"] / "snapshots", max_kept=SNAPSHOTS_KEPT)
    keep["propagate"] = {"snapshot_every": SNAPSHOT_EVERY, "snapshot_dir": store}
    keep["run"] = StoredRun(key, weakref.ref(model_handle), keep["folder"], store, digests)
    stored = _run_cache().find(key, model_handle)
    at = None if stored is None else stored.resume_point(digests)
    if at is None:
        if stored is not None:
            log.info("SAM2Long Track: a prompt changed before the first snapshot; tracking from the start")
        return tracker, None
    try:
        snap = stored.snapshots.load(at, model.device)
    except (OSError, ValueError, RuntimeError) as e:  # removed or damaged on disk
        log.warning("SAM2Long Track: the snapshot at frame %d cannot be read (%s); tracking from the start",
                    at - first, e)
        _run_cache().drop(stored)
        return tracker, None
    resumed = Tracker.from_snapshot(model, snap, copy_snapshot=False)
    apply_prompts(resumed, prompts, first, shot.count, shot.height, shot.width)
    # Only the objects still prompted: one whose prompts were removed is not in a fresh run.
    reuse_frames(builder, stored.track, range(snap.head - first), obj_ids=prompts.obj_ids)
    keep["since"] = snap.head  # corrections re-tracked from here are pushed back again
    keep["pushed_before"] = {k: v for k, v in stored.extra.get("pushed", {}).items() if k[1] < snap.head}
    for f in stored.snapshots.frames():  # the earlier snapshots still hold for the new prompts
        if f <= at:
            if f in stored.snapshots.heads:
                store.heads[f] = stored.snapshots.heads[f]
            try:
                os.link(stored.snapshots.path(f), store.path(f))
            except OSError:
                shutil.copyfile(stored.snapshots.path(f), store.path(f))
    log.info("SAM2Long Track: prompts unchanged before frame %d: resuming from the snapshot at frame %d "
             "(%d frames reused, %d to track)", at - first, at - first, snap.head - first, end - at + 1)
    old_first = stored.first_tracked
    return resumed, old_first if old_first is not None and old_first < snap.head - first else None


class SAM2LongTrack(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAM2LongTrack",
            display_name="SAM2Long Track",
            category=CATEGORY,
            description=(
                "Tracks the prompted objects with SAM 2 or SAM 3 and SAM2Long's memory tree through exactly one of: "
                "images (an IMAGE batch), shot (from SAM2Long Load Shot) or video (core VIDEO). A shot or "
                "video is streamed one frame at a time and its masks are spilled to disk, so memory does "
                "not grow with the shot; 'masks' then holds only the first tracked frame (use Track To "
                "Mask or Save Mattes for the rest). An IMAGE batch gets one mask per frame. Chunks "
                "continue exactly when 'state' is wired into the next Track node."),
            inputs=[
                ModelType.Input("model"),
                io.Image.Input("images", optional=True,
                               tooltip="The shot (or this chunk of it) as an IMAGE batch."),
                ShotType.Input("shot", optional=True,
                               tooltip="From SAM2Long Load Shot: frames are streamed, masks spilled to disk."),
                io.Video.Input("video", optional=True,
                               tooltip="Core VIDEO (e.g. Load Video): its file is streamed like a shot."),
                PromptsType.Input("prompts", optional=True,
                                      tooltip="From SAM2Long Prompt. Not needed when continuing from a state."),
                StateType.Input("state", optional=True,
                                    tooltip="'state' from the Track node of the previous chunk: this chunk "
                                            "continues that shot (forward only)."),
                io.Int.Input("pathways", default=TreeConfig.pathways, min=1, max=MAX_PATHWAYS,
                             tooltip="Memory pathways kept alive (SAM2Long P). 1 keeps a single history but still uses SAM2Long's memory selection and key modulation."),
                io.Float.Input("iou_threshold", default=TreeConfig.iou_threshold, min=0.0, max=MAX_IOU_THRESHOLD, step=0.01,
                               tooltip="Frames whose predicted IoU is below this are not used as memory."),
                io.Float.Input("uncertainty", default=TreeConfig.uncertainty, min=0.0, max=MAX_UNCERTAINTY, step=0.1,
                               tooltip="Uncertainty threshold: below it, pathways pick distinct masks."),
                io.Combo.Input("direction", options=DIRECTIONS, default="forward",
                               tooltip="both = forward and backward from each object's first prompt frame "
                                       "(key frame in the middle of the shot)."),
                io.Int.Input("start_frame", default=0, min=0, max=MAX_FRAMES,
                             tooltip="First frame of the batch (or range) to track."),
                io.Int.Input("end_frame", default=-1, min=-1, max=MAX_FRAMES,
                             tooltip="Last frame of the batch (or range) to track; -1 = the last frame."),
                io.Int.Input("push_back", default=0, min=0, max=MAX_PUSH_AGREE, optional=True,
                             tooltip="0: a correction acts from its frame on. N > 0: also track each "
                                     "correction backward, replacing masks until N frames in a row agree "
                                     "with the forward ones (IoU >= 0.9) or the object's previous prompt."),
            ],
            outputs=[
                TrackType.Output("track", display_name="track", tooltip="Compact per-object masks and scores."),
                io.Mask.Output("masks", display_name="masks",
                               tooltip="Union of all objects: one mask per frame of an IMAGE batch; for a "
                                       "shot or video only the first tracked frame."),
                StateType.Output("state_out", display_name="state",
                                     tooltip="Wire into the next chunk's Track node."),
            ],
        )

    @classmethod
    def execute(cls, model, images=None, shot=None, video=None, prompts=None, state=None,
                pathways=TreeConfig.pathways, iou_threshold=TreeConfig.iou_threshold,
                uncertainty=TreeConfig.uncertainty, direction="forward", start_frame=0,
                end_frame=-1, push_back=0) -> io.NodeOutput:
        import comfy.utils

        given = [name for name, v in (("images", images), ("shot", shot), ("video", video)) if v is not None]
        if len(given) != 1:
            raise ValueError("SAM2Long: connect exactly one of images, shot or video to the Track node "
                             f"(connected: {', '.join(given) or 'none'})")
        if video is not None:
            from sam2long.errors import FrameError
            from sam2long.media.shot import open_shot

            try:
                shot = open_shot(video_file(video))
            except FrameError as e:
                raise FrameError(f"SAM2Long: {e}") from None
        n = shot.count if shot is not None else int(images.shape[0])
        start, end = _frame_span(start_frame, end_frame, n)
        total = n if end_frame < 0 else max(1, end - start + 1)
        pbar = comfy.utils.ProgressBar(total)
        done = [0]

        # A resumed forward run of a shot starts late: show where it is, not how many it did.
        base = shot.start + start if shot is not None and state is None and direction == "forward" else None

        def on_step(frame_idx):
            check_interrupt()
            done[0] += 1
            at = done[0] if base is None else max(done[0], frame_idx - base + 1)
            pbar.update_absolute(min(at, total), total)

        result, new_state, shown = track_into_store(model, images, prompts, state, pathways, iou_threshold, uncertainty,
                                             direction, start_frame, end_frame, on_step=on_step, shot=shot,
                                             spill_dir=spill_folder() if shot is not None else None,
                                             push_back=push_back)
        masks = result.union() if shot is None else result.union(first=shown, count=1)
        # The id lets the Prompt Editor's canvas fetch this result's masks (nodes/routes.py).
        return io.NodeOutput(result, masks.to(device=intermediate_device(), dtype=torch.float32), new_state,
                             ui={"sam2long_track": [served.remember(result)]})
