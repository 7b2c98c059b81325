"""SAM 3's checkpoints: recognising them, picking out the tracker's tensors, checking
them and filling the tracker with them.

`tracker_tensors` picks the tracker's tensors out of Meta's ``sam3.pt``
(``detector.*`` + ``tracker.*``; the tracker reads the detector's trunk and
``sam2_convs``) or a tracker-only state dict; `tracker_from_tensors` checks every
tensor by name and shape (the comparison `weights.check_state_dict` makes for SAM 2)
and fills the net. `models.loading` uses both on a file it has read once;
`load_sam3_tracker` reads a file with the project's safe reader (no pickled code)
and does the same.
"""

from __future__ import annotations

import os

import torch

from ...errors import CheckpointError
from ..weights import read_checkpoint, tensor_problems
from .network import PATCH, SAM3_SIZES, Sam3TrackerConfig, build_tracker_net

# Meta's sam3.pt: the detector and the tracker in one flat dict. The tracker's
# image features come from the detector's ViT trunk through the `sam2_convs` neck.
DETECTOR_PREFIX = "detector."
TRACKER_PREFIX = "tracker."
VISION_PREFIX = "backbone.vision_backbone."  # inside the tracker (and the detector)
TRACKER_VISION_PARTS = ("trunk.", "sam2_convs.")
PATCH_EMBED = VISION_PREFIX + "trunk.patch_embed.proj.weight"
BLOCKS = VISION_PREFIX + "trunk.blocks."
ROPE_TABLE = ".attn.freqs_cis"
SAM31_MARK = "interactive_sam_mask_decoder."  # a name only SAM 3.1's tracker has


def _wrapper(sd: dict) -> str:
    """What a repack put in front of Meta's names (e.g. ``model.diffusion_model.``), or ''."""
    suffix = DETECTOR_PREFIX + PATCH_EMBED
    return next((k[: -len(suffix)] for k in sd if k.endswith(suffix)), "")


def is_sam3_state_dict(sd: dict) -> bool:
    """Meta's sam3.pt layout (detector + tracker, possibly behind one wrapper prefix)
    or a tracker-only state dict."""
    tracker = _wrapper(sd) + TRACKER_PREFIX + "sam_mask_decoder."
    official = any(k.endswith(DETECTOR_PREFIX + PATCH_EMBED) for k in sd) and any(k.startswith(tracker) for k in sd)
    tracker_only = PATCH_EMBED in sd and any(k.startswith("sam_mask_decoder.") for k in sd)
    return official or tracker_only


def is_sam31_state_dict(sd: dict) -> bool:
    """SAM 3.1 (Object Multiplex): its tracker has an interactive decoder beside the
    multiplex one, in Meta's sam3.1_multiplex.pt and in ComfyUI's repack."""
    return any(SAM31_MARK in k for k in sd)


def tracker_tensors(sd: dict) -> tuple[dict, list]:
    """The tracker's tensors, named as in `build_tracker_net`'s net, and the names of
    those left out (the detector: text encoder, fusion transformer, heads, its neck).

    Meta's sam3.pt: ``tracker.<name>`` -> ``<name>``; the shared ViT trunk and the
    tracker's neck, ``detector.backbone.vision_backbone.{trunk,sam2_convs}.*`` ->
    ``backbone.vision_backbone.*``. A repack that put one wrapper prefix in front of
    Meta's names (ComfyUI-style ``model.diffusion_model.``) maps the same. A
    tracker-only state dict (e.g. of ``build_tracker(with_backbone=True)``) keeps its
    names, less the detector neck.
    """
    wrapper = _wrapper(sd)
    official = any(k.startswith(wrapper + TRACKER_PREFIX) for k in sd)
    vision = tuple(VISION_PREFIX + part for part in TRACKER_VISION_PARTS)
    kept, left_out = {}, []
    for name, tensor in sd.items():
        new = name
        if official:
            new = None
            inner = name[len(wrapper):] if name.startswith(wrapper) else ""
            if inner.startswith(TRACKER_PREFIX):
                new = inner[len(TRACKER_PREFIX):]
            elif inner.startswith(DETECTOR_PREFIX + VISION_PREFIX):
                new = inner[len(DETECTOR_PREFIX):]
        if new is None or (new.startswith("backbone.") and not new.startswith(vision)):
            left_out.append(name)
        else:
            kept[new] = tensor
    return kept, left_out


