"""Where checkpoints come from: names, local folders, the cache, downloads.

`resolve_checkpoint` turns what a user typed (a file path, or a model name such as
``"sam2.1_hiera_tiny"``, ``"sam2.1_hiera_tiny.pt"``, the common repack name
``"sam2.1_hiera_tiny-fp16.safetensors"`` or ``"sam3"``) into an existing file. For
a name it looks in the folders it is given (the ComfyUI node passes its model
folders), then in the cache folder, and downloads Meta's official file into the
cache as a last resort. SAM 3's ``sam3.pt`` comes from a gated Hugging Face repo:
the request carries ``$HF_TOKEN`` when set, and a refusal says how to get access.

Downloads go to a temporary file next to the final one and are renamed into place
only once complete and checked (by `weights.verify_checkpoint`: this module calls
the file reader, never the other way round), so an interrupted download never
leaves a file under the final name. Names and URLs come from `catalog.py`.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from ..errors import CheckpointError
from .catalog import (
    CHECKPOINT_SUFFIXES,
    FULL_PRECISION_TAGS,
    MODEL_NAMES,
    SAM3_NAME,
    checkpoint_url,
    how_to_get,
    split_name,
)
from .weights import verify_checkpoint

# model name -> SHA-256 of Meta's official file. Deliberately empty: a value is
# added here only once it has been computed from a real download of that file
# (never copied from memory or elsewhere). Until then a download is checked by
# loading it and matching its tensors against the expected variant.
KNOWN_SHA256: dict[str, str] = {}

CACHE_ENV = "SAM2LONG_CACHE"
TOKEN_ENV = "HF_TOKEN"  # sent to huggingface.co only (SAM 3's repo is gated)
_CHUNK = 1 << 20


def cache_dir() -> Path:
    """The download cache: ``$SAM2LONG_CACHE`` if set, else ``~/.cache/sam2long``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "sam2long"


def find_local_checkpoint(variant: str, dirs: Iterable[str | os.PathLike], prefer: str | None = None) -> Path | None:
    """The best file for `variant` in `dirs` (searched in order), or None.

    In each folder an exact `prefer` file name wins, then full-precision files
    (Meta's ``.pt`` first), then reduced-precision repacks (``*-fp16.safetensors``).
    """
    for d in dirs:
        d = Path(os.fspath(d)).expanduser()
        if not d.is_dir():
            continue
        if prefer:
            exact = d / prefer
            if exact.is_file():
                return exact
        candidates = []
        try:
            entries = list(d.iterdir())
        except OSError:
            continue
        for entry in entries:
            if entry.name.startswith(".") or not entry.is_file():
                continue
            v, tag = split_name(entry.name)
            if v != variant:
                continue
            rank = (
                0 if tag in FULL_PRECISION_TAGS else 1,
                0 if entry.suffix.lower() in (".pt", ".pth") else 1,
                entry.name,
            )
            candidates.append((rank, entry))
        if candidates:
            return min(candidates)[1]
    return None


def _shown(path: Path) -> str:
    """The path as given, plus where that is when it was relative."""
    return str(path) if path.is_absolute() else f"{path} (looked in {Path.cwd()})"


def _where_to_put(variant: str, dirs: Iterable[Path]) -> str:
    names = [str(Path(os.fspath(d)).expanduser()) for d in dirs]
    return " or ".join(names) if names else str(cache_dir())


def resolve_checkpoint(
    name_or_path: str | os.PathLike,
    search_dirs: Iterable[str | os.PathLike] = (),
    download: bool = True,
    progress: bool = True,
    *,
    urlopen: Callable | None = None,
) -> Path:
    """Turn a checkpoint path or model name into an existing file.

    An existing file is returned as it is. A missing file whose name is one of the
    official model names (with or without extension / precision tag) and has no
    folder part is looked up in `search_dirs`, then the cache; failing that,
    Meta's file is downloaded into the cache (unless ``download=False``).
    `urlopen` replaces `urllib.request.urlopen` (for tests).
    Raises `CheckpointError` saying which file to get from where.
    """
    path = Path(os.fspath(name_or_path)).expanduser()
    if path.is_file():
        return path
    if path.is_dir():
        raise CheckpointError(
            f"{path} is a folder, not a checkpoint file; pass the path of a .pt or .safetensors "
            f"file inside it, or a model name ({', '.join(MODEL_NAMES)})"
        )
    variant, _ = split_name(path.name)
    search_dirs = [Path(os.fspath(d)).expanduser() for d in search_dirs]
    if variant is None:
        raise CheckpointError(
            f"checkpoint file not found: {_shown(path)}. Pass the path of an existing SAM 2 / SAM 2.1 "
            f"or SAM 3 checkpoint (.pt, .pth or .safetensors), or one of the model names "
            f"({', '.join(MODEL_NAMES)}) to find it in the model folders or download it"
        )
    has_folder = path.is_absolute() or len(path.parts) > 1
    if has_folder:
        raise CheckpointError(
            f"checkpoint file not found: {_shown(path)}. Fix: {how_to_get(variant)} and save it there, "
            f"or pass just the model name {variant!r} to look for it in the model folders "
            f"and the cache ({cache_dir()}) and download it automatically"
        )
    prefer = path.name if path.suffix.lower() in CHECKPOINT_SUFFIXES else None
    found = find_local_checkpoint(variant, [*search_dirs, cache_dir()], prefer=prefer)
    if found is not None:
        return found
    if not download:
        raise CheckpointError(
            f"checkpoint {variant!r} not found in {_where_to_put(variant, [*search_dirs, cache_dir()])}. "
            f"Fix: {how_to_get(variant)} and put {variant}.pt in "
            f"{_where_to_put(variant, search_dirs or [cache_dir()])} (or allow downloading it: download=True)"
        )
    return download_checkpoint(variant, progress=progress, urlopen=urlopen, also_dirs=search_dirs)


