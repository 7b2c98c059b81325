"""The memory store: what each pathway remembers, and how it is kept bounded.

A `MemoryEntry` is one frame's contribution to memory (spatial features, object
pointer, object score, predicted IoU). Entries hold no references to other
entries, so nothing older than what a pathway can still read stays alive.

A `Node` is one frame of one pathway's history. Each node carries, incrementally,
the short lists its memory selection can reach (the last reliable entries and the
last entries), so selecting memory costs O(1) per frame instead of rescanning the
whole history; its `parent` link exists only until the frame is committed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .tree import PROMPT_SCORE, TreeConfig, is_reliable, rank_weights


@dataclass(eq=False)
class MemoryEntry:
    frame: int
    ptr: torch.Tensor  # [C] object pointer
    object_score: float  # object logit of the forward pass that produced it
    iou: float  # predicted IoU of the chosen candidate (1.0 for prompts)
    mem: torch.Tensor | None  # [Cm, h, w] bf16 spatial memory; dropped once out of reach


@dataclass(eq=False)
class Node:
    """One frame of a pathway. Pathways with an identical history share nodes."""

    frame: int
    parent: "Node | None"
    score: float  # cumulative score of the pathway up to this frame
    object_score: float
    lowres: torch.Tensor | None  # [h, w] mask logits, kept until emitted
    entry: MemoryEntry | None  # None on conditioning (prompt) frames
    reliable: tuple = ()  # last reliable tracked entries on this path, oldest first
    recent: tuple = ()  # last tracked entries on this path, oldest first


def extend(parent: Node, entry: MemoryEntry, cfg: TreeConfig, reliable: bool | None = None) -> tuple[tuple, tuple]:
    """The (reliable, recent) lists of a child of `parent` whose frame gave `entry`
    (reliable: `tree.is_reliable`, by default predicted IoU > dIoU and logit > 0,
    unless the caller decided it for the whole frame)."""
    cap = cfg.max_memory_frames
    recent = (parent.recent + (entry,))[-cap:]
    if is_reliable(entry.iou, entry.object_score, cfg) if reliable is None else reliable:
        return (parent.reliable + (entry,))[-cap:], recent
    return parent.reliable, recent


@dataclass
class MemoryPlan:
    """What one pathway attends to on one frame, in SAM 2's token order."""

    spatial: list  # [(mem [Cm,h,w], temporal index, key weight)]: prompts first, then oldest -> newest
    pointers: list  # [(ptr [C], temporal position, key weight)]: prompts first, then newest -> older


def plan_memory(
    leaf: Node,
    frame: int,
    prompt_entries: list[MemoryEntry],
    cfg: TreeConfig,
    num_maskmem: int,
    max_ptrs: int,
    max_prompts: int | None = None,
) -> MemoryPlan:
    """Choose the memory of the pathway ending at `leaf` for tracking `frame`.

    `prompt_entries` are the object's prompt memories reached so far in this pass. The spatial
    memory is the newest `num_maskmem - 1` entries of `spatial_reach`. With memory
    selection (SAM2Long) that is the last entries of V = the reliable entries plus
    the previous frame (always), ranked from the newest; pointers come from V
    without its oldest entry, positioned by rank. Without it (SAM 2) memory is the
    previous frames by true distance. `max_prompts` prompt frames at most are read, the
    temporally closest (SAM 3 reads 4; None: all, as SAM 2).
    """
    n_spatial = num_maskmem - 1
    prompts = closest_prompts(prompt_entries, frame, max_prompts)
    prompt_spatial = [(e.mem, num_maskmem - 1, PROMPT_SCORE) for e in prompts]
    # Prompt pointers only from prompts already passed (SAM 2's "pointers in the past").
    prompt_pointers = [(e.ptr, abs(frame - e.frame), PROMPT_SCORE) for e in prompts]
    read = spatial_reach(leaf, frame, cfg, num_maskmem)[-n_spatial:]

    if cfg.memory_selection:
        spatial = [(e.mem, rank, e.object_score) for rank, e in enumerate(reversed(read))]
        spatial.reverse()
        chosen = _selection(leaf.reliable, leaf.entry)
        pointers = [(chosen[-r].ptr, r, chosen[-r].object_score) for r in range(1, len(chosen))]
    else:
        spatial = [(e.mem, abs(frame - e.frame) - 1, e.object_score) for e in read]
        pointers = []
        for e in reversed(leaf.recent):
            dist = abs(frame - e.frame)
            if dist < max_ptrs:
                pointers.append((e.ptr, dist, e.object_score))

    spatial_all = prompt_spatial + spatial
    pointers_all = prompt_pointers + pointers
    if cfg.key_modulation and spatial:
        low, high = cfg.modulation_range
        fw = rank_weights([s for _, _, s in spatial_all], low, high)
        pw = rank_weights([s for _, _, s in pointers_all], low, high)
    else:
        fw = [1.0] * len(spatial_all)
        pw = [1.0] * len(pointers_all)
    return MemoryPlan(
        spatial=[(m, idx, w) for (m, idx, _), w in zip(spatial_all, fw)],
        pointers=[(p, pos, w) for (p, pos, _), w in zip(pointers_all, pw)],
    )


