"""The official SAM 2 / SAM 2.1 checkpoints by name.

Meta's download URL for each of the eight variants, and which variant a model or
file name refers to (``"sam2.1_hiera_tiny"``, ``"sam2.1_hiera_tiny.pt"``, the
common repack name ``"sam2.1_hiera_tiny-fp16.safetensors"``). Both the checkpoint
search (`checkpoints.py`) and the file reader's messages (`weights.py`) use these;
what a file really holds is decided from its tensors (`weights.detect_variant`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .errors import CheckpointError
from .model import VARIANTS

_SAM2_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
_SAM21_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"

# model name -> Meta's official download URL
CHECKPOINT_URLS = {
    v: (_SAM21_BASE if v.startswith("sam2.1_") else _SAM2_BASE) + f"{v}.pt" for v in VARIANTS
}

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")
# name endings repacks use for the precision they were saved in
_PRECISION_TAG = re.compile(r"[-_.](fp16|bf16|fp32|f16|f32|float16|bfloat16|float32|half)$")
FULL_PRECISION_TAGS = {None, "fp32", "f32", "float32"}


def split_name(file_name: str) -> tuple[str | None, str | None]:
    """(variant, precision tag) of a checkpoint file or model name, or (None, None)."""
    stem = file_name.strip()
    lower = stem.lower()
    for suffix in CHECKPOINT_SUFFIXES:
        if lower.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    stem = stem.lower()
    tag = None
    m = _PRECISION_TAG.search(stem)
    if m:
        tag = m.group(1)
        stem = stem[: m.start()]
    stem = stem.replace("-", "_")
    if stem in VARIANTS:
        return stem, tag
    return None, None


def variant_from_name(name: str | os.PathLike) -> str | None:
    """The official model name a file or model name refers to, or None.

    Accepts the bare name (``sam2.1_hiera_tiny``), with a file extension
    (``.pt``, ``.pth``, ``.safetensors``) and with a precision tag such as
    ``-fp16`` / ``_bf16``. Only the last path component is looked at. This is a
    lookup key for finding files; what a file really holds is decided from its
    tensors (see `sam2long.weights.detect_variant`).
    """
    return split_name(Path(os.fspath(name)).name)[0]


def checkpoint_url(variant: str) -> str:
    """Meta's download URL for one of the eight official model names."""
    try:
        return CHECKPOINT_URLS[variant]
    except KeyError:
        raise CheckpointError(
            f"unknown SAM 2 model name {variant!r}; use one of: {', '.join(VARIANTS)}"
        ) from None