def _open(urlopen, url, timeout):
    from urllib.parse import urlsplit
    from urllib.request import Request
    from urllib.request import urlopen as _urlopen

    headers = {"User-Agent": "sam2long"}
    token = os.environ.get(TOKEN_ENV)
    if token and urlsplit(url).hostname == "huggingface.co":  # never sent elsewhere
        headers["Authorization"] = f"Bearer {token}"
    return (urlopen or _urlopen)(Request(url, headers=headers), timeout=timeout)


def _verify(path: Path, name: str) -> None:
    if name == SAM3_NAME:
        from .sam3.checkpoint import verify_sam3_checkpoint

        verify_sam3_checkpoint(path)
    else:
        verify_checkpoint(path, expected_variant=name)


def download_checkpoint(
    variant: str,
    dest_dir: str | os.PathLike | None = None,
    *,
    url: str | None = None,
    progress: bool = True,
    urlopen: Callable | None = None,
    timeout: float = 60.0,
    also_dirs: Iterable[str | os.PathLike] = (),
) -> Path:
    """Download the official checkpoint of `variant` (a model name) into `dest_dir`
    (default: cache).

    The bytes go to a temporary file in `dest_dir`; after the download is complete,
    its size matches the server's Content-Length, its SHA-256 matches
    `KNOWN_SHA256` (when a verified value is known) and its tensors are those of
    `variant`, it is renamed to ``<variant>.pt``. Otherwise it is deleted and a
    `CheckpointError` says where to get the file by hand. `also_dirs` are only
    mentioned in that message as other places to put the file. For SAM 3 the
    request carries ``$HF_TOKEN``; a refusal (401/403) says how to get access.
    """
    from urllib.error import HTTPError

    url = url or checkpoint_url(variant)
    dest_dir = Path(os.fspath(dest_dir)).expanduser() if dest_dir is not None else cache_dir()
    file_name = f"{variant}.pt"
    final = dest_dir / file_name
    places = _where_to_put(variant, [*also_dirs, dest_dir])
    manual = f"Fix: {how_to_get(variant)} and put it in {places} as {file_name}."
    if variant == SAM3_NAME:
        manual += f" Or set {TOKEN_ENV} to a Hugging Face token of an account that accepted the licence."
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{file_name}.", suffix=".part", dir=dest_dir)
    except OSError as e:
        raise CheckpointError(
            f"cannot write to the checkpoint cache {dest_dir} ({e}). Set {CACHE_ENV} to a writable "
            f"folder. Or: {manual}"
        ) from e
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        received = 0
        try:
            with os.fdopen(fd, "wb") as out, _open(urlopen, url, timeout) as response:
                headers = getattr(response, "headers", None)
                length = headers.get("Content-Length") if headers is not None else None
                total = int(length) if length and str(length).isdigit() else None
                bar = _progress_bar(total, file_name, progress)
                try:
                    while True:
                        chunk = response.read(_CHUNK)
                        if not chunk:
                            break
                        out.write(chunk)
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                finally:
                    bar.close()
        except HTTPError as e:
            refused = " (access refused: the repo is gated)" if variant == SAM3_NAME and e.code in (401, 403) else ""
            raise CheckpointError(
                f"could not download {file_name} from {url}: HTTP {e.code} {e.reason}{refused}. {manual}"
            ) from e
        except (OSError, ValueError, EOFError) as e:
            # URLError, timeouts, refused connections, resets and http.client
            # errors that are OSError subclasses all land here.
            raise CheckpointError(
                f"could not download {file_name} from {url} ({_reason(e)}); this machine may be "
                f"offline. {manual}"
            ) from e
        except Exception as e:  # http.client.HTTPException and the like
            raise CheckpointError(
                f"could not download {file_name} from {url} ({_reason(e)}). {manual}"
            ) from e
        if total is not None and received != total:
            raise CheckpointError(
                f"download of {file_name} from {url} stopped early: got {received} of {total} bytes. "
                f"Try again. {manual}"
            )
        expected_hash = KNOWN_SHA256.get(variant)
        if expected_hash and digest.hexdigest() != expected_hash.lower():
            raise CheckpointError(
                f"downloaded {file_name} from {url} has SHA-256 {digest.hexdigest()}, expected "
                f"{expected_hash}: the file is corrupt or was changed. Try again. {manual}"
            )
        try:
            _verify(tmp, variant)
        except CheckpointError as e:
            raise CheckpointError(
                f"the file downloaded from {url} failed its check: {e}. {manual}"
            ) from e
        os.replace(tmp, final)
        return final
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        except OSError:
            pass


def _reason(e: BaseException) -> str:
    reason = getattr(e, "reason", None)
    text = str(reason if reason is not None else e) or type(e).__name__
    return text


class _NoBar:
    def update(self, n):
        pass

    def close(self):
        pass


def _progress_bar(total, name, enabled):
    if not enabled:
        return _NoBar()
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm comes with sam2
        return _NoBar()
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=name, file=sys.stderr)
