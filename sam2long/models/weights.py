"""What a checkpoint file holds: its tensors, read safely, and its SAM 2 variant.

The variant (SAM 2 or SAM 2.1; tiny, small, base_plus or large) is read from the
checkpoint's tensors, never from its file name, so renamed files and repacks work:

* SAM 2.1 checkpoints have ``no_obj_embed_spatial`` and ``obj_ptr_tpos_proj.*``;
  SAM 2 checkpoints have neither.
* The size follows from the Hiera image-encoder trunk: its embedding width (the
  first dimension of ``image_encoder.trunk.patch_embed.proj.weight``) and its
  number of blocks (``image_encoder.trunk.blocks.<N>.*``).

Accepted files: Meta's ``.pt`` (``{"model": state_dict}``), a flat state dict in
a ``.pt`` / ``.pth``, and ``.safetensors`` (e.g. the fp16 / bf16 repacks ComfyUI
users keep in ``models/sam2``), with or without a ``model.`` key prefix; tensors
keep the dtype they were stored in. `check_state_dict` checks every tensor by name and shape, so a bad file raises
`CheckpointError` before anything is loaded. This module knows nothing about
where files come from; `checkpoints.py` calls it to check a download.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Iterable

import torch

from ..errors import CheckpointError
from .catalog import CHECKPOINT_URLS, how_to_get, variant_from_name
from .model import VARIANTS, build_net

PATCH_EMBED_KEY = "image_encoder.trunk.patch_embed.proj.weight"
BLOCK_PREFIX = "image_encoder.trunk.blocks."
# tensors only SAM 2.1 has
SAM21_KEYS = ("no_obj_embed_spatial", "obj_ptr_tpos_proj.weight", "obj_ptr_tpos_proj.bias")
# (trunk embed dim, number of trunk blocks) -> size, checked against the configs
# shipped with sam2 1.1.0 (tests/test_loading.py builds all eight and re-checks).
TRUNK_SIZES = {
    (96, 12): "tiny",
    (96, 16): "small",
    (112, 24): "base_plus",
    (144, 48): "large",
}
_KEY_PREFIXES = ("model.", "module.")
_LIST_MAX = 8


# --------------------------------------------------------------------------- reading


def _sniff(path: Path) -> str:
    """'zip', 'pickle', 'safetensors' or a description of what the file is not."""
    with open(path, "rb") as f:
        head = f.read(64)
        size = os.fstat(f.fileno()).st_size
    if size == 0:
        return "empty"
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return "zip"
    if head[:1] == b"\x80":
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        n = int.from_bytes(head[:8], "little")
        if 0 < n <= size - 8:
            return "safetensors"
        return "safetensors-truncated"
    if head.lstrip().lower().startswith((b"<!doctype", b"<html", b"<?xml")):
        return "html"
    if head.startswith(b"version https://git-lfs"):
        return "lfs"
    return "unknown"


def _fix_for(path: Path) -> str:
    name = variant_from_name(path)
    if name:
        return (
            f"delete it and get it again ({how_to_get(name)}; "
            f"or pass the name {name!r} to download it automatically)"
        )
    return "delete it and download the checkpoint again (an interrupted download leaves such a file)"


def read_checkpoint(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped and with key prefixes removed.

    Tensors keep the dtype they were stored in. Raises `CheckpointError` for a
    missing, empty, truncated or otherwise unreadable file.
    """
    path = Path(os.fspath(path))
    if not path.is_file():
        raise CheckpointError(f"checkpoint file not found: {path}")
    try:
        kind = _sniff(path)
    except OSError as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}. Check the file's permissions") from e
    if kind == "empty":
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes). Fix: {_fix_for(path)}")
    if kind == "html":
        raise CheckpointError(
            f"checkpoint {path} is a web page (HTML), not model weights: the download link returned a "
            f"page instead of the file. Fix: {_fix_for(path)}"
        )
    if kind == "lfs":
        raise CheckpointError(
            f"checkpoint {path} is a Git LFS pointer, not the weights. Fix: fetch the real file "
            f"(git lfs pull) or {_fix_for(path)}"
        )
    if kind == "unknown":
        raise CheckpointError(
            f"checkpoint {path} is not a PyTorch (.pt/.pth zip or pickle) or safetensors file; it is "
            f"corrupt or of another format. Fix: {_fix_for(path)}"
        )
    if kind.startswith("safetensors"):
        obj = _read_safetensors(path, truncated=kind.endswith("truncated"))
    else:
        obj = _read_torch(path, kind)
    return _unwrap(obj, path)


