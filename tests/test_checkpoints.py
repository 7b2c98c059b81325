"""Tests for sam2long.models.catalog and sam2long.models.checkpoints: names, folder search, cache and downloads.

Downloads are served by a fake opener or by an http.server bound to 127.0.0.1;
nothing leaves this machine.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import re
import threading
import urllib.error
from pathlib import Path

import pytest
import torch

from sam2long.models import checkpoints
from sam2long.models.catalog import CHECKPOINT_URLS, checkpoint_url, variant_from_name
from sam2long.models.checkpoints import (
    KNOWN_SHA256,
    cache_dir,
    download_checkpoint,
    find_local_checkpoint,
    resolve_checkpoint,
)
from sam2long.errors import CheckpointError
from sam2long.models.loading import load_model
from sam2long.models.model import VARIANTS, build_net

TINY = "sam2.1_hiera_tiny"
TINY_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_tiny.pt"


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("SAM2LONG_CACHE", str(cache))
    for name in ("HF_ENDPOINT", "SAM2LONG_DOWNLOAD_BASE", "HF_TOKEN"):  # the machine's own settings
        monkeypatch.delenv(name, raising=False)
    return cache


def _checkpoint_bytes(variant: str) -> bytes:
    """A real (random-weight, fp16 to stay small) checkpoint in Meta's layout."""
    torch.manual_seed(0)
    sd = {k: v.half() for k, v in build_net(variant, image_size=128).state_dict().items()}
    buf = io.BytesIO()
    torch.save({"model": sd}, buf)
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny_bytes():
    return _checkpoint_bytes(TINY)


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, length: int | None = None, fail_after: int | None = None):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data) if length is None else length)}
        self.fail_after = fail_after

    def read(self, n=-1):
        if self.fail_after is not None and self.tell() >= self.fail_after:
            raise ConnectionResetError("connection reset by peer")
        return super().read(n)


class FakeOpener:
    """Stands in for urllib.request.urlopen; records the URLs and the requests."""

    def __init__(self, make):
        self.make = make
        self.calls = []
        self.requests = []

    def __call__(self, request, timeout=None):
        self.calls.append(request.full_url)
        self.requests.append(request)
        return self.make()


def _leftovers(folder: Path):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# --------------------------------------------------------------------------- names


def test_official_urls():
    assert set(CHECKPOINT_URLS) == set(VARIANTS)
    assert CHECKPOINT_URLS["sam2_hiera_tiny"] == "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_tiny.pt"
    assert CHECKPOINT_URLS["sam2_hiera_base_plus"] == "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_base_plus.pt"
    assert CHECKPOINT_URLS["sam2.1_hiera_large"] == "https://dl.fbaipublicfiles.com/segment_anything_2/092824/sam2.1_hiera_large.pt"
    for v, url in CHECKPOINT_URLS.items():
        folder = "092824" if v.startswith("sam2.1") else "072824"
        assert url == f"https://dl.fbaipublicfiles.com/segment_anything_2/{folder}/{v}.pt"
    assert checkpoint_url(TINY) == TINY_URL
    with pytest.raises(CheckpointError, match="unknown model name"):
        checkpoint_url("sam3_hiera_tiny")


def test_known_hashes_are_only_well_formed_values():
    for v, h in KNOWN_SHA256.items():
        assert v in VARIANTS and re.fullmatch(r"[0-9a-f]{64}", h)