def closest_prompts(entries: list[MemoryEntry], frame: int, limit: int | None) -> list[MemoryEntry]:
    """At most `limit` prompt entries, as SAM 3 selects its conditioning frames: the
    closest before `frame`, the closest at or after it, then the nearest others."""
    if limit is None or len(entries) <= limit:
        return entries
    before = max((e for e in entries if e.frame < frame), key=lambda e: e.frame, default=None)
    after = min((e for e in entries if e.frame >= frame), key=lambda e: e.frame, default=None)
    chosen = [e for e in (before, after) if e is not None]
    rest = sorted((e for e in entries if e not in chosen), key=lambda e: abs(e.frame - frame))
    return chosen + rest[: limit - len(chosen)]


def _selection(reliable: tuple, entry: MemoryEntry | None) -> list[MemoryEntry]:
    """V: reliable entries plus the previous frame's `entry`, which is always in memory."""
    chosen = list(reliable)
    if entry is not None and (not chosen or chosen[-1] is not entry):
        chosen.append(entry)
    return chosen


def spatial_reach(leaf: Node, frame: int, cfg: TreeConfig, num_maskmem: int) -> list[MemoryEntry]:
    """The entries whose spatial features the pathway ending at `leaf` can read when
    tracking `frame` or later, oldest first. The one rule for both sides: `plan_memory`
    reads the newest `num_maskmem - 1` of them, `drop_unreachable` frees all others.

    With memory selection: the last `num_maskmem - 1` reliable entries plus the previous
    frame. When the previous frame is unreliable that is one more than is read now: a
    correction on the next frame makes a node without an entry, which reads the reliable
    entries alone. Without (SAM 2): the previous frames at most `num_maskmem - 1` away.
    A child reaches no older entry than its parent does, so an entry that leaves the
    reach of every pathway is never read again.
    """
    n_spatial = num_maskmem - 1
    if cfg.memory_selection:
        return _selection(leaf.reliable[-n_spatial:], leaf.entry)
    return [e for e in leaf.recent if abs(frame - e.frame) <= n_spatial]


def drop_unreachable(leaves: list[Node], next_frame: int, cfg: TreeConfig, num_maskmem: int) -> None:
    """Free the spatial features outside every surviving pathway's `spatial_reach`."""
    keep = set()
    for leaf in leaves:
        keep.update(id(e) for e in spatial_reach(leaf, next_frame, cfg, num_maskmem))
    for leaf in leaves:
        for e in leaf.reliable + leaf.recent:
            if e.mem is not None and id(e) not in keep:
                e.mem = None
