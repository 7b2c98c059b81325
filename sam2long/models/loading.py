"""Loading a SAM 2 / SAM 2.1 or SAM 3 checkpoint into a `LoadedModel`.

The path: a name or path is resolved to a file (`checkpoints.py`: folders, cache,
download), the file's tensors are read once, and its family and variant are
detected from them (SAM 3 by `sam3_family`, then the SAM 2 variant by
`weights.py`). The matching network is built (`model.py` for SAM 2, SAM 3's tracker
alone by `sam3_family`: the detector and text encoder are dropped when read) and
filled. Weights are always held in fp32; reduced precision is applied by autocast
at run time. Every tensor is checked by name and shape before anything is loaded,
so a bad file raises `CheckpointError` and nothing half-loaded is returned.
"""

from __future__ import annotations

import os
from typing import Iterable

import torch

from ..errors import CheckpointError
from .checkpoints import resolve_checkpoint
from .model import LoadedModel, build_net, resolve_device, resolve_precision
from .sam3 import network as sam3_family
from .weights import check_state_dict, file_variant, read_checkpoint

DEFAULT_IMAGE_SIZE = 1024
SAM3_VARIANT = "sam3"  # LoadedModel.variant of SAM 3's tracker


def load_model(
    checkpoint: str | os.PathLike,
    device: str | torch.device = "auto",
    precision: str = "auto",
    image_size: int | None = None,
    *,
    search_dirs: Iterable[str | os.PathLike] = (),
    download: bool = True,
    progress: bool = True,
    sam3_config: sam3_family.Sam3TrackerConfig | None = None,
) -> LoadedModel:
    """Load a SAM 2 / SAM 2.1 or SAM 3 checkpoint, ready for tracking.

    `checkpoint` is a file (.pt, .pth, .safetensors) or a model name (one of
    `catalog.MODEL_NAMES`: the SAM 2 variants and ``sam3``, optionally with extension
    or ``-fp16`` tag) resolved by `checkpoints.resolve_checkpoint` in `search_dirs`,
    the cache, or by download. `device`: "auto" (CUDA, then MPS, then CPU) or a torch
    device. `precision`: "auto" | "fp32" | "fp16" | "bf16", the compute precision on
    CUDA (CPU and MPS always compute in fp32). Weights are held in fp32 whatever the
    file stores.
    `image_size` is the network's input size: for SAM 2, default 1024, a multiple
    of 32; SAM 3's is fixed at 1008 (None or 1008).
    `sam3_config` is for tests only: the sizes of a reduced SAM 3 tracker, whose
    checkpoint would otherwise be refused as not SAM 3's own trunk.
    Returns a `LoadedModel` whose variant is the SAM 2 variant or ``"sam3"``.
    """
    device = resolve_device(device)
    compute = resolve_precision(precision, device)
    sam3_size = (sam3_config or sam3_family.SAM3).image_size
    if image_size is not None and (int(image_size) <= 0 or (image_size % 32 and image_size != sam3_size)):
        raise ValueError(
            f"image_size must be a positive multiple of 32 (SAM 2) or {sam3_size} (SAM 3), got {image_size}"
        )

    path = resolve_checkpoint(checkpoint, search_dirs=search_dirs, download=download, progress=progress)
    sd = read_checkpoint(path)  # once: sam3.pt is 3.45 GB
    if sam3_family.is_sam3_state_dict(sd) or sam3_family.is_sam31_state_dict(sd):
        sd = sam3_family.sam3_tracker_tensors(sd, source=str(path))  # the detector's tensors go here
        if image_size is not None and image_size != sam3_size:
            raise ValueError(
                f"image_size {image_size} does not apply to SAM 3 ({path}): its input size is fixed at "
                f"{sam3_size} (a multiple of its patch size 14). Fix: leave image_size unset"
            )
        net = sam3_family.tracker_from_tensors(sd, sam3_config, source=str(path))
        del sd
        return LoadedModel.from_net(net, SAM3_VARIANT, device=device, precision=compute)

    size = DEFAULT_IMAGE_SIZE if image_size is None else int(image_size)
    if size % 32:
        raise ValueError(f"image_size must be a positive multiple of 32 for SAM 2 ({path}), got {image_size}")
    variant = file_variant(sd, path)
    net = build_net(variant, image_size=size)
    check_state_dict(sd, variant, expected=net.state_dict(), source=str(path))
    sd = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in sd.items()}
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:  # already checked above; kept as a last guard
        raise CheckpointError(f"{path}: could not load the weights into {variant}: {e}") from e
    del sd
    return LoadedModel.from_net(net, variant, device=device, precision=compute)
