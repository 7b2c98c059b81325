"""Loading a SAM 2 / SAM 2.1 or SAM 3 checkpoint into a `LoadedModel`.

The path: a name or path is resolved to a file (`checkpoints.py`: folders, cache,
download), the file's tensors are read once, and its family and variant are
detected from them (SAM 3 by `sam3.checkpoint`, then the SAM 2 variant by
`weights.py`). The matching network is built (`model.py` for SAM 2, SAM 3's tracker
alone by `sam3.network`: the detector and text encoder are dropped when read) and
filled, and the model gets its family. Weights are always held in fp32; reduced
precision is applied by autocast at run time. Every tensor is checked by name and
shape before anything is loaded, so a bad file raises `CheckpointError` and nothing
half-loaded is returned.
"""

from __future__ import annotations

import os
from typing import Iterable

import torch

from ..errors import CheckpointError
from .catalog import SAM3_NAME
from .checkpoints import resolve_checkpoint
from .family import SAM2_FAMILY
from .model import (
    DEFAULT_IMAGE_SIZE,
    IMAGE_SIZE_MULTIPLE,
    LoadedModel,
    build_net,
    check_image_size,
    fits_sam2,
    resolve_device,
    resolve_precision,
)
from .sam3 import checkpoint as sam3_checkpoint
from .sam3.family import Sam3Family
from .sam3.network import SAM3_SIZES, Sam3TrackerConfig
from .weights import check_state_dict, file_variant, read_checkpoint


def load_model(
    checkpoint: str | os.PathLike,
    device: str | torch.device = "auto",
    precision: str = "auto",
    image_size: int | None = None,
    *,
    search_dirs: Iterable[str | os.PathLike] = (),
    download: bool = True,
    progress: bool = True,
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
    Returns a `LoadedModel` whose variant is the SAM 2 variant or ``"sam3"``.
    """
    device = resolve_device(device)  # bad arguments are refused before a download
    compute = resolve_precision(precision, device)
    _check_requested_size(image_size, SAM3_SIZES)
    path = resolve_checkpoint(checkpoint, search_dirs=search_dirs, download=download, progress=progress)
    return load_model_file(path, device, compute, image_size)


def load_model_file(
    path: str | os.PathLike,
    device: str | torch.device = "auto",
    precision: str = "auto",
    image_size: int | None = None,
    *,
    sam3_sizes: Sam3TrackerConfig | None = None,
) -> LoadedModel:
    """`load_model` of a checkpoint file (no name resolution, no download).

    `sam3_sizes`: the sizes SAM 3's tracker is built with. By default SAM 3's own,
    checked against the file's trunk; a tracker of other sizes (a reduced one for
    experiments and tests) is loaded only with its sizes given here.
    """
    device = resolve_device(device)
    compute = resolve_precision(precision, device)
    _check_requested_size(image_size, sam3_sizes or SAM3_SIZES)
    sd = read_checkpoint(path)  # once: sam3.pt is 3.45 GB
    if sam3_checkpoint.is_sam3_state_dict(sd) or sam3_checkpoint.is_sam31_state_dict(sd):
        sd = sam3_checkpoint.sam3_tracker_tensors(sd, source=str(path))  # the detector's tensors go here
        sam3_size = (sam3_sizes or SAM3_SIZES).image_size
        if image_size is not None and image_size != sam3_size:
            raise ValueError(
                f"image_size {image_size} does not apply to SAM 3 ({path}): its input size is fixed at "
                f"{sam3_size} (a multiple of its patch size 14). Fix: leave image_size unset"
            )
        net = sam3_checkpoint.tracker_from_tensors(sd, sam3_sizes, source=str(path))
        del sd
        return LoadedModel.from_net(net, SAM3_NAME, device=device, precision=compute, family=Sam3Family())

    size = DEFAULT_IMAGE_SIZE if image_size is None else int(image_size)
    check_image_size(size, where=f" for SAM 2 ({path})")
    variant = file_variant(sd, path)
    net = build_net(variant, image_size=size)
    check_state_dict(sd, variant, expected=net.state_dict(), source=str(path))
    sd = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in sd.items()}
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:  # already checked above; kept as a last guard
        raise CheckpointError(f"{path}: could not load the weights into {variant}: {e}") from e
    del sd
    return LoadedModel.from_net(net, variant, device=device, precision=compute, family=SAM2_FAMILY)


def _check_requested_size(image_size: int | None, sam3_sizes: Sam3TrackerConfig) -> None:
    """Before the file is read: a size one of the families takes."""
    if image_size is not None and not (fits_sam2(int(image_size)) or image_size == sam3_sizes.image_size):
        raise ValueError(
            f"image_size must be a positive multiple of {IMAGE_SIZE_MULTIPLE} (SAM 2) or "
            f"{sam3_sizes.image_size} (SAM 3), got {image_size}"
        )
