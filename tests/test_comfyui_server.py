"""Drives a real ComfyUI server over HTTP with this pack installed (opt-in).

Runs only when COMFYUI_DIR points at a ComfyUI checkout (>= 0.3.64). The server is
started with COMFYUI_PYTHON (default: this interpreter), on 127.0.0.1 only, with a
throw-away base directory: custom_nodes/ holds a link to this repository, a
random-weight sam2.1_hiera_tiny checkpoint is registered through
extra_model_paths.yaml, and input/bedroom.mp4 is a short, small cut of the demo
clip. The example workflows' API-format copies (tests/workflows_api) are queued
with POST /prompt and checked through /history and the files they wrote. A second
server runs the long-shot workflow on a reduced random-weight SAM 3 tracker from
models/sam3 (skipped where the sam3 package is missing).
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
from conftest import write_mp4

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
pytestmark = pytest.mark.skipif(not COMFYUI_DIR or not os.path.isfile(os.path.join(COMFYUI_DIR or "", "main.py")),
                                reason="set COMFYUI_DIR to a ComfyUI checkout to run the real-server test")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API_DIR = os.path.join(REPO, "tests", "workflows_api")
DEMO = os.environ.get("SAM2LONG_DEMO_CLIP", "/work/shared/media/bedroom.mp4")
PACK = "ComfyUI-SAM2Long"
CKPT = "random_sam2.1_hiera_tiny.pt"
N_FRAMES, WIDTH, HEIGHT = 8, 192, 108
IMAGE_SIZE = os.environ.get("SAM2LONG_TEST_IMAGE_SIZE", "256")  # network input size: 1024 is slow on a CPU

# Small-clip settings for graphs made for the 200-frame demo clip.
OVERRIDES = {
    "sam2long_keyframe_bidirectional": {"4": {"batch_index": 4}, "6": {"frame_index": 4}},
    "sam2long_chunked_long_shot": {"1": {"first_frame": 0, "frame_count": 4}, "2": {"first_frame": 4, "frame_count": 4}},
}
# node id -> number of images saved
EXPECTED = {
    "sam2long_points_to_masks": {"9": N_FRAMES, "10": 16 if N_FRAMES > 16 else N_FRAMES},
    "sam2long_keyframe_bidirectional": {"9": N_FRAMES, "5": 1},
    "sam2long_multi_object": {"12": N_FRAMES, "14": N_FRAMES},
    "sam2long_long_shot_to_disk": {"2": 1, "7": N_FRAMES},
}
# workflow -> matte folders it writes under the output folder (one matte per frame each)
MATTES = {
    "sam2long_long_shot_to_disk": ["sam2long/long_shot/0"],
    "sam2long_chunked_long_shot": ["sam2long/chunked/0"],
}


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clip(path):
    import av
    import numpy as np

    frames = []
    if os.path.isfile(DEMO):
        with av.open(DEMO) as c:
            for i, f in enumerate(c.decode(video=0)):
                if i >= N_FRAMES:
                    break
                frames.append(f.to_ndarray(format="rgb24", width=WIDTH, height=HEIGHT))
    while len(frames) < N_FRAMES:  # synthetic fallback: a moving square
        img = np.full((HEIGHT, WIDTH, 3), 40, np.uint8)
        x = 40 + 4 * len(frames)
        img[30:70, x:x + 40] = (230, 200, 60)
        frames.append(img)
    write_mp4(path, frames, rate=30, codec="mpeg4")


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _post(url, data):
    req = urllib.request.Request(url, data=json.dumps(data).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def _start_server(base, checkpoints: dict, env_extra: dict):
    """A ComfyUI server on `base` with this pack, `checkpoints` ({folder kind: path}) registered
    through extra_model_paths.yaml and the demo cut in input/. Yields the server, then stops it."""
    for d in ("custom_nodes", "models", "input", "output", "user"):
        (base / d).mkdir()
    os.symlink(REPO, base / "custom_nodes" / PACK)
    extra = base / "extra_model_paths.yaml"
    lines = [f"    {kind}: {path.parent}" for kind, path in checkpoints.items()]
    extra.write_text("sam2long_tests:\n    base_path: /\n" + "\n".join(lines) + "\n")
    _clip(str(base / "input" / "bedroom.mp4"))
    port = _free_port()
    log = open(base / "server.log", "w")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAM2LONG_TEST_")}
    env.update(env_extra, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [os.environ.get("COMFYUI_PYTHON", sys.executable), "main.py", "--cpu", "--listen", "127.0.0.1",
         "--port", str(port), "--disable-auto-launch", "--base-directory", str(base),
         "--extra-model-paths-config", str(extra), "--database-url", "sqlite:///:memory:",
         "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK],
        cwd=COMFYUI_DIR, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            try:
                _get(url + "/system_stats")
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError("ComfyUI did not start:\n" + (base / "server.log").read_text()[-4000:])
                time.sleep(1)
        yield type("Server", (), {"url": url, "base": base, "log": base / "server.log"})
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        if os.environ.get("SAM2LONG_KEEP_SERVER_FILES"):
            dest = os.path.join(os.environ["SAM2LONG_KEEP_SERVER_FILES"], base.name)
            shutil.copytree(base / "output", os.path.join(dest, "output"), dirs_exist_ok=True)
            shutil.copy(base / "server.log", os.path.join(dest, "server.log"))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    import torch

    sys.path.insert(0, REPO)
    from sam2long.models.model import build_net

    ckpt = tmp_path_factory.mktemp("ckpts") / "sam2" / CKPT
    ckpt.parent.mkdir()
    torch.manual_seed(0)
    torch.save({"model": build_net("sam2.1_hiera_tiny").state_dict()}, ckpt)
    yield from _start_server(tmp_path_factory.mktemp("comfy_base"), {"sam2": ckpt},
                             {"SAM2LONG_TEST_IMAGE_SIZE": IMAGE_SIZE})


def _queue(server, prompt, timeout=900):
    status, body = _post(server.url + "/prompt", {"prompt": prompt, "client_id": "sam2long-test"})
    assert status == 200, body
    pid = body["prompt_id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        h = _get(f"{server.url}/history/{pid}")
        if pid in h:
            return h[pid]
        time.sleep(0.5)
    raise TimeoutError(f"prompt {pid} did not finish")


def _workflow(name, ckpt=CKPT):
    with open(os.path.join(API_DIR, name + ".json")) as f:
        prompt = json.load(f)
    for node in prompt.values():
        if node["class_type"] == "SAM2LongModelLoader":
            node["inputs"]["ckpt_name"] = ckpt
    for nid, inputs in OVERRIDES.get(name, {}).items():
        prompt[nid]["inputs"].update(inputs)
    return prompt


def test_registered(server):
    log = server.log.read_text()
    assert "IMPORT FAILED" not in log, log[-3000:]
    info = _get(server.url + "/object_info")
    ours = {k: v for k, v in info.items() if k.startswith("SAM2Long")}
    assert set(ours) == {"SAM2LongModelLoader", "SAM2LongLoadShot", "SAM2LongPrompt", "SAM2LongTrack",
                         "SAM2LongTrackToMask", "SAM2LongPreview", "SAM2LongSaveMattes"}
    assert all(v["category"] == "SAM2Long" for v in ours.values())
    track = ours["SAM2LongTrack"]
    assert track["output"] == ["SAM2LONG_TRACK", "MASK", "SAM2LONG_STATE"]
    assert track["output_name"] == ["track", "masks", "state"]
    assert ours["SAM2LongPreview"]["output_node"] is True
    assert ours["SAM2LongSaveMattes"]["output_node"] is True
    assert set(track["input"]["optional"]) >= {"images", "shot", "video", "prompts", "state"}
    shot = ours["SAM2LongLoadShot"]
    assert shot["output"] == ["SAM2LONG_SHOT", "INT", "INT", "INT", "FLOAT", "IMAGE"]
    assert shot["output_name"] == ["shot", "frame_count", "width", "height", "fps", "frame"]
    video = shot["input"]["required"]["video"]
    assert "bedroom.mp4" in (video[1]["options"] if video[0] == "COMBO" else video[0])
    assert ours["SAM2LongPrompt"]["input"]["optional"]["bboxes"][0] == "BBOX,BOUNDING_BOX"
    combo = ours["SAM2LongModelLoader"]["input"]["required"]["ckpt_name"]
    options = combo[1]["options"] if combo[0] == "COMBO" else combo[0]  # V3 / V1 spelling
    assert CKPT in options
    assert CKPT in _get(server.url + "/models/sam2")


def test_example_workflows_served(server):
    templates = _get(server.url + "/workflow_templates")
    assert PACK in templates, templates
    assert sorted(templates[PACK]) == sorted(n[:-5] for n in os.listdir(API_DIR) if n.endswith(".json"))


def _mattes(server, folder, prefix="matte"):
    """{frame number: (width, height)} of the matte files in output/<folder>."""
    from PIL import Image

    root = server.base / "output" / folder
    out = {}
    for p in sorted(root.glob(f"{prefix}.*.png")) if root.is_dir() else []:
        with Image.open(p) as im:
            out[int(p.name.split(".")[-2])] = im.size
    return out


def _cached_nodes(h):
    return [n for m in h["status"]["messages"] if m[0] == "execution_cached" for n in m[1]["nodes"]]


@pytest.mark.parametrize("name", sorted(set(EXPECTED) | set(MATTES)))
def test_workflow_runs(server, name):
    for folder in MATTES.get(name, []):
        shutil.rmtree(server.base / "output" / folder, ignore_errors=True)
    h = _queue(server, _workflow(name))
    assert h["status"]["status_str"] == "success", json.dumps(h["status"], indent=1)[-3000:]
    for nid, count in EXPECTED.get(name, {}).items():
        assert len(h["outputs"][nid]["images"]) == count, (nid, h["outputs"].get(nid))
    for folder in MATTES.get(name, []):  # one matte per frame of the shot, numbered from 0, at source size
        assert _mattes(server, folder) == {i: (WIDTH, HEIGHT) for i in range(N_FRAMES)}, folder
        assert not [p for p in (server.base / "output" / folder).iterdir() if p.name.startswith(".")]


def test_long_shot_cache(server):
    """Re-queueing the streamed workflow unchanged does not re-track; a changed Save Mattes
    reuses the cached (spilled) track; a changed file behind the shot re-tracks."""
    prompt = _workflow("sam2long_long_shot_to_disk")
    first = _queue(server, prompt)
    assert first["status"]["status_str"] == "success", json.dumps(first["status"], indent=1)[-3000:]
    again = _queue(server, prompt)
    assert again["status"]["status_str"] == "success"
    assert "5" in _cached_nodes(again), again["status"]["messages"]
    prompt["6"]["inputs"]["prefix"] = "again"  # only Save Mattes changes: it reads the cached track's spill
    h = _queue(server, prompt)
    assert h["status"]["status_str"] == "success", json.dumps(h["status"], indent=1)[-3000:]
    assert "5" in _cached_nodes(h) and "6" not in _cached_nodes(h), h["status"]["messages"]
    assert _mattes(server, "sam2long/long_shot/0", "again") == {i: (WIDTH, HEIGHT) for i in range(N_FRAMES)}
    clip = server.base / "input" / "bedroom.mp4"
    st = os.stat(clip)
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, new modification time
    h = _queue(server, prompt)
    assert h["status"]["status_str"] == "success", json.dumps(h["status"], indent=1)[-3000:]
    assert "5" not in _cached_nodes(h), h["status"]["messages"]


def test_downstream_change_does_not_retrack(server):
    prompt = _workflow("sam2long_points_to_masks")
    first = _queue(server, prompt)
    assert first["status"]["status_str"] == "success"
    prompt["6"]["inputs"]["expand"] = 7  # only GrowMask changes
    h = _queue(server, prompt)
    assert h["status"]["status_str"] == "success"
    assert "5" in _cached_nodes(h), h["status"]["messages"]  # the Track node came from the cache


def test_missing_checkpoint_message(server):
    prompt = _workflow("sam2long_points_to_masks")
    prompt["3"]["inputs"]["ckpt_name"] = "sam2.1_hiera_large.pt"
    status, body = _post(server.url + "/prompt", {"prompt": prompt})
    assert status == 400
    text = json.dumps(body)
    assert "sam2.1_hiera_large.pt" in text and "models" in text and "sam2" in text


@pytest.fixture(scope="module")
def sam3_server(tmp_path_factory):
    """A server whose model is a reduced random-weight SAM 3 tracker in Meta's sam3.pt
    layout, in models/sam3, loaded through the pack's test hook for the reduced sizes."""
    import dataclasses

    import torch

    sys.path.insert(0, REPO)
    sys.path.insert(0, os.path.join(REPO, "tests"))
    from sam2long.models.sam3 import network as sam3_network, shims as sam3_shims

    try:
        sam3_shims.sam3_modules()
        ok = subprocess.run([os.environ.get("COMFYUI_PYTHON", sys.executable), "-c",
                             "import importlib.util, sys; sys.exit(importlib.util.find_spec('sam3') is None)"],
                            capture_output=True).returncode == 0
    except ImportError:
        ok = False
    if not ok:
        pytest.skip("the sam3 package is not installed here and in COMFYUI_PYTHON")
    from sam3_testing import REDUCED, official_layout

    ckpt = tmp_path_factory.mktemp("ckpts") / "sam3" / SAM3_CKPT
    ckpt.parent.mkdir()
    torch.manual_seed(0)
    torch.save(official_layout(sam3_network.build_tracker_net(REDUCED)), ckpt)
    config = json.dumps(dataclasses.asdict(REDUCED))
    yield from _start_server(tmp_path_factory.mktemp("comfy_sam3"), {"sam3": ckpt},
                             {"SAM2LONG_TEST_SAM3_CONFIG": config})


SAM3_CKPT = "random_sam3.pt"


def test_sam3_long_shot_to_disk(sam3_server):
    """The streamed long-shot workflow on SAM 3's tracker, with the tree."""
    assert SAM3_CKPT in json.dumps(_get(sam3_server.url + "/object_info/SAM2LongModelLoader"))
    h = _queue(sam3_server, _workflow("sam2long_long_shot_to_disk", ckpt=SAM3_CKPT))
    assert h["status"]["status_str"] == "success", json.dumps(h["status"], indent=1)[-3000:]
    assert _mattes(sam3_server, "sam2long/long_shot/0") == {i: (WIDTH, HEIGHT) for i in range(N_FRAMES)}
