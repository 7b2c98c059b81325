"""The official checkpoints by name: SAM 2 / SAM 2.1 and SAM 3.

Meta's download URL for each of the eight SAM 2 variants and for SAM 3's
``sam3.pt`` (on Hugging Face, gated), and which model a model or file name refers
to (``"sam2.1_hiera_tiny"``, ``"sam2.1_hiera_tiny.pt"``, the common repack name
``"sam2.1_hiera_tiny-fp16.safetensors"``, ``"sam3"``, ``"sam3.safetensors"``). Both the checkpoint
search (`checkpoints.py`) and the file reader's messages (`weights.py`) use these;
what a file really holds is decided from its tensors (`weights.detect_variant`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import CheckpointError
from .model import VARIANTS

_SAM2_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
_SAM21_BASE = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"

# model name -> Meta's official download URL
CHECKPOINT_URLS = {
    v: (_SAM21_BASE if v.startswith("sam2.1_") else _SAM2_BASE) + f"{v}.pt" for v in VARIANTS
}

# SAM 3: one checkpoint (detector + tracker), in a gated Hugging Face repo whose
# licence (the SAM License) a user accepts there before downloading.
SAM3_NAME = "sam3"
SAM3_REPO = "huggingface.co/facebook/sam3"
SAM3_URL = f"https://{SAM3_REPO}/resolve/main/sam3.pt"
MODEL_NAMES = (*VARIANTS, SAM3_NAME)

CHECKPOINT_SUFFIXES = (".pt", ".pth", ".safetensors")
# name endings repacks use for the precision they were saved in
_PRECISION_TAG = re.compile(r"[-_.](fp16|bf16|fp32|f16|f32|float16|bfloat16|float32|half)$")
FULL_PRECISION_TAGS = {None, "fp32", "f32", "float32"}


def split_name(file_name: str) -> tuple[str | None, str | None]:
    """(model name, precision tag) of a checkpoint file or model name, or (None, None)."""
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
    if stem in MODEL_NAMES:
        return stem, tag
    return None, None


def variant_from_name(name: str | os.PathLike) -> str | None:
    """The official model name a file or model name refers to, or None.

    Accepts the bare name (``sam2.1_hiera_tiny``, ``sam3``), with a file extension
    (``.pt``, ``.pth``, ``.safetensors``) and with a precision tag such as
    ``-fp16`` / ``_bf16``. Only the last path component is looked at. This is a
    lookup key for finding files; what a file really holds is decided from its
    tensors (see `sam2long.weights.detect_variant`).
    """
    return split_name(Path(os.fspath(name)).name)[0]


def checkpoint_url(name: str) -> str:
    """Meta's download URL for one of the official model names."""
    if name == SAM3_NAME:
        return SAM3_URL
    try:
        return CHECKPOINT_URLS[name]
    except KeyError:
        raise CheckpointError(
            f"unknown model name {name!r}; use one of: {', '.join(MODEL_NAMES)}"
        ) from None


def how_to_get(name: str) -> str:
    """How to get a model's file by hand (SAM 3's repo is gated)."""
    if name == SAM3_NAME:
        return (
            f"the Hugging Face repo facebook/sam3 is gated: accept the SAM License at {SAM3_REPO} "
            f"(logged in), then download sam3.pt ({SAM3_URL})"
        )
    return f"download {checkpoint_url(name)}"
