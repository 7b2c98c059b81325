"""The memory tree's decision rules, as pure functions of numbers.

Everything here follows the method of the SAM2Long paper (Ding et al., "SAM2Long:
Enhancing SAM 2 for Long Video Segmentation with a Training-Free Memory Tree", 2024,
arXiv:2410.16268): candidates are scored by the parent's cumulative score plus
ln(predicted IoU + 1e-5), the best P survive a stable sort, and when every pathway is
unsure whether the object is visible, survivors are picked for diversity of their
(signed, rounded) predicted IoU, then filled up from parents not yet represented.
Numbers in, numbers out: these rules are unit-tested with scripted numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_EPS = 1e-5
PROMPT_SCORE = 10.0  # object score given to prompt (conditioning) memories for modulation

# The ranges every front end offers and the library accepts (the widgets' min/max come from here).
MAX_PATHWAYS = 16  # each pathway is a memory bank per object in every batched step; the paper uses 3
MAX_IOU_THRESHOLD = 0.99  # below 1: at 1 no predicted IoU could ever enter memory
MAX_UNCERTAINTY = 100.0  # object logits stay far inside this; SAM 2's "no object" is -1024


@dataclass(frozen=True)
class TreeConfig:
    """Knobs of the memory tree. Defaults are the paper's (P=3, dIoU=0.3, dconf=2); the
    command line and the ComfyUI node read theirs from here (``TreeConfig.pathways``...)."""

    pathways: int = 3  # P: memory banks kept per object
    iou_threshold: float = 0.3  # dIoU: a frame enters memory only if predicted IoU > this ...
    uncertainty: float = 2.0  # dconf: ... "uncertain" when every |object logit| <= this
    memory_selection: bool = True  # object-aware memory (off: SAM 2's last frames)
    key_modulation: bool = True  # weight memory keys by object-score rank
    modulation_range: tuple[float, float] = (0.95, 1.05)
    max_memory_frames: int = 15  # reliable frames kept per pathway (pointer budget - 1)
    # which tracked frames are reliable: "iou" (SAM2Long: IoU > dIoU and logit > 0);
    # "sam3" (SAM 3's memory filter per object: (2 sigmoid(logit) - 1) * IoU > 0.01,
    # 0 where logit <= 0); "sam3-joint" (SAM 3's predictor: that score over all the
    # objects tracked on the frame, one decision for all of them)
    reliability: str = "iou"

    def __post_init__(self):
        if not isinstance(self.pathways, int) or not 1 <= self.pathways <= MAX_PATHWAYS:
            raise ValueError(f"pathways must be a whole number from 1 to {MAX_PATHWAYS}, got {self.pathways!r}")
        if not 0.0 <= self.iou_threshold <= MAX_IOU_THRESHOLD:  # nan fails this too
            raise ValueError(f"iou_threshold must be in [0, {MAX_IOU_THRESHOLD}], got {self.iou_threshold!r}")
        if not 0 <= self.uncertainty <= MAX_UNCERTAINTY:
            raise ValueError(f"uncertainty must be a number from 0 to {MAX_UNCERTAINTY:g}, got {self.uncertainty!r}")
        low, high = self.modulation_range
        if not 0 < low <= high:
            raise ValueError(f"modulation_range must satisfy 0 < low <= high, got {self.modulation_range!r}")
        if self.max_memory_frames < 1:
            raise ValueError("max_memory_frames must be >= 1")
        if self.reliability not in RELIABILITY:
            raise ValueError(f"reliability must be one of {', '.join(RELIABILITY)}, got {self.reliability!r}")

    @classmethod
    def sam2(cls) -> "TreeConfig":
        """Plain SAM 2: one pathway, the last frames as memory, no key modulation."""
        return cls(pathways=1, memory_selection=False, key_modulation=False)

    @classmethod
    def sam3(cls) -> "TreeConfig":
        """SAM 3's own tracker: one pathway, its memory selection, no key modulation."""
        return cls(pathways=1, key_modulation=False, reliability="sam3-joint")

    @classmethod
    def plain(cls, family) -> "TreeConfig":
        """The settings under which the engine is `family`'s own tracker (a
        `models.family.Family`, e.g. a `LoadedModel`'s): what --no-tree uses."""
        return {"sam2": cls.sam2, "sam3": cls.sam3}[family.own_tracker]()


