"""Drives a real ComfyUI server over HTTP with this pack installed (opt-in).

Runs only when COMFYUI_DIR points at a ComfyUI checkout (>= 0.3.64); the server is
started by real_comfyui.py (COMFYUI_PYTHON, 127.0.0.1 only, a throw-away base
directory, a random-weight sam2.1_hiera_tiny checkpoint, an 8-frame cut of the demo
clip). The example workflows' API-format copies (tests/workflows_api) are queued
with POST /prompt and checked through /history and the files they wrote. A second
server runs the long-shot workflow on a reduced random-weight SAM 3 tracker from
models/sam3 (skipped where the sam3 package is missing).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from real_comfyui import (ALLOWED_ENV, API_DIR, CKPT, HEIGHT, MATTES, N_FRAMES, OVERRIDES, PACK, REPO, WIDTH, get, mattes,
                          needs_comfyui, post, queue, sam2_server, start_server)

pytestmark = needs_comfyui

# node id -> number of images saved
EXPECTED = {
    "sam2long_points_to_masks": {"9": N_FRAMES, "10": 16 if N_FRAMES > 16 else N_FRAMES},
    "sam2long_keyframe_bidirectional": {"9": N_FRAMES, "5": 1},
    "sam2long_multi_object": {"12": N_FRAMES, "14": N_FRAMES},
    "sam2long_long_shot_to_disk": {"2": 1, "7": N_FRAMES},
}


@pytest.fixture(scope="module")
def plate_mount(tmp_path_factory):
    """A folder outside ComfyUI's folders that the server's owner allows (SAM2LONG_ALLOWED_PATHS)."""
    return tmp_path_factory.mktemp("plate_mount")


@pytest.fixture(scope="module")
def server(tmp_path_factory, plate_mount):
    # Snapshots every 2 frames, so that the 8-frame clip has some to resume from.
    yield from sam2_server(tmp_path_factory, {ALLOWED_ENV: str(plate_mount), "SAM2LONG_SNAPSHOT_EVERY": "2"})


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
    info = get(server.url + "/object_info")
    ours = {k: v for k, v in info.items() if k.startswith("SAM2Long")}
    assert set(ours) == {"SAM2LongModelLoader", "SAM2LongLoadShot", "SAM2LongPrompt", "SAM2LongPromptEditor", "SAM2LongTrack",
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
    assert CKPT in get(server.url + "/models/sam2")


def test_example_workflows_served(server):
    templates = get(server.url + "/workflow_templates")
    assert PACK in templates, templates
    assert sorted(templates[PACK]) == sorted(n[:-5] for n in os.listdir(API_DIR) if n.endswith(".json"))


def _cached_nodes(h):
    return [n for m in h["status"]["messages"] if m[0] == "execution_cached" for n in m[1]["nodes"]]


@pytest.mark.parametrize("name", sorted(set(EXPECTED) | set(MATTES)))
def test_workflow_runs(server, name):
    for folder in MATTES.get(name, []):
        shutil.rmtree(server.base / "output" / folder, ignore_errors=True)
    h = queue(server, _workflow(name))
    assert h["status"]["status_str"] == "success", json.dumps(h["status"], indent=1)[-3000:]
    for nid, count in EXPECTED.get(name, {}).items():
        assert len(h["outputs"][nid]["images"]) == count, (nid, h["outputs"].get(nid))
    for folder in MATTES.get(name, []):  # one matte per frame of the shot, numbered from 0, at source size
        assert mattes(server, folder) == {i: (WIDTH, HEIGHT) for i in range(N_FRAMES)}, folder
        assert not [p for p in (server.base / "output" / folder).iterdir() if p.name.startswith(".")]


def test_long_shot_cache(server):
    """Re-queueing the streamed workflow unchanged does not re-track; a changed Save Mattes
    reuses the cached (spilled) track; a changed file behind the shot re-tracks."""
    prompt = _workflow("sam2long_long_shot_to_disk")
    first = queue(server, prompt)
    assert first["status"]["status_str"] == "success", json.dumps(first["status"], indent=1)[-3000:]
    again = queue(server, prompt)
    assert again["status"]["status_str"] == "success"
    assert "5" in _cached_nodes(again), again["status"]["messages"]
    prompt["6"]["inputs"]["prefix"] = "again"  # only Save Mattes changes: it reads the cached track's spill
    h = queue(server, prompt)
    assert h["status"]["status_str"] == "success", json.dumps(h["status"], indent=1)[-3000:]
    assert "5" in _cached_nodes(h) and "6" not in _cached_nodes(h), h["status"]["messages"]
    assert mattes(server, "sam2long/long_shot/0", "again") == {i: (WIDTH, HEIGHT) for i in range(N_FRAMES)}
    clip = server.base / "input" / "bedroom.mp4"
    st = os.stat(clip)
    os.utime(clip, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # same bytes, new modification time
    h = queue(server, prompt)
    assert h["status"]["status_str"] == "success", json.dumps(h["status"], indent=1)[-3000:]
    assert "5" not in _cached_nodes(h), h["status"]["messages"]


def test_correction_requeued_resumes(server):
    """Issue 20: queue the streamed workflow, then again with a click on frame 6 chained after
    the first prompt: Track resumes from the snapshot at frame 6 (the log says so) and writes
    every frame's matte."""
    prompt = _workflow("sam2long_long_shot_to_disk")
    prompt["6"]["inputs"]["prefix"] = "resume"
    first = queue(server, prompt)
    assert first["status"]["status_str"] == "success", json.dumps(first["status"], indent=1)[-3000:]
    prompt["8"] = {"class_type": "SAM2LongPrompt", "inputs": {
        "prompts": ["4", 0], "object_id": 0, "frame_index": 6, "positive_coords": '[{"x": 0.5, "y": 0.45}]',
        "negative_coords": "", "coordinates": "normalized"}}
    prompt["5"]["inputs"]["prompts"] = ["8", 0]
    before = len(server.log.read_text())
    h = queue(server, prompt)
    assert h["status"]["status_str"] == "success", json.dumps(h["status"], indent=1)[-3000:]
    log = server.log.read_text()[before:]
    assert "resuming from the snapshot at frame 6 (5 frames reused, 2 to track)" in log, log[-3000:]
    assert mattes(server, "sam2long/long_shot/0", "resume") == {i: (WIDTH, HEIGHT) for i in range(N_FRAMES)}