def _read_safetensors(path: Path, truncated: bool) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    if truncated:
        raise CheckpointError(
            f"checkpoint {path} is a truncated or corrupt safetensors file (its header is cut off). "
            f"Fix: {_fix_for(path)}"
        )
    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(
            f"checkpoint {path} is a damaged or truncated safetensors file ({e}). Fix: {_fix_for(path)}"
        ) from e


def _read_torch(path: Path, kind: str):
    kwargs = dict(map_location="cpu", weights_only=True)
    if kind == "zip":
        try:
            with zipfile.ZipFile(path) as z:
                z.namelist()
        except (zipfile.BadZipFile, OSError) as e:
            raise CheckpointError(
                f"checkpoint {path} is a truncated or corrupt PyTorch file (its zip archive is "
                f"incomplete: {e}). Fix: {_fix_for(path)}"
            ) from e
        kwargs["mmap"] = True  # the weights are read as they are copied into the net
    try:
        return torch.load(path, **kwargs)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() or "weights_only" in str(e):
            raise CheckpointError(
                f"checkpoint {path} holds Python objects besides tensors, which are not loaded "
                f"(only plain weights are read, for safety). Fix: use Meta's official checkpoint "
                f"or re-save the state dict alone (torch.save(state_dict) or as .safetensors)"
            ) from e
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({e}). Fix: {_fix_for(path)}"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError) as e:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {e}). Fix: {_fix_for(path)}"
        ) from e


def _unwrap(obj, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(2):  # {"model": sd} or {"state_dict": sd}, possibly nested once
        if isinstance(obj, dict):
            for k in ("model", "state_dict"):
                if isinstance(obj.get(k), dict):
                    obj = obj[k]
                    break
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"checkpoint {path} holds a {type(obj).__name__}, not a dict of tensors, so it is not a SAM 2 "
            f"checkpoint. Fix: use one of Meta's SAM 2 / 2.1 checkpoints ({', '.join(VARIANTS)})"
        )
    sd = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not sd:
        raise CheckpointError(
            f"checkpoint {path} contains no tensors (keys: {_short_list(list(obj))}), so it is not a "
            f"SAM 2 checkpoint. Fix: use one of Meta's SAM 2 / 2.1 checkpoints ({', '.join(VARIANTS)})"
        )
    return strip_prefix(sd)