@pytest.mark.parametrize(
    "name, variant",
    [
        ("sam2.1_hiera_tiny", "sam2.1_hiera_tiny"),
        ("sam2.1_hiera_tiny.pt", "sam2.1_hiera_tiny"),
        ("sam2.1_hiera_tiny-fp16.safetensors", "sam2.1_hiera_tiny"),
        ("sam2.1_hiera_base_plus_bf16.safetensors", "sam2.1_hiera_base_plus"),
        ("sam2_hiera_large.safetensors", "sam2_hiera_large"),
        ("SAM2_Hiera_Small.PTH", "sam2_hiera_small"),
        ("sam2.1-hiera-small", "sam2.1_hiera_small"),
        ("models/sam2/sam2_hiera_tiny-fp32.pt", "sam2_hiera_tiny"),
        ("sam2_hiera_huge.pt", None),
        ("my_weights.pt", None),
        ("sam2.1_hiera_tiny.onnx", None),
    ],
)
def test_variant_from_name(name, variant):
    assert variant_from_name(name) == variant


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("SAM2LONG_CACHE", str(tmp_path / "x"))
    assert cache_dir() == tmp_path / "x"
    monkeypatch.delenv("SAM2LONG_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "sam2long"


# --------------------------------------------------------------------------- local search


def test_existing_path_is_returned_as_is(tmp_path):
    f = tmp_path / "anything.bin"
    f.write_bytes(b"x")
    assert resolve_checkpoint(f, download=False) == f
    assert resolve_checkpoint(str(f), download=False) == f


def test_name_found_in_search_dirs_in_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (b / "sam2.1_hiera_tiny.pt").write_bytes(b"b")
    assert resolve_checkpoint(TINY, search_dirs=[a, b], download=False) == b / "sam2.1_hiera_tiny.pt"
    (a / "sam2.1_hiera_tiny-fp16.safetensors").write_bytes(b"a")
    # the first folder with any file of that variant wins, repacks included
    assert resolve_checkpoint(TINY, search_dirs=[a, b], download=False) == a / "sam2.1_hiera_tiny-fp16.safetensors"


def test_full_precision_preferred_unless_a_file_is_named(tmp_path):
    (tmp_path / "sam2.1_hiera_tiny-fp16.safetensors").write_bytes(b"1")
    (tmp_path / "sam2.1_hiera_tiny.safetensors").write_bytes(b"2")
    (tmp_path / "sam2.1_hiera_tiny.pt").write_bytes(b"3")
    (tmp_path / "sam2_hiera_tiny.pt").write_bytes(b"other variant")
    (tmp_path / ".sam2.1_hiera_tiny.pt.abc.part").write_bytes(b"partial")
    assert find_local_checkpoint(TINY, [tmp_path]) == tmp_path / "sam2.1_hiera_tiny.pt"
    got = resolve_checkpoint("sam2.1_hiera_tiny-fp16.safetensors", search_dirs=[tmp_path], download=False)
    assert got == tmp_path / "sam2.1_hiera_tiny-fp16.safetensors"
    # a repack name finds the official file when that is all there is
    (tmp_path / "sam2.1_hiera_tiny-fp16.safetensors").unlink()
    (tmp_path / "sam2.1_hiera_tiny.safetensors").unlink()
    got = resolve_checkpoint("sam2.1_hiera_tiny-fp16.safetensors", search_dirs=[tmp_path], download=False)
    assert got == tmp_path / "sam2.1_hiera_tiny.pt"


def test_cache_is_searched(isolated_cache):
    isolated_cache.mkdir()
    (isolated_cache / "sam2_hiera_small.pt").write_bytes(b"x")
    assert resolve_checkpoint("sam2_hiera_small", download=False) == isolated_cache / "sam2_hiera_small.pt"


def test_not_found_without_download_says_what_to_do(tmp_path, isolated_cache):
    with pytest.raises(CheckpointError) as e:
        resolve_checkpoint("sam2_hiera_large", search_dirs=[tmp_path / "models"], download=False)
    msg = str(e.value)
    assert "https://dl.fbaipublicfiles.com/segment_anything_2/072824/sam2_hiera_large.pt" in msg
    assert "sam2_hiera_large.pt" in msg and str(tmp_path / "models") in msg


def test_unknown_name_and_folder_are_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found.*model names"):
        resolve_checkpoint("my_weights.pt", download=False)
    with pytest.raises(CheckpointError, match="is a folder"):
        resolve_checkpoint(tmp_path, download=False)


def test_missing_explicit_path_is_not_downloaded(tmp_path):
    opener = FakeOpener(lambda: pytest.fail("must not download"))
    with pytest.raises(CheckpointError, match="not found") as e:
        resolve_checkpoint(tmp_path / "sam2.1_hiera_tiny.pt", urlopen=opener)
    assert TINY_URL in str(e.value)
    assert opener.calls == []


# --------------------------------------------------------------------------- downloads


def test_offline_download_says_which_file_from_where(tmp_path, isolated_cache):
    def offline():
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    opener = FakeOpener(offline)
    models = tmp_path / "ComfyUI" / "models" / "sam2"
    with pytest.raises(CheckpointError) as e:
        resolve_checkpoint(TINY, search_dirs=[models], progress=False, urlopen=opener)
    msg = str(e.value)
    assert opener.calls == [TINY_URL]
    assert TINY_URL in msg and "sam2.1_hiera_tiny.pt" in msg
    assert "offline" in msg and "name resolution" in msg
    assert str(models) in msg and str(isolated_cache) in msg
    assert _leftovers(isolated_cache) == []  # no partial file left behind


def test_successful_download_then_cached(tiny_bytes, isolated_cache, capsys):
    opener = FakeOpener(lambda: FakeResponse(tiny_bytes))
    path = resolve_checkpoint(TINY, progress=True, urlopen=opener)
    assert path == isolated_cache / "sam2.1_hiera_tiny.pt"
    assert path.read_bytes() == tiny_bytes
    assert _leftovers(isolated_cache) == ["sam2.1_hiera_tiny.pt"]
    assert "sam2.1_hiera_tiny.pt" in capsys.readouterr().err  # progress bar on stderr
    # the next call finds it in the cache and does not download again
    assert resolve_checkpoint(TINY, urlopen=FakeOpener(lambda: pytest.fail("downloaded twice"))) == path
    model = load_model(TINY, device="cpu", image_size=128, download=False)
    assert model.variant == TINY


def test_download_cut_short(tiny_bytes, isolated_cache):
    opener = FakeOpener(lambda: FakeResponse(tiny_bytes[:1000], length=len(tiny_bytes)))
    with pytest.raises(CheckpointError, match=f"got 1000 of {len(tiny_bytes)} bytes") as e:
        download_checkpoint(TINY, progress=False, urlopen=opener)
    assert TINY_URL in str(e.value)
    assert _leftovers(isolated_cache) == []


def test_connection_reset_mid_download(tiny_bytes, isolated_cache):
    opener = FakeOpener(lambda: FakeResponse(tiny_bytes, fail_after=3 << 20))
    with pytest.raises(CheckpointError, match="connection reset"):
        download_checkpoint(TINY, progress=False, urlopen=opener)
    assert _leftovers(isolated_cache) == []


def test_download_of_a_web_page_is_rejected(isolated_cache):
    page = b"<!DOCTYPE html><html>quota exceeded</html>"
    with pytest.raises(CheckpointError, match="failed its check.*web page"):
        download_checkpoint(TINY, progress=False, urlopen=FakeOpener(lambda: FakeResponse(page)))
    assert _leftovers(isolated_cache) == []


def test_download_of_another_variant_is_rejected(isolated_cache):
    other = _checkpoint_bytes("sam2_hiera_tiny")
    with pytest.raises(CheckpointError, match="'sam2_hiera_tiny'.*not 'sam2.1_hiera_tiny'"):
        download_checkpoint(TINY, progress=False, urlopen=FakeOpener(lambda: FakeResponse(other)))
    assert _leftovers(isolated_cache) == []


def test_known_hash_is_checked(tiny_bytes, isolated_cache, monkeypatch):
    monkeypatch.setitem(checkpoints.KNOWN_SHA256, TINY, "0" * 64)
    with pytest.raises(CheckpointError, match="SHA-256"):
        download_checkpoint(TINY, progress=False, urlopen=FakeOpener(lambda: FakeResponse(tiny_bytes)))
    assert _leftovers(isolated_cache) == []
    monkeypatch.setitem(checkpoints.KNOWN_SHA256, TINY, hashlib.sha256(tiny_bytes).hexdigest())
    path = download_checkpoint(TINY, progress=False, urlopen=FakeOpener(lambda: FakeResponse(tiny_bytes)))
    assert path.read_bytes() == tiny_bytes


def test_existing_file_is_replaced_only_by_a_good_download(tiny_bytes, isolated_cache):
    isolated_cache.mkdir()
    final = isolated_cache / "sam2.1_hiera_tiny.pt"
    final.write_bytes(b"old")
    with pytest.raises(CheckpointError):
        download_checkpoint(TINY, progress=False, urlopen=FakeOpener(lambda: FakeResponse(b"\x00" * 50)))
    assert final.read_bytes() == b"old"
    download_checkpoint(TINY, progress=False, urlopen=FakeOpener(lambda: FakeResponse(tiny_bytes)))
    assert final.read_bytes() == tiny_bytes


@pytest.fixture
def local_server(tmp_path, tiny_bytes):
    root = tmp_path / "served"
    root.mkdir()
    (root / "sam2.1_hiera_tiny.pt").write_bytes(tiny_bytes)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_download_over_http_from_localhost(local_server, tiny_bytes, tmp_path):
    dest = tmp_path / "dest"
    path = download_checkpoint(TINY, dest, url=f"{local_server}/sam2.1_hiera_tiny.pt", progress=False)
    assert path == dest / "sam2.1_hiera_tiny.pt"
    assert path.read_bytes() == tiny_bytes
    with pytest.raises(CheckpointError, match="HTTP 404") as e:
        download_checkpoint("sam2_hiera_tiny", dest, url=f"{local_server}/nope.pt", progress=False)
    assert f"{local_server}/nope.pt" in str(e.value)
    assert _leftovers(dest) == ["sam2.1_hiera_tiny.pt"]


def test_unwritable_cache_is_explained(tmp_path, monkeypatch):
    blocker = tmp_path / "file_not_folder"
    blocker.write_bytes(b"")
    monkeypatch.setenv("SAM2LONG_CACHE", str(blocker / "cache"))
    with pytest.raises(CheckpointError, match="SAM2LONG_CACHE") as e:
        resolve_checkpoint(TINY, progress=False, urlopen=FakeOpener(lambda: pytest.fail("no")))
    assert TINY_URL in str(e.value)


# --------------------------------------------------------------------------- the hub: token, checksum, failures
# A local hub on 127.0.0.1 ($HF_ENDPOINT) that redirects to its "CDN" on localhost (tests/hub_server.py).

KIJAI_TINY = "sam2.1_hiera_tiny.safetensors"


@pytest.fixture(scope="module")
def tiny_safetensors(tiny_bytes):
    """kijai's layout: the same tensors as Meta's file, as a flat safetensors state dict."""
    from safetensors.torch import save

    return save(torch.load(io.BytesIO(tiny_bytes), weights_only=True)["model"])


@pytest.fixture
def hub(tiny_safetensors, tiny_bytes, monkeypatch):
    from hub_server import serve

    with serve({KIJAI_TINY: tiny_safetensors, "sam2.1_hiera_tiny.pt": tiny_bytes}) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        monkeypatch.setenv("HF_TOKEN", "hf_secret")
        yield h


def _hub_url(hub, name=KIJAI_TINY):
    return f"{hub.url}/Kijai/sam2-safetensors/resolve/main/{name}"


def test_token_is_dropped_on_a_redirect_to_another_host(hub, tmp_path, tiny_safetensors, caplog):
    caplog.set_level("INFO", logger="sam2long")
    dest = tmp_path / "models" / "sam2"
    path = download_checkpoint(KIJAI_TINY, dest, progress=False)
    assert path == dest / KIJAI_TINY and path.read_bytes() == tiny_safetensors
    (hub_host, hub_path, hub_auth), (cdn_host, cdn_path, cdn_auth) = hub.seen
    assert hub_host == hub.url.split("//")[1] and hub_path == "/Kijai/sam2-safetensors/resolve/main/" + KIJAI_TINY
    assert hub_auth == "Bearer hf_secret"  # the hub gets the token ...
    assert cdn_host == hub.cdn.split("//")[1] and cdn_path.startswith("/cdn/")
    assert cdn_auth is None  # ... the CDN it redirects to does not
    assert "SHA-256 checked against the hub" in caplog.text


def test_token_is_kept_on_a_redirect_within_the_hub(hub, tmp_path):
    hub.redirect = "same"
    download_checkpoint(KIJAI_TINY, tmp_path, progress=False)
    assert [auth for _, _, auth in hub.seen] == ["Bearer hf_secret", "Bearer hf_secret"]
    assert all(host == hub.url.split("//")[1] for host, _, _ in hub.seen)


def test_token_goes_to_the_hub_only(hub, tmp_path):
    elsewhere = f"{hub.cdn}/cdn/{KIJAI_TINY}"  # the same bytes, from another host
    download_checkpoint(KIJAI_TINY, tmp_path, url=elsewhere, progress=False)
    assert [auth for _, _, auth in hub.seen] == [None]


def test_hub_checksum_mismatch_is_refused_and_nothing_is_left(hub, tmp_path):
    hub.linked_etag = "0" * 64
    dest = tmp_path / "models" / "sam2"
    with pytest.raises(CheckpointError) as e:
        download_checkpoint(KIJAI_TINY, dest, progress=False)
    msg = str(e.value)
    assert "SHA-256" in msg and "0" * 64 in msg and "was not kept" in msg
    assert _hub_url(hub) in msg and str(dest) in msg and KIJAI_TINY in msg
    assert _leftovers(dest) == []


def test_a_cdn_etag_is_not_taken_for_the_checksum(hub, tmp_path, tiny_safetensors, caplog):
    """Only the hub's own answer states the checksum: a CDN's ETag means something else."""
    hub.linked_etag, hub.cdn_etag = None, "f" * 64
    path = download_checkpoint(KIJAI_TINY, tmp_path, progress=False)
    assert path.read_bytes() == tiny_safetensors
    assert "checked by its size and tensors only" in caplog.text


def test_meta_file_from_a_mirror_is_checked_by_size_and_tensors(hub, tmp_path, tiny_bytes, monkeypatch, caplog):
    monkeypatch.setenv("SAM2LONG_DOWNLOAD_BASE", hub.url + "/files/")
    path = download_checkpoint(TINY, tmp_path, progress=False)
    assert path == tmp_path / "sam2.1_hiera_tiny.pt" and path.read_bytes() == tiny_bytes
    assert [p for _, p, _ in hub.seen] == ["/files/sam2.1_hiera_tiny.pt"]
    assert "sam2.1_hiera_tiny.pt" in caplog.text and "checked by its size and tensors only" in caplog.text


def test_interrupted_transfer_leaves_nothing(hub, tmp_path):
    hub.cut_after = 5 << 20
    with pytest.raises(CheckpointError, match="could not download|stopped early") as e:
        download_checkpoint(KIJAI_TINY, tmp_path, progress=False)
    assert _hub_url(hub) in str(e.value)
    assert _leftovers(tmp_path) == []


def test_missing_file_on_the_hub(hub, tmp_path):
    del hub.files[KIJAI_TINY]
    with pytest.raises(CheckpointError) as e:
        download_checkpoint(KIJAI_TINY, tmp_path, progress=False)
    msg = str(e.value)
    assert "HTTP 404" in msg and _hub_url(hub) in msg and str(tmp_path) in msg and f"as {KIJAI_TINY}" in msg
    assert _leftovers(tmp_path) == []


def test_no_network_names_url_folder_and_file(tmp_path, monkeypatch):
    import socket

    with socket.socket() as s:  # a port nothing listens on: connection refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    dest = tmp_path / "models" / "sam2"
    with pytest.raises(CheckpointError) as e:
        download_checkpoint(KIJAI_TINY, dest, progress=False)
    msg = str(e.value)
    url = f"http://127.0.0.1:{port}/Kijai/sam2-safetensors/resolve/main/{KIJAI_TINY}"
    assert "offline" in msg and "refused" in msg.lower()
    assert f"download {url} and put it in {dest} as {KIJAI_TINY}" in msg
    assert _leftovers(dest) == []


def test_a_catalogue_file_name_downloads_that_file(hub, isolated_cache, tiny_safetensors):
    """The command line: a kijai file name downloads kijai's file into the cache."""
    path = resolve_checkpoint(KIJAI_TINY, progress=False)
    assert path == isolated_cache / KIJAI_TINY and path.read_bytes() == tiny_safetensors
    assert resolve_checkpoint(KIJAI_TINY, download=False) == path  # found there next time


def test_progress_callback_and_cancel(hub, tmp_path, tiny_safetensors):
    seen = []
    download_checkpoint(KIJAI_TINY, tmp_path / "a", progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (len(tiny_safetensors), len(tiny_safetensors)) and len(seen) > 2

    class Cancelled(Exception):
        pass

    def cancel(done, total):
        if done > 2 << 20:
            raise Cancelled

    with pytest.raises(Cancelled):  # passes through unchanged, not as a download error
        download_checkpoint(KIJAI_TINY, tmp_path / "b", progress=cancel)
    assert _leftovers(tmp_path / "b") == []