def test_downstream_change_does_not_retrack(server):
    prompt = _workflow("sam2long_points_to_masks")
    first = queue(server, prompt)
    assert first["status"]["status_str"] == "success"
    prompt["6"]["inputs"]["expand"] = 7  # only GrowMask changes
    h = queue(server, prompt)
    assert h["status"]["status_str"] == "success"
    assert "5" in _cached_nodes(h), h["status"]["messages"]  # the Track node came from the cache


def test_missing_checkpoint_message(server):
    prompt = _workflow("sam2long_points_to_masks")
    prompt["3"]["inputs"]["ckpt_name"] = "sam2.1_hiera_large.pt"
    status, body = post(server.url + "/prompt", {"prompt": prompt})
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
    yield from start_server(tmp_path_factory.mktemp("comfy_sam3"), {"sam3": ckpt},
                             {"SAM2LONG_TEST_SAM3_CONFIG": config})


SAM3_CKPT = "random_sam3.pt"


def test_sam3_long_shot_to_disk(sam3_server):
    """The streamed long-shot workflow on SAM 3's tracker, with the tree."""
    assert SAM3_CKPT in json.dumps(get(sam3_server.url + "/object_info/SAM2LongModelLoader"))
    h = queue(sam3_server, _workflow("sam2long_long_shot_to_disk", ckpt=SAM3_CKPT))
    assert h["status"]["status_str"] == "success", json.dumps(h["status"], indent=1)[-3000:]
    assert mattes(sam3_server, "sam2long/long_shot/0") == {i: (WIDTH, HEIGHT) for i in range(N_FRAMES)}