RELIABILITY = ("iou", "sam3", "sam3-joint")
SAM3_MEMORY_THRESHOLD = 0.01  # SAM 3's mf_threshold


def sam3_memory_score(object_logits: list[float], ious: list[float]) -> float:
    """SAM 3's `cal_mem_score` for a batch of objects, in its float32 arithmetic:
    presence [B, 1] times best IoU [B] broadcasts to [B, B], then the mean."""
    logits = torch.tensor(object_logits, dtype=torch.float32)[:, None]
    presence = torch.where(logits > 0, logits.sigmoid() * 2 - 1, torch.zeros_like(logits))
    return float((presence * torch.tensor(ious, dtype=torch.float32)).mean())


def is_reliable(iou: float, object_logit: float, cfg: TreeConfig) -> bool:
    """Whether a tracked frame enters the reliable memory, by `cfg.reliability`
    ("sam3-joint" is decided per frame for all objects: `sam3_memory_score`)."""
    if cfg.reliability == "iou":
        return iou > cfg.iou_threshold and object_logit > 0
    return sam3_memory_score([object_logit], [iou]) > SAM3_MEMORY_THRESHOLD


@dataclass(frozen=True)
class Choice:
    """A surviving candidate: candidate `index` of pathway `parent`, with its new score."""

    parent: int
    index: int
    score: float


def candidate_score(parent_score: float, iou: float) -> float:
    return parent_score + math.log(iou + LOG_EPS)


def select_candidates(
    parent_scores: list[float],
    ious: list[list[float]],
    object_logits: list[float],
    pathways: int,
    uncertainty: float,
) -> list[Choice]:
    """Pick the surviving candidates for the next frame, best first.

    `ious[p][j]` is the predicted IoU of candidate j of pathway p, and
    `object_logits[p]` that pathway's object-presence logit. Returns up to
    `pathways` choices; choice k becomes pathway k.
    """
    cands = []  # (score, parent, index, diversity key), in (parent, index) order
    for p, (acc, row, logit) in enumerate(zip(parent_scores, ious, object_logits)):
        for j, iou in enumerate(row):
            key = iou if logit > 0 else -iou
            cands.append((candidate_score(acc, iou), p, j, key))
    # Python's sort is stable: ties keep (parent, index) order.
    ranked = sorted(cands, key=lambda c: -c[0])

    if max(abs(x) for x in object_logits) > uncertainty:
        chosen = ranked[:pathways]
    else:
        # Every pathway is unsure: keep candidates whose rounded signed IoU is new ...
        chosen, seen = [], set()
        for c in ranked:
            r = round(c[3], 2)
            if r not in seen:
                chosen.append(c)
                seen.add(r)
                if len(chosen) == pathways:
                    break
        # ... then give parents not yet represented their best candidate.
        if len(chosen) < pathways:
            parents = {c[1] for c in chosen}
            for p in range(len(parent_scores)):
                if p not in parents:
                    chosen.append(next(c for c in ranked if c[1] == p))
                    if len(chosen) == pathways:
                        break
    return [Choice(parent=c[1], index=c[2], score=c[0]) for c in chosen]


def rank_weights(scores: list[float], low: float, high: float) -> list[float]:
    """Evenly spaced weights in [low, high], the k-th smallest score getting the
    k-th smallest weight (ties keep list order). A single score gets `low`.
    The steps are float32 `torch.linspace`'s, bit for bit: the weights multiply
    float32 keys, and a value computed in float64 then rounded can be one ulp off."""
    n = len(scores)
    steps = torch.linspace(low, high, n, dtype=torch.float32).tolist()
    order = sorted(range(n), key=lambda i: scores[i])
    weights = [0.0] * n
    for rank, i in enumerate(order):
        weights[i] = steps[rank]
    return weights
