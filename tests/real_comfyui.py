"""A real ComfyUI server with this pack, for the opt-in tests (test_comfyui_server.py,
test_comfyui_frontend.py) and the thumbnail script.

COMFYUI_DIR points at a ComfyUI checkout (>= 0.3.64); the server runs with COMFYUI_PYTHON
(default: this interpreter), on 127.0.0.1 only, with a throw-away base directory whose
custom_nodes/ holds a link to this repository. Checkpoints are registered through
extra_model_paths.yaml; input/bedroom.mp4 is a short, small cut of the demo clip (or the
demo clip itself).
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

COMFYUI_DIR = os.environ.get("COMFYUI_DIR")
needs_comfyui = pytest.mark.skipif(
    not COMFYUI_DIR or not os.path.isfile(os.path.join(COMFYUI_DIR or "", "main.py")),
    reason="set COMFYUI_DIR to a ComfyUI checkout to run the real-server test")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
API_DIR = os.path.join(REPO, "tests", "workflows_api")
DEMO = os.environ.get("SAM2LONG_DEMO_CLIP", "/work/shared/media/bedroom.mp4")
PACK = "ComfyUI-SAM2Long"
ALLOWED_ENV = "SAM2LONG_ALLOWED_PATHS"
HOOKS = "sam2long_test_hooks"  # tests/server_hooks: the loader's small-model settings
CKPT = "random_sam2.1_hiera_tiny.pt"
N_FRAMES, WIDTH, HEIGHT = 8, 192, 108
IMAGE_SIZE = os.environ.get("SAM2LONG_TEST_IMAGE_SIZE", "256")  # network input size: 1024 is slow on a CPU

# Small-clip settings for graphs made for the 200-frame demo clip: node id -> inputs.
OVERRIDES = {
    "sam2long_keyframe_bidirectional": {"4": {"batch_index": 4}, "6": {"frame_index": 4}},
    "sam2long_chunked_long_shot": {"1": {"first_frame": 0, "frame_count": 4}, "2": {"first_frame": 4, "frame_count": 4}},
    # the template's click on the 960x540 demo clip, at the small clip's scale (the editor stores pixels)
    "sam2long_roto_loop": {"3": {"editor": json.dumps({"version": 1, "objects": [
        {"id": 0, "name": "girl", "frames": {"0": {"points": [[78.8, 45.4, 1]], "box": None}}}]})}},
}
# workflow -> matte folders it writes under the output folder (one matte per frame each)
MATTES = {
    "sam2long_long_shot_to_disk": ["sam2long/long_shot/0"],
    "sam2long_chunked_long_shot": ["sam2long/chunked/0"],
    "sam2long_roto_loop": ["sam2long/roto/0"],
}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_demo_cut(path):
    """The first N_FRAMES frames of the demo clip at WIDTH x HEIGHT (a moving square without it)."""
    import av
    import numpy as np
    from conftest import write_mp4

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


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def post(url, data):
    req = urllib.request.Request(url, data=json.dumps(data).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"{}")


def start_server(base, checkpoints: dict, env_extra: dict, clip=write_demo_cut):
    """A ComfyUI server on `base` with this pack, `checkpoints` ({folder kind: path}) registered
    through extra_model_paths.yaml and `clip(path)` writing input/bedroom.mp4. Yields the server
    (url, base, log), then stops it."""
    for d in ("custom_nodes", "models", "input", "output", "user"):
        (base / d).mkdir()
    os.symlink(REPO, base / "custom_nodes" / PACK)
    os.symlink(os.path.join(REPO, "tests", "server_hooks"), base / "custom_nodes" / HOOKS)
    extra = base / "extra_model_paths.yaml"
    lines = [f"    {kind}: {path.parent}" for kind, path in checkpoints.items()]
    extra.write_text("sam2long_tests:\n    base_path: /\n" + "\n".join(lines) + "\n")
    clip(str(base / "input" / "bedroom.mp4"))
    port = free_port()
    log = open(base / "server.log", "w")
    # the test's own settings only: neither test hooks nor a developer's allowed folders leak in
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAM2LONG_TEST_") and k != ALLOWED_ENV}
    env.update(env_extra, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [os.environ.get("COMFYUI_PYTHON", sys.executable), "main.py", "--cpu", "--listen", "127.0.0.1",
         "--port", str(port), "--disable-auto-launch", "--base-directory", str(base),
         "--extra-model-paths-config", str(extra), "--database-url", "sqlite:///:memory:",
         "--disable-all-custom-nodes", "--whitelist-custom-nodes", PACK, HOOKS],
        cwd=COMFYUI_DIR, stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 300
        while True:
            try:
                get(url + "/system_stats")
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


def sam2_server(tmp_path_factory, env_extra: dict | None = None):
    """A server whose models/sam2 holds a random-weight sam2.1_hiera_tiny (CKPT), run at IMAGE_SIZE."""
    import torch

    sys.path.insert(0, REPO)
    from sam2long.models.model import build_net

    ckpt = tmp_path_factory.mktemp("ckpts") / "sam2" / CKPT
    ckpt.parent.mkdir()
    torch.manual_seed(0)
    torch.save({"model": build_net("sam2.1_hiera_tiny").state_dict()}, ckpt)
    yield from start_server(tmp_path_factory.mktemp("comfy_base"), {"sam2": ckpt},
                            {"SAM2LONG_TEST_IMAGE_SIZE": IMAGE_SIZE, **(env_extra or {})})


def wait_history(server, prompt_id, timeout=900):
    """The /history entry of `prompt_id` once it finished."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        h = get(f"{server.url}/history/{prompt_id}")
        if prompt_id in h:
            return h[prompt_id]
        time.sleep(0.5)
    raise TimeoutError(f"prompt {prompt_id} did not finish")


def queue(server, prompt, timeout=900):
    status, body = post(server.url + "/prompt", {"prompt": prompt, "client_id": "sam2long-test"})
    assert status == 200, body
    return wait_history(server, body["prompt_id"], timeout)


def mattes(server, folder, prefix="matte"):
    """{frame number: (width, height)} of the matte files in output/<folder>."""
    from PIL import Image

    root = server.base / "output" / folder
    out = {}
    for p in sorted(root.glob(f"{prefix}.*.png")) if root.is_dir() else []:
        with Image.open(p) as im:
            out[int(p.name.split(".")[-2])] = im.size
    return out