# ------------------------------------------------------------------------------ a shared server (issue 18)

REFUSED = "is outside the folders this ComfyUI server lets SAM2Long"
SHOT_TO_MATTES = ("1", "3", "4", "5", "6")  # Load Shot -> Track -> Save Mattes: Save Mattes the one output


@pytest.fixture(scope="module")
def outside(server, tmp_path_factory):
    """Files outside ComfyUI's folders, reached by absolute paths, `..` and links from
    input/ and output/."""
    root = tmp_path_factory.mktemp("outside")
    clip = server.base / "input" / "bedroom.mp4"
    shutil.copy(clip, root / "secret.mp4")
    shutil.copy(clip, server.base / "secret.mp4")  # beside input/: video='../secret.mp4'
    (root / "dst").mkdir()
    os.symlink(root / "secret.mp4", server.base / "input" / "link.mp4")
    os.symlink(root / "dst", server.base / "output" / "elsewhere")
    return root


def _tree(root):
    """{path under root: (size, mtime)}, links not followed."""
    out = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(folder, name))
            out[os.path.relpath(os.path.join(folder, name), root)] = (st.st_size, st.st_mtime_ns)
    return out


def _shot_to_mattes(**changes):
    """The long-shot workflow cut to Load Shot -> Track -> Save Mattes, with `changes`
    ({node id: {input: value}}) applied."""
    full = _workflow("sam2long_long_shot_to_disk")
    prompt = {nid: full[nid] for nid in SHOT_TO_MATTES}
    for nid, inputs in changes.items():
        prompt[nid]["inputs"].update(inputs)
    return prompt


def _hostile(server, outside, case):
    return {
        "load_absolute": {"1": {"path": str(outside / "secret.mp4")}},
        "load_climb": {"1": {"path": os.path.relpath(outside / "secret.mp4", server.base / "input")}},
        "load_root_folder": {"1": {"path": "/"}},
        "load_video_climb": {"1": {"video": "../secret.mp4"}},
        "load_link": {"1": {"path": "link.mp4"}},
        "save_climb": {"6": {"folder": "../../x"}},
        "save_absolute": {"6": {"folder": str(outside / "dst" / "new")}},
        "save_link": {"6": {"folder": "elsewhere/m"}},
    }[case]


@pytest.mark.parametrize("case", ["load_absolute", "load_climb", "load_root_folder", "load_video_climb", "load_link",
                                  "save_climb", "save_absolute", "save_link"])
def test_hostile_path_fails_the_prompt_and_leaves_outside_alone(server, outside, case):
    watched = [outside, server.base.parent]
    before = [_tree(w) for w in watched[:1]] + [sorted(os.listdir(watched[1]))]
    changes = _hostile(server, outside, case)
    status, body = post(server.url + "/prompt", {"prompt": _shot_to_mattes(**changes), "client_id": "sam2long-test"})
    assert status == 400, body  # refused by validate_inputs: nothing was queued
    text = json.dumps(body)
    assert REFUSED in text and ALLOWED_ENV in text, text[-2000:]
    if str(outside) not in json.dumps(changes):
        assert str(outside) not in text  # where a link leads is not told
    assert [_tree(w) for w in watched[:1]] + [sorted(os.listdir(watched[1]))] == before


def test_refusal_is_the_same_whether_the_outside_file_exists(server, outside):
    def refused(path):
        status, body = post(server.url + "/prompt", {"prompt": _shot_to_mattes(**{"1": {"path": path}})})
        assert status == 400
        return [e["details"] for e in body["node_errors"]["1"]["errors"]]

    there = refused(str(outside / "secret.mp4"))
    os.rename(outside / "secret.mp4", outside / "moved.mp4")
    try:
        gone = refused(str(outside / "secret.mp4"))
    finally:
        os.rename(outside / "moved.mp4", outside / "secret.mp4")
    assert there == gone and REFUSED in json.dumps(there)


