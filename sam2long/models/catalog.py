"""The official checkpoints by name: SAM 2 / SAM 2.1 and SAM 3.

Meta's download URL for each of the eight SAM 2 variants and for SAM 3's
``sam3.pt`` (on Hugging Face, gated), the files a user may download by name (Meta's
``.pt`` and kijai's ``.safetensors`` copies, `DOWNLOADS`), and which model a model or
file name refers to (``"sam2.1_hiera_tiny"``, ``"sam2.1_hiera_tiny.pt"``, the common repack name
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

# huggingface_hub's own variable for a mirror of the hub (e.g. hf-mirror.com or a
# studio's proxy): hub files are fetched from there, and the token is sent there.
HF_ENDPOINT_ENV = "HF_ENDPOINT"
_HUB = "https://huggingface.co"
# A plain folder URL holding the catalogue's files under their own names (a studio's
# internal server for machines without internet); when set, every download uses it.
MIRROR_ENV = "SAM2LONG_DOWNLOAD_BASE"
# kijai's safetensors copies of Meta's files: the fp32 names his ComfyUI SAM 2 loader
# offers (kijai/ComfyUI-segment-anything-2, nodes.py). His -fp16 copies are left out:
# the loader keeps weights in fp32, so they would only lose precision.
KIJAI_REPO = "Kijai/sam2-safetensors"

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


def hub_endpoint() -> str:
    """The Hugging Face hub's address: ``$HF_ENDPOINT`` if set, else https://huggingface.co."""
    return (os.environ.get(HF_ENDPOINT_ENV) or _HUB).rstrip("/")


def _downloads() -> dict[str, tuple[str, str]]:
    """file name -> (model name, path on its server); SAM 2.1 first, largest first
    (the first entry is what a new ComfyUI loader shows)."""
    sizes = ("large", "base_plus", "small", "tiny")
    out = {}
    for version in ("sam2.1", "sam2"):
        for suffix in (".pt", ".safetensors"):
            for size in sizes:
                variant = f"{version}_hiera_{size}"
                name = variant + suffix
                where = CHECKPOINT_URLS[variant] if suffix == ".pt" else f"/{KIJAI_REPO}/resolve/main/{name}"
                out[name] = (variant, where)
    out["sam3.pt"] = (SAM3_NAME, "/facebook/sam3/resolve/main/sam3.pt")
    return out


# The files that can be downloaded by name: Meta's .pt files (on Meta's server), kijai's
# .safetensors copies and SAM 3's file (on the hub: the entries that are a path alone).
DOWNLOADS = _downloads()
SAM2_DOWNLOADS = tuple(n for n, (v, _) in DOWNLOADS.items() if v != SAM3_NAME)


def download_url(file_name: str) -> str:
    """Where a catalogue file is downloaded from: ``$SAM2LONG_DOWNLOAD_BASE/<name>`` when
    that mirror is set; else Meta's server for the .pt files, and the hub (or
    ``$HF_ENDPOINT``) for kijai's .safetensors and SAM 3."""
    try:
        _, where = DOWNLOADS[file_name]
    except KeyError:
        raise CheckpointError(
            f"{file_name!r} is not a file this pack can download; use one of: {', '.join(DOWNLOADS)}"
        ) from None
    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        return f"{mirror.rstrip('/')}/{file_name}"
    return where if where.startswith("https://") else hub_endpoint() + where


def how_to_get(name: str) -> str:
    """How to get a model's file by hand (SAM 3's repo is gated)."""
    if name == SAM3_NAME:
        return (
            f"the Hugging Face repo facebook/sam3 is gated: accept the SAM License at {SAM3_REPO} "
            f"(logged in), then download sam3.pt ({SAM3_URL})"
        )
    return f"download {checkpoint_url(name)}"