def strip_prefix(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a ``model.`` (or ``module.``) prefix that wraps every SAM 2 key."""
    if PATCH_EMBED_KEY in sd:
        return sd
    for prefix in _KEY_PREFIXES:
        if prefix + PATCH_EMBED_KEY in sd or all(k.startswith(prefix) for k in sd):
            return {(k[len(prefix):] if k.startswith(prefix) else k): v for k, v in sd.items()}
    return sd


# --------------------------------------------------------------------------- variant


def _short_list(names: Iterable[str], limit: int = _LIST_MAX) -> str:
    names = list(names)
    text = ", ".join(names[:limit])
    if len(names) > limit:
        text += f", ... ({len(names) - limit} more)"
    return text


def _trunk_blocks(sd) -> int:
    indices = set()
    for k in sd:
        if k.startswith(BLOCK_PREFIX):
            head = k[len(BLOCK_PREFIX):].split(".", 1)[0]
            if head.isdigit():
                indices.add(int(head))
    return max(indices) + 1 if indices else 0


def _is_sam21(sd) -> bool:
    return "no_obj_embed_spatial" in sd or any(k.startswith("obj_ptr_tpos_proj.") for k in sd)


def _evidence(sd) -> str:
    dim = tuple(sd[PATCH_EMBED_KEY].shape)[0] if PATCH_EMBED_KEY in sd else "?"
    marks = "present" if _is_sam21(sd) else "absent"
    return (
        f"Hiera trunk embed dim {dim}, {_trunk_blocks(sd)} blocks; "
        f"SAM 2.1 tensors (no_obj_embed_spatial, obj_ptr_tpos_proj.*) {marks}"
    )


def _known_sizes() -> str:
    return "; ".join(f"{name}: dim {d}, {n} blocks" for (d, n), name in TRUNK_SIZES.items())


def detect_variant(state_dict: dict[str, torch.Tensor]) -> str:
    """The SAM 2 variant (one of `model.VARIANTS`) whose tensors these are.

    Raises `CheckpointError` when the tensors are not those of a SAM 2 / 2.1
    image-encoder trunk, saying which tensors were expected.
    """
    sd = strip_prefix(dict(state_dict))
    weight = sd.get(PATCH_EMBED_KEY)
    if weight is None:
        hint = ""
        if any(k.startswith(("image_encoder.blocks.", "image_encoder.patch_embed.")) for k in sd):
            hint = " It looks like an original Segment Anything (SAM 1) checkpoint, which is a different model."
        raise CheckpointError(
            f"not a SAM 2 checkpoint: expected tensors named like '{PATCH_EMBED_KEY}' and "
            f"'{BLOCK_PREFIX}<N>.*' (Meta's SAM 2 / SAM 2.1 layout), found {len(sd)} tensors such as "
            f"{_short_list(sorted(sd), 5)}.{hint} Fix: use one of Meta's checkpoints "
            f"({', '.join(VARIANTS)}, or SAM 3's sam3.pt) or a .safetensors repack with the same tensor names"
        )
    if weight.dim() != 4 or tuple(weight.shape[1:]) != (3, 7, 7):
        raise CheckpointError(
            f"not a SAM 2 checkpoint: '{PATCH_EMBED_KEY}' has shape {tuple(weight.shape)}, expected "
            f"(embed_dim, 3, 7, 7). Fix: use one of Meta's checkpoints ({', '.join(VARIANTS)})"
        )
    blocks = _trunk_blocks(sd)
    size = TRUNK_SIZES.get((int(weight.shape[0]), blocks))
    if size is None:
        raise CheckpointError(
            f"unknown SAM 2 image encoder: Hiera trunk embed dim {int(weight.shape[0])} with {blocks} "
            f"blocks ('{BLOCK_PREFIX}<N>.*'), expected one of {_known_sizes()}. The file is damaged or "
            f"from a modified model. Fix: use one of Meta's checkpoints ({', '.join(VARIANTS)})"
        )
    return f"{'sam2.1' if _is_sam21(sd) else 'sam2'}_hiera_{size}"


def check_state_dict(
    state_dict: dict[str, torch.Tensor],
    variant: str,
    expected: dict[str, torch.Tensor | torch.Size | tuple] | None = None,
    source: str = "checkpoint",
) -> None:
    """Raise `CheckpointError` unless the tensors match `variant` exactly.

    `expected` maps names to tensors or shapes (default: a freshly built net's
    state dict). The message names missing, unexpected and misshapen tensors with
    expected and found shapes, and the variant that was guessed.
    """
    if expected is None:
        expected = build_net(variant, image_size=128).state_dict()
    problems = tensor_problems(state_dict, expected)
    not_float = [k for k in expected if k in state_dict and not state_dict[k].is_floating_point()]
    if not_float:
        problems.append(f"tensors that are not floating point ({len(not_float)}): {_short_list(not_float)}")
    if problems:
        raise CheckpointError(
            f"{source} does not match SAM 2 variant {variant!r}, guessed from its tensors "
            f"({_evidence(state_dict)}): " + "; ".join(problems) + ". The file is damaged or was saved "
            f"from a different or modified model. Fix: download {variant} again from "
            f"{CHECKPOINT_URLS[variant]} (or pass the name {variant!r} to download it automatically)"
        )


def tensor_problems(
    state_dict: dict[str, torch.Tensor], expected: dict[str, torch.Tensor | torch.Size | tuple]
) -> list[str]:
    """The missing, unexpected and misshapen tensors of `state_dict` against `expected`
    (names -> tensors or shapes), each kind as a short list; [] when all match."""
    want = {k: tuple(v.shape) if isinstance(v, torch.Tensor) else tuple(v) for k, v in expected.items()}
    missing = [k for k in want if k not in state_dict]
    unexpected = [k for k in state_dict if k not in want]
    misshapen = [
        f"{k} (expected {want[k]}, found {tuple(state_dict[k].shape)})"
        for k in want
        if k in state_dict and tuple(state_dict[k].shape) != want[k]
    ]
    kinds = {"missing tensors": missing, "unexpected tensors": unexpected, "tensors of the wrong shape": misshapen}
    return [f"{what} ({len(names)}): {_short_list(names)}" for what, names in kinds.items() if names]


def read_variant(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str]:
    """(tensors, variant) of a checkpoint file; errors name the file."""
    sd = read_checkpoint(path)
    return sd, file_variant(sd, path)


def file_variant(sd: dict[str, torch.Tensor], path: str | os.PathLike) -> str:
    """`detect_variant` of a file's tensors, with the file named in errors."""
    try:
        return detect_variant(sd)
    except CheckpointError as e:
        raise CheckpointError(f"{path}: {e}") from None


def verify_checkpoint(path: str | os.PathLike, expected_variant: str | None = None) -> str:
    """Read a checkpoint file and check all its tensors; return its variant.

    With `expected_variant`, a file of another variant is an error too (used to
    check downloads). Raises `CheckpointError`; loads nothing into a model.
    """
    sd, variant = read_variant(path)
    if expected_variant is not None and variant != expected_variant:
        raise CheckpointError(
            f"{path} holds SAM 2 variant {variant!r} ({_evidence(sd)}), not {expected_variant!r}"
        )
    check_state_dict(sd, variant, source=str(path))
    return variant
