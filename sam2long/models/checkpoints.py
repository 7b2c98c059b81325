"""Where checkpoints come from: names, local folders, the cache, downloads.

`resolve_checkpoint` turns what a user typed (a file path, or a model name such as
``"sam2.1_hiera_tiny"``, ``"sam2.1_hiera_tiny.pt"``, the common repack name
``"sam2.1_hiera_tiny-fp16.safetensors"`` or ``"sam3"``) into an existing file. For
a name it looks in the folders it is given (the ComfyUI node passes its model
folders), then in the cache folder, and downloads Meta's official file (or the
catalogue file of that name, e.g. kijai's ``.safetensors``) into the cache as a last
resort. SAM 3's ``sam3.pt`` comes from a gated Hugging Face repo: the request carries
``$HF_TOKEN`` when set (to the hub's host only, never to where a redirect points), and
a refusal says how to get access.

`download_checkpoint` is the one download, for the command line and the ComfyUI
loader alike. Bytes go to a temporary file next to the final one and are renamed
into place only once complete and checked: size, SHA-256 (pinned, or as the hub
states it) and tensors (by `weights.verify_checkpoint`: this module calls the file
reader, never the other way round), so an interrupted or wrong download never leaves
a file under the final name. Names and URLs come from `catalog.py`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterable
from urllib.error import HTTPError
from urllib.parse import urlsplit
from urllib.request import HTTPRedirectHandler, Request, build_opener

from ..errors import CheckpointError
from .catalog import (
    CHECKPOINT_SUFFIXES,
    DOWNLOADS,
    FULL_PRECISION_TAGS,
    MODEL_NAMES,
    SAM3_NAME,
    download_url,
    how_to_get,
    hub_endpoint,
    split_name,
)
from .weights import verify_checkpoint

# model name -> SHA-256 of Meta's official .pt file. Empty: Meta publishes no
# checksums for these files (not in the sam2 README or its download script), their
# server sends none, and no value is added here that was not stated by a source that
# can be cited (a wrong pin would break every user's download). Kijai's and SAM 3's
# files are checked against the SHA-256 the hub states instead (`_hub_says`).
KNOWN_SHA256: dict[str, str] = {}

CACHE_ENV = "SAM2LONG_CACHE"
TOKEN_ENV = "HF_TOKEN"  # sent to the hub only (SAM 3's repo is gated)
_CHUNK = 1 << 20
_DEFAULT_PORTS = {"http": 80, "https": 443}
_SHA256 = re.compile(r"[0-9a-f]{64}")
log = logging.getLogger("sam2long")


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
    # a catalogue file name (kijai's .safetensors) downloads that file, any other name Meta's .pt
    wanted = path.name if path.name in DOWNLOADS else variant
    return download_checkpoint(wanted, progress=progress, urlopen=urlopen, also_dirs=search_dirs)


def _origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) of a URL: what "the same host" means for the token."""
    u = urlsplit(url)
    return u.scheme.lower(), (u.hostname or "").lower(), u.port or _DEFAULT_PORTS.get(u.scheme.lower())


def _on_hub(url: str) -> bool:
    return _origin(url) == _origin(hub_endpoint())


class _Redirects(HTTPRedirectHandler):
    """urllib's redirect handling with two changes. urllib copies every header to
    wherever a redirect points, so the token is dropped as soon as a redirect leaves
    the host (and scheme and port) it was sent to: the hub sends its files from signed
    CDN addresses that need none. And each redirect's headers are kept, because the
    hub states a file's checksum on its redirect, not on the CDN's answer."""

    def __init__(self):
        self.hops: list[tuple[str, object]] = []  # (URL, response headers) of each redirect

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        self.hops.append((req.full_url, headers))
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and _origin(new.full_url) != _origin(req.full_url):
            new.remove_header("Authorization")
        return new