def sam3_tracker_tensors(sd: dict, source: str = "checkpoint") -> dict:
    """`tracker_tensors` of a SAM 3 checkpoint's tensors, or a CheckpointError saying
    what the file is instead (SAM 3.1, or not SAM 3 at all)."""
    if is_sam31_state_dict(sd):
        raise CheckpointError(
            f"{source} is a SAM 3.1 (Object Multiplex) checkpoint, whose tracker differs from SAM 3's "
            f"(multiplexed decoder and memory attention); sam2long runs SAM 3's tracker. Fix: use "
            f"Meta's sam3.pt from huggingface.co/facebook/sam3"
        )
    if not is_sam3_state_dict(sd):
        raise CheckpointError(
            f"{source} is not a SAM 3 checkpoint: expected '{DETECTOR_PREFIX}{PATCH_EMBED}' and "
            f"'{TRACKER_PREFIX}sam_mask_decoder.*' (Meta's sam3.pt) or a tracker-only state dict. "
            f"Fix: use sam3.pt from huggingface.co/facebook/sam3"
        )
    return tracker_tensors(sd)[0]


def trunk_config(sd: dict) -> Sam3TrackerConfig:
    """The config whose trunk these tracker tensors are: SAM 3's, or an error."""
    weight = sd.get(PATCH_EMBED)
    blocks = {k[len(BLOCKS):].split(".", 1)[0] for k in sd if k.startswith(BLOCKS)}
    found = (tuple(weight.shape) if weight is not None else None, len(blocks))
    if found == ((SAM3_SIZES.embed_dim, 3, PATCH, PATCH), SAM3_SIZES.depth):
        return SAM3_SIZES
    raise CheckpointError(
        f"unknown SAM 3 image encoder: ViT patch embedding {found[0]} with {found[1]} blocks "
        f"('{PATCH_EMBED}', '{BLOCKS}<N>.*'), expected ({SAM3_SIZES.embed_dim}, 3, {PATCH}, {PATCH}) with "
        f"{SAM3_SIZES.depth} blocks (Meta's sam3.pt). Fix: use Meta's sam3.pt from huggingface.co/facebook/sam3"
    )


def check_tracker_tensors(sd: dict, expected: dict, source: str) -> None:
    """Raise CheckpointError naming missing, unexpected and misshapen tensors."""
    problems = tensor_problems(sd, expected)
    if problems:
        raise CheckpointError(
            f"{source} does not match SAM 3's tracker: " + "; ".join(problems) + ". The file is damaged "
            "or from a different or modified model. Fix: download sam3.pt again from huggingface.co/facebook/sam3"
        )


def tracker_from_tensors(
    sd: dict,
    config: Sam3TrackerConfig | None = None,
    *,
    use_memory_selection: bool = True,
    source: str = "checkpoint",
) -> torch.nn.Module:
    """SAM 3's tracker filled from its tensors, named as `sam3_tracker_tensors` returns
    them (fp32, eval mode, on the CPU). `config` defaults to SAM 3's sizes, checked
    against the trunk's tensors; every tensor is checked by name and shape first."""
    config = trunk_config(sd) if config is None else config
    net = build_tracker_net(config, use_memory_selection=use_memory_selection)
    expected = net.state_dict()
    # The trunk's RoPE tables are buffers computed from its sizes: taken from the built
    # net when a repack left them out (complex tensors, not parameters).
    sd = {**{k: v for k, v in expected.items() if k.endswith(ROPE_TABLE)}, **sd}
    check_tracker_tensors(sd, expected, source=source)
    net.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in sd.items()}, strict=True)
    return net


def load_sam3_tracker(
    path: str | os.PathLike,
    config: Sam3TrackerConfig | None = None,
    *,
    use_memory_selection: bool = True,
) -> torch.nn.Module:
    """SAM 3's tracker filled from a checkpoint file (fp32, eval mode, on the CPU).

    Reads .pt / .pth (tensors only, never pickled code) and .safetensors, in Meta's
    sam3.pt layout or tracker-only; the detector's tensors are not kept.
    `models.loading` does the same from a file it has already read.
    """
    sd = sam3_tracker_tensors(read_checkpoint(path), source=str(path))
    return tracker_from_tensors(sd, config, use_memory_selection=use_memory_selection, source=str(path))


def verify_sam3_checkpoint(path: str | os.PathLike) -> None:
    """A cheap check of a downloaded file: SAM 3's layout and trunk, without building
    the 1.9 GB net (loading checks every tensor when it loads the file)."""
    trunk_config(sam3_tracker_tensors(read_checkpoint(path), source=str(path)))

