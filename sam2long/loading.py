"""Loading a SAM 2 / SAM 2.1 checkpoint into a `LoadedModel`.

The path: a name or path is resolved to a file (`checkpoints.py`: folders, cache,
download), the file's tensors are read and their variant detected (`weights.py`),
and the matching network is built (`model.py`) and filled. Weights are always
held in fp32; reduced precision is applied by autocast at run time. Every tensor
is checked by name and shape before anything is loaded, so a bad file raises
`CheckpointError` and nothing half-loaded is returned.
"""

from __future__ import annotations

import os
from typing import Iterable

import torch

from .checkpoints import resolve_checkpoint
from .errors import CheckpointError
from .model import LoadedModel, build_net, resolve_device, resolve_precision
from .weights import check_state_dict, read_variant

DEFAULT_IMAGE_SIZE = 1024


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
    """Load a SAM 2 / SAM 2.1 checkpoint, ready for tracking.

    `checkpoint` is a file (.pt, .pth, .safetensors) or a model name (one of
    `model.VARIANTS`, optionally with extension or ``-fp16`` tag) resolved by
    `checkpoints.resolve_checkpoint` in `search_dirs`, the cache, or by download.
    `device`: "auto" (CUDA, then MPS, then CPU) or a torch device. `precision`:
    "auto" | "fp32" | "fp16" | "bf16", the compute precision on CUDA (CPU and MPS
    always compute in fp32). Weights are held in fp32 whatever the file stores.
    `image_size` (default 1024, a multiple of 32) is the network's input size.
    """
    device = resolve_device(device)
    compute = resolve_precision(precision, device)
    size = DEFAULT_IMAGE_SIZE if image_size is None else int(image_size)
    if size <= 0 or size % 32:
        raise ValueError(f"image_size must be a positive multiple of 32, got {image_size}")

    path = resolve_checkpoint(checkpoint, search_dirs=search_dirs, download=download, progress=progress)
    sd, variant = read_variant(path)
    net = build_net(variant, image_size=size)
    check_state_dict(sd, variant, expected=net.state_dict(), source=str(path))
    sd = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in sd.items()}
    try:
        net.load_state_dict(sd, strict=True)
    except RuntimeError as e:  # already checked above; kept as a last guard
        raise CheckpointError(f"{path}: could not load the weights into {variant}: {e}") from e
    del sd
    return LoadedModel.from_net(net, variant, device=device, precision=compute)