def test_nan_widget_is_a_one_line_node_error(server, outside):
    # json.dumps writes NaN and the server reads it back; ComfyUI's own min/max check lets NaN through.
    h = queue(server, _shot_to_mattes(**{"5": {"iou_threshold": float("nan")}}))
    assert h["status"]["status_str"] == "error"
    (err,) = [m[1] for m in h["status"]["messages"] if m[0] == "execution_error"]
    assert err["node_id"] == "5" and err["exception_message"].startswith("SAM2Long: iou_threshold must be a number")
    assert "\n" not in err["exception_message"].strip()


def test_legitimate_and_allowed_runs_still_write_mattes(server, outside, plate_mount):
    shutil.rmtree(server.base / "output" / "sam2long" / "legit", ignore_errors=True)
    h = queue(server, _shot_to_mattes(**{"6": {"folder": "sam2long/legit"}}))
    assert h["status"]["status_str"] == "success", json.dumps(h["status"], indent=1)[-3000:]
    assert mattes(server, "sam2long/legit/0") == {i: (WIDTH, HEIGHT) for i in range(N_FRAMES)}
    # a plate mount the owner allows: read from it and write next to it, by absolute paths
    shutil.copy(server.base / "input" / "bedroom.mp4", plate_mount / "plate.mp4")
    h = queue(server, _shot_to_mattes(**{"1": {"video": "", "path": str(plate_mount / "plate.mp4")},
                                          "6": {"folder": str(plate_mount / "mattes")}}))
    assert h["status"]["status_str"] == "success", json.dumps(h["status"], indent=1)[-3000:]
    assert sorted(os.listdir(plate_mount / "mattes" / "0")) == [f"matte.{i:04d}.png" for i in range(N_FRAMES)]


def _fetch(server, route, **query):
    import urllib.error
    import urllib.parse
    import urllib.request

    try:
        with urllib.request.urlopen(f"{server.url}{route}?{urllib.parse.urlencode(query)}", timeout=60) as r:
            return r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


@pytest.mark.parametrize("case", ["load_absolute", "load_climb", "load_video_climb", "load_link"])
def test_editor_frame_route_on_the_server(server, outside, case):
    """The Prompt Editor's routes on ComfyUI's own aiohttp server: a frame of what Load Shot may
    read, scaled down, and Load Shot's refusal (word for word) for what it may not."""
    import io as pyio

    from PIL import Image

    status, headers, body = _fetch(server, "/sam2long/frame", video="bedroom.mp4", index=N_FRAMES - 1, max=96)
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    assert (headers["X-SAM2Long-Width"], headers["X-SAM2Long-Height"]) == (str(WIDTH), str(HEIGHT))
    assert headers["X-SAM2Long-Frames"] == str(N_FRAMES)
    assert Image.open(pyio.BytesIO(body)).size == (96, round(96 * HEIGHT / WIDTH))
    inputs = _hostile(server, outside, case)["1"]
    status, _, body = _fetch(server, "/sam2long/frame", index=0, **inputs)
    assert status == 403 and REFUSED in body.decode() and ALLOWED_ENV in body.decode()
    refused = post(server.url + "/prompt", {"prompt": _shot_to_mattes(**{"1": inputs})})[1]
    # ComfyUI gives a validate_inputs message once per input it takes, after the input's name
    assert {e["details"].split(" - ", 1)[1] for e in refused["node_errors"]["1"]["errors"]} == {body.decode()}
    status, _, body = _fetch(server, "/sam2long/palette")
    assert status == 200 and len(json.loads(body)) == 12
