"""SAM2Long Track: prompts + frames -> a compact track result and a MASK batch.

Deterministic for equal inputs, so ComfyUI's own output cache already avoids
re-tracking when only downstream nodes change (no fingerprint_inputs needed).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from comfy_api.latest import io

from .prompts import PromptChain, apply_prompts
from .result import TrackBuilder
from .sockets import CATEGORY, ModelType, PromptsType, StateType, TrackType

DIRECTIONS = ["forward", "backward", "both"]


@dataclass(frozen=True, eq=False)
class ShotState:
    """What flows through a SAM2LONG_STATE socket: the engine's detached state after
    a forward run, and the global frame index the next chunk must start at."""

    state: object
    next_index: int
    height: int
    width: int


def intermediate_device() -> torch.device:
    try:
        import comfy.model_management as mm

        return mm.intermediate_device()
    except ImportError:  # pragma: no cover
        return torch.device("cpu")


def _check_interrupt() -> None:
    import comfy.model_management as mm

    mm.throw_exception_if_processing_interrupted()


def run_track(model_handle, images: torch.Tensor, prompts: PromptChain | None = None, state: ShotState | None = None,
              pathways: int = 3, iou_threshold: float = 0.3, uncertainty: float = 2.0,
              direction: str = "forward", start_frame: int = 0, end_frame: int = -1,
              on_step=None):
    """Track and return (TrackResult, ShotState). Frame numbers are batch-local."""
    from sam2long import TensorFrames, Tracker, TreeConfig

    if images is None or images.ndim != 4:
        raise ValueError("SAM2Long: images must be an IMAGE batch [frames, height, width, channels]")
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
        first = state.next_index
    elif not has_prompts:
        raise ValueError("SAM2Long: nothing to track. Connect a SAM2Long Prompt node (or a state "
                         "from the previous chunk).")
    else:
        first = 0
    start = max(0, int(start_frame))
    end = n - 1 if int(end_frame) < 0 else min(int(end_frame), n - 1)
    if start > end:
        raise ValueError(f"SAM2Long: start_frame {start_frame} is after end_frame {end} (the batch has {n} frames)")

    model = model_handle.acquire() if hasattr(model_handle, "acquire") else model_handle
    frames = TensorFrames(images, first_index=first)
    with torch.no_grad():
        if state is not None:
            # resume() works on its own deep copy: the cached input state is never mutated.
            tracker = Tracker.resume(model, state.state)
        else:
            tracker = Tracker(model, tree=TreeConfig(pathways=int(pathways), iou_threshold=float(iou_threshold),
                                                     uncertainty=float(uncertainty)))
        if has_prompts:
            apply_prompts(tracker, prompts, first, n, h, w)
        builder = TrackBuilder(n, h, w, first_index=first)
        if has_prompts:
            builder.ensure_objects(prompts.obj_ids)
        for r in tracker.propagate(frames, direction=direction, start=first + start, end=first + end,
                                   on_step=on_step):
            builder.add(r.frame_idx, r.obj_ids, r.masks, r.object_scores)
        new_state = ShotState(state=tracker.state(), next_index=first + end + 1, height=h, width=w)
    return builder.build(), new_state


class SAM2LongTrack(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAM2LongTrack",
            display_name="SAM2Long Track",
            category=CATEGORY,
            description=(
                "Tracks the prompted objects through the images with SAM 2 and SAM2Long's memory tree. "
                "Outputs one mask per input frame at the source resolution (empty where an object is not "
                "tracked). For long shots, feed consecutive chunks and wire 'state' into the next chunk's "
                "Track node: the result continues exactly."),
            inputs=[
                ModelType.Input("model"),
                io.Image.Input("images", tooltip="The shot (or this chunk of it) as an IMAGE batch."),
                PromptsType.Input("prompts", optional=True,
                                      tooltip="From SAM2Long Prompt. Not needed when continuing from a state."),
                StateType.Input("state", optional=True,
                                    tooltip="'state' from the Track node of the previous chunk: this chunk "
                                            "continues that shot (forward only)."),
                io.Int.Input("pathways", default=3, min=1, max=16,
                             tooltip="Memory pathways kept alive (SAM2Long P); 1 = plain SAM 2."),
                io.Float.Input("iou_threshold", default=0.3, min=0.0, max=1.0, step=0.01,
                               tooltip="Frames whose predicted IoU is below this are not used as memory."),
                io.Float.Input("uncertainty", default=2.0, min=0.0, max=100.0, step=0.1,
                               tooltip="Uncertainty threshold: below it, pathways pick distinct masks."),
                io.Combo.Input("direction", options=DIRECTIONS, default="forward",
                               tooltip="both = forward and backward from each object's first prompt frame "
                                       "(key frame in the middle of the shot)."),
                io.Int.Input("start_frame", default=0, min=0, max=10_000_000,
                             tooltip="First frame of the batch to track."),
                io.Int.Input("end_frame", default=-1, min=-1, max=10_000_000,
                             tooltip="Last frame of the batch to track; -1 = the last frame."),
            ],
            outputs=[
                TrackType.Output("track", display_name="track", tooltip="Compact per-object masks and scores."),
                io.Mask.Output("masks", display_name="masks", tooltip="Union of all objects, one mask per input frame."),
                StateType.Output("state_out", display_name="state",
                                     tooltip="Wire into the next chunk's Track node."),
            ],
        )

    @classmethod
    def execute(cls, model, images, prompts=None, state=None, pathways=3, iou_threshold=0.3,
                uncertainty=2.0, direction="forward", start_frame=0, end_frame=-1) -> io.NodeOutput:
        import comfy.utils

        n = int(images.shape[0])
        total = n if end_frame < 0 else max(1, min(end_frame, n - 1) - start_frame + 1)
        pbar = comfy.utils.ProgressBar(total)
        done = [0]

        def on_step(_frame_idx):
            _check_interrupt()
            done[0] += 1
            pbar.update_absolute(min(done[0], total), total)

        result, new_state = run_track(model, images, prompts, state, pathways, iou_threshold, uncertainty,
                                      direction, start_frame, end_frame, on_step=on_step)
        masks = result.union().to(device=intermediate_device(), dtype=torch.float32)
        return io.NodeOutput(result, masks, new_state)