def _fetch(url: str, timeout: float, urlopen: Callable | None):
    """The open response for `url` and the (URL, headers) of every answer on the way."""
    headers = {"User-Agent": "sam2long"}
    token = os.environ.get(TOKEN_ENV)
    if token and _on_hub(url):  # the hub (or its $HF_ENDPOINT mirror) only
        headers["Authorization"] = f"Bearer {token}"
    request = Request(url, headers=headers)
    if urlopen is not None:  # a stand-in opener (tests): no redirects of its own
        response, hops = urlopen(request, timeout=timeout), []
    else:
        redirects = _Redirects()
        response, hops = build_opener(redirects).open(request, timeout=timeout), redirects.hops
    final_url = response.geturl() if hasattr(response, "geturl") else url
    return response, [*hops, (final_url, getattr(response, "headers", None) or {})]


def _hub_says(hops) -> tuple[str | None, int | None]:
    """(SHA-256, size) of the file as the hub itself states them, or None each.

    The hub's last answer (a redirect to its CDN, or the file itself) carries
    ``X-Linked-Etag`` (else ``ETag``), which for a file stored in LFS is the file's
    SHA-256, and ``X-Linked-Size``. huggingface_hub reads the same headers
    (`file_download.get_hf_file_metadata`; its test `test_resolve_endpoint_on_lfs_file`
    checks that an LFS file's etag is its sha256). A small git file's etag is a
    40-digit git hash, and a CDN's ETag means something else: neither is used.
    """
    answers = [headers for u, headers in hops if _on_hub(u)]
    if not answers:
        return None, None
    headers = answers[-1]
    etag = (headers.get("X-Linked-Etag") or headers.get("ETag") or "").strip()
    etag = etag.removeprefix("W/").strip('"').lower()
    size = headers.get("X-Linked-Size")
    return (etag if _SHA256.fullmatch(etag) else None), (int(size) if size and str(size).isdigit() else None)


@contextlib.contextmanager
def _network_errors(file_name: str, url: str, manual: str, gated: bool):
    """Turn what opening or reading a URL raises into one CheckpointError that names
    the URL and says where to put the file by hand. Exceptions raised by the caller's
    progress callback (ComfyUI's Cancel) are not in its scope and pass unchanged."""
    try:
        yield
    except HTTPError as e:
        refused = " (access refused: the repo is gated)" if gated and e.code in (401, 403) else ""
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
    except Exception as e:  # http.client.HTTPException (IncompleteRead) and the like
        raise CheckpointError(f"could not download {file_name} from {url} ({_reason(e)}). {manual}") from e


def _verify(path: Path, name: str) -> None:
    if name == SAM3_NAME:
        from .sam3.checkpoint import verify_sam3_checkpoint

        verify_sam3_checkpoint(path)
    else:
        verify_checkpoint(path, expected_variant=name)


