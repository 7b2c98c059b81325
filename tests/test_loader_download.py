"""The Model Loader downloads a catalogue checkpoint on first use (fake ComfyUI, local hub).

The hub is tests/hub_server.py on 127.0.0.1, reached through huggingface_hub's own
``$HF_ENDPOINT``; Meta's files through the mirror variable ``$SAM2LONG_DOWNLOAD_BASE``.
The served files are small random-weight checkpoints in the official layouts.
"""

from __future__ import annotations

import importlib
import io
import os
import socket
import sys

import pytest
import torch
from loader_options import use_small_models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))
KIJAI_TINY = "sam2.1_hiera_tiny.safetensors"
META_TINY = "sam2.1_hiera_tiny.pt"
MARK = " (download)"


def _purge_nodes():
    for name in list(sys.modules):
        if name == "nodes" or name.startswith("nodes."):
            del sys.modules[name]


@pytest.fixture(scope="module")
def served():
    """Meta's layout (.pt with a "model" dict, fp16 to stay small) and kijai's (flat safetensors)."""
    from safetensors.torch import save

    from sam2long.models.model import build_net

    torch.manual_seed(0)
    sd = {k: v.half().contiguous() for k, v in build_net("sam2.1_hiera_tiny", image_size=128).state_dict().items()}
    buf = io.BytesIO()
    torch.save({"model": sd}, buf)
    return {META_TINY: buf.getvalue(), KIJAI_TINY: save(sd)}


@pytest.fixture
def comfy(tmp_path, monkeypatch):
    """A fresh fake ComfyUI (its own models folder) with our nodes imported against it."""
    for p in (REPO, TESTS):
        if p not in sys.path:
            sys.path.insert(0, p)
    import comfy_fake

    for name in ("HF_ENDPOINT", "SAM2LONG_DOWNLOAD_BASE", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    models = tmp_path / "ComfyUI" / "models"
    models.mkdir(parents=True)
    comfy_fake.install(str(models))
    _purge_nodes()
    importlib.import_module("nodes")
    importlib.import_module("nodes.paths").register_model_folder()
    loader = importlib.import_module("nodes.loader")
    use_small_models(monkeypatch, image_size=128)
    yield type("Comfy", (), {"fake": comfy_fake, "loader": loader.SAM2LongModelLoader,
                             "folder": models / "sam2"})
    _purge_nodes()
    comfy_fake.uninstall()


@pytest.fixture
def hub(served, monkeypatch):
    from hub_server import serve

    with serve(served) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        yield h


def _options(loader):
    return loader.define_schema().inputs[0].options


def _listing(folder):
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_catalogue_files_are_offered_marked_until_present(comfy):
    from sam2long.models.catalog import SAM2_DOWNLOADS

    options = _options(comfy.loader)
    assert [o for o in options if o.endswith(MARK)] == [n + MARK for n in SAM2_DOWNLOADS]
    assert len(SAM2_DOWNLOADS) == 16 and options[0] == "sam2.1_hiera_large.pt" + MARK
    for size in ("tiny", "small", "base_plus", "large"):
        for name in (f"sam2_hiera_{size}.pt", f"sam2.1_hiera_{size}.pt", f"sam2.1_hiera_{size}.safetensors"):
            assert name + MARK in options
    assert comfy.loader.validate_inputs(ckpt_name=META_TINY + MARK) is True
    msg = comfy.loader.validate_inputs(ckpt_name="nothing.pt" + MARK)
    assert isinstance(msg, str) and "was not found" in msg
    # a plain catalogue name that is absent says how to get it, by the list or by hand
    msg = comfy.loader.validate_inputs(ckpt_name=META_TINY)
    assert f"'{META_TINY}{MARK}'" in msg and str(comfy.folder) in msg
    comfy.folder.mkdir()
    (comfy.folder / META_TINY).write_bytes(b"x")
    options = _options(comfy.loader)
    assert META_TINY in options and META_TINY + MARK not in options and KIJAI_TINY + MARK in options


def test_chosen_file_is_downloaded_once_with_progress(comfy, hub, served, caplog):
    caplog.set_level("INFO", logger="sam2long")
    choice = KIJAI_TINY + MARK
    (h,), _ = comfy.fake.run_node(comfy.loader, ckpt_name=choice)
    assert h.loaded.variant == "sam2.1_hiera_tiny" and h.name == KIJAI_TINY
    assert _listing(comfy.folder) == [KIJAI_TINY]
    assert (comfy.folder / KIJAI_TINY).read_bytes() == served[KIJAI_TINY]
    progress = comfy.fake.state().progress
    assert len(progress) > 2 and progress[-1] == (len(served[KIJAI_TINY]),) * 2
    assert comfy.fake.state().interrupt_checks >= len(progress)  # Cancel checked along the way
    assert "SHA-256 checked against the hub" in caplog.text
    requests = len(hub.seen)
    # listed as present now; the saved workflow's "(download)" value still loads the file, not downloading again
    assert KIJAI_TINY in _options(comfy.loader) and choice not in _options(comfy.loader)
    assert comfy.loader.validate_inputs(ckpt_name=choice) is True
    (h2,), _ = comfy.fake.run_node(comfy.loader, ckpt_name=choice)
    (h3,), _ = comfy.fake.run_node(comfy.loader, ckpt_name=KIJAI_TINY)
    assert h2.name == h3.name == KIJAI_TINY and len(hub.seen) == requests


def test_meta_file_from_a_mirror(comfy, hub, served, monkeypatch):
    monkeypatch.setenv("SAM2LONG_DOWNLOAD_BASE", hub.url + "/files")
    (h,), _ = comfy.fake.run_node(comfy.loader, ckpt_name=META_TINY + MARK)
    assert h.loaded.variant == "sam2.1_hiera_tiny"
    assert (comfy.folder / META_TINY).read_bytes() == served[META_TINY]
    assert [p for _, p, _ in hub.seen] == [f"/files/{META_TINY}"]


def test_cancel_leaves_nothing(comfy, hub):
    comfy.fake.state().interrupt_after = 3
    import comfy.model_management as mm

    with pytest.raises(mm.InterruptProcessingException):
        comfy.fake.run_node(comfy.loader, ckpt_name=KIJAI_TINY + MARK)
    assert _listing(comfy.folder) == []  # no partial file, no file under the final name


def test_checksum_mismatch_is_refused(comfy, hub):
    from sam2long.errors import CheckpointError

    hub.linked_etag = "1" * 64
    with pytest.raises(CheckpointError, match="SHA-256"):
        comfy.fake.run_node(comfy.loader, ckpt_name=KIJAI_TINY + MARK)
    assert _listing(comfy.folder) == []
    assert KIJAI_TINY + MARK in _options(comfy.loader)  # still to be downloaded


def test_offline_says_url_folder_and_file_name(comfy, monkeypatch):
    from sam2long.errors import CheckpointError

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    with pytest.raises(CheckpointError) as e:
        comfy.fake.run_node(comfy.loader, ckpt_name=KIJAI_TINY + MARK)
    url = f"http://127.0.0.1:{port}/Kijai/sam2-safetensors/resolve/main/{KIJAI_TINY}"
    msg = str(e.value)
    assert "offline" in msg and f"download {url} and put it in {comfy.folder} as {KIJAI_TINY}" in msg
    assert _listing(comfy.folder) == []