def download_checkpoint(
    name: str,
    dest_dir: str | os.PathLike | None = None,
    *,
    url: str | None = None,
    progress: bool | Callable[[int, int | None], None] = True,
    urlopen: Callable | None = None,
    timeout: float = 60.0,
    also_dirs: Iterable[str | os.PathLike] = (),
) -> Path:
    """Download a checkpoint into `dest_dir` (default: the cache) and return its path.

    `name` is a model name (``"sam2.1_hiera_tiny"``: Meta's ``.pt`` file) or one of
    the catalogue's file names (`catalog.DOWNLOADS`, e.g. kijai's
    ``"sam2.1_hiera_tiny.safetensors"``); `url` replaces where it comes from.
    The bytes go to a temporary file in `dest_dir`, renamed to the file name only
    once complete and checked: the size the server announced, the SHA-256 pinned
    in `KNOWN_SHA256` or else the one the hub states for the file, and tensors that
    are those of the model. Otherwise nothing is left and a `CheckpointError` names
    the URL, the folder and the file name to place by hand (`also_dirs` are named too).
    `progress`: True for a progress bar on stderr, or a function called with
    (bytes so far, total or None) after each chunk; what it raises (a Cancel) passes
    through, and the partial file is removed. For the hub the request carries
    ``$HF_TOKEN``, never sent to another host; a refusal (401/403) says how to get access.
    `urlopen` replaces urllib's opener (for tests).
    """
    variant, _ = split_name(name)
    if variant is None:
        raise CheckpointError(f"unknown model name {name!r}; use one of: {', '.join(MODEL_NAMES)}")
    file_name = name if name in DOWNLOADS else f"{variant}.pt"
    url = url or download_url(file_name)
    in_cache = dest_dir is None
    dest_dir = cache_dir() if in_cache else Path(os.fspath(dest_dir)).expanduser()
    final = dest_dir / file_name
    places = _where_to_put(variant, [*also_dirs, dest_dir])
    gated = variant == SAM3_NAME
    get = how_to_get(variant) if gated else f"download {url}"
    manual = f"Fix: {get} and put it in {places} as {file_name}."
    if gated:
        manual += f" Or set {TOKEN_ENV} to a Hugging Face token of an account that accepted the licence."
    try:
        dest_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{file_name}.", suffix=".part", dir=dest_dir)
    except OSError as e:
        fix = f"Set {CACHE_ENV} to a writable folder" if in_cache else "Make it writable"
        raise CheckpointError(f"cannot write to the checkpoint folder {dest_dir} ({e}). {fix}. Or: {manual}") from e
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        received = 0
        with os.fdopen(fd, "wb") as out:
            with _network_errors(file_name, url, manual, gated):
                response, hops = _fetch(url, timeout, urlopen)
            with response:
                length = hops[-1][1].get("Content-Length")
                total = int(length) if length and str(length).isdigit() else None
                report = progress if callable(progress) else None
                bar = _progress_bar(total, file_name, progress is True)
                try:
                    while True:
                        with _network_errors(file_name, url, manual, gated):
                            chunk = response.read(_CHUNK)
                        if not chunk:
                            break
                        try:
                            out.write(chunk)
                        except OSError as e:
                            raise CheckpointError(
                                f"could not write {file_name} into {dest_dir} ({e}); free some space there. {manual}"
                            ) from e
                        digest.update(chunk)
                        received += len(chunk)
                        bar.update(len(chunk))
                        if report is not None:
                            report(received, total)
                finally:
                    bar.close()
        hub_sha256, hub_size = _hub_says(hops)
        for expected in (total, hub_size):
            if expected is not None and received != expected:
                raise CheckpointError(
                    f"download of {file_name} from {url} stopped early: got {received} of {expected} bytes. "
                    f"Try again. {manual}"
                )
        pinned = KNOWN_SHA256.get(variant) if file_name == f"{variant}.pt" else None
        checks = [(h.lower(), why) for h, why in ((pinned, "the pinned value"), (hub_sha256, "the hub")) if h]
        for expected_hash, why in checks:
            if digest.hexdigest() != expected_hash:
                raise CheckpointError(
                    f"downloaded {file_name} from {url} has SHA-256 {digest.hexdigest()}, but {why} says "
                    f"{expected_hash}: the file is corrupt or was changed, and was not kept. Try again. {manual}"
                )
        try:
            _verify(tmp, variant)
        except CheckpointError as e:
            raise CheckpointError(f"the file downloaded from {url} failed its check: {e}. {manual}") from e
        os.replace(tmp, final)
        if checks:
            log.info("sam2long: %s downloaded from %s, SHA-256 checked against %s", file_name, url,
                     " and ".join(why for _, why in checks))
        else:
            log.warning("sam2long: %s downloaded from %s: no SHA-256 is published for it and the server "
                        "sent none, so it was checked by its size and tensors only", file_name, url)
        return final
    finally:
        try:
            tmp.unlink()
        except OSError:  # renamed into place, or already gone
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
