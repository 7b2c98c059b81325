"""The shipped workflows in the real ComfyUI web frontend, in headless Chromium (opt-in).

Runs when COMFYUI_DIR points at a ComfyUI checkout (the server: real_comfyui.py, with a
random-weight checkpoint and an 8-frame cut of the demo clip) and Chromium, chromedriver
and selenium are there (frontend_browser.py). Each workflows/*.json is opened with the
frontend's own loader, as the user's Open does: every node type is known, every widget
holds the value the workflow means (its API copy in tests/workflows_api), what the Run
button would queue (graphToPrompt) is that API copy, the frontend would save the file as
it is, and no node covers another. Then each is queued with the Run button and must run.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import time

import frontend_browser
import pytest
from real_comfyui import (API_DIR, CKPT, HEIGHT, MATTES, N_FRAMES, OVERRIDES, REPO, WIDTH, get, mattes, needs_comfyui,
                          sam2_server, wait_history)

pytestmark = [needs_comfyui,
              pytest.mark.skipif(frontend_browser.missing() is not None, reason=str(frontend_browser.missing()))]

NAMES = sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(REPO, "workflows", "*.json")))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from sam2_server(tmp_path_factory)


@pytest.fixture(scope="module")
def browser(server):
    driver = frontend_browser.open_frontend(server.url)
    yield driver
    driver.quit()


def _load(folder, name):
    with open(os.path.join(folder, name + ".json")) as f:
        return json.load(f)


@pytest.mark.parametrize("name", NAMES)
def test_workflow_opens_as_meant(browser, name):
    ui, api = _load(os.path.join(REPO, "workflows"), name), _load(API_DIR, name)
    got = frontend_browser.load_workflow(browser, ui, name)
    nodes = {str(n["id"]): n for n in got["nodes"]}
    assert [n["type"] for n in got["nodes"] if not n["registered"]] == [], "node types the frontend does not know"
    assert {k: n["type"] for k, n in nodes.items() if n["type"] != "Note"} == \
           {k: v["class_type"] for k, v in api.items()}
    for nid, node in api.items():  # each widget by name holds the API copy's value for it
        meant = {k: v for k, v in node["inputs"].items() if not isinstance(v, list)}
        held = {w["name"]: w["value"] for w in nodes[nid]["widgets"] if w["name"] not in nodes[nid]["linked_inputs"]}
        assert held == meant, (name, nid, node["class_type"])
    # What Run would queue. The frontend gives every node a `_meta` title (its display name when
    # the workflow sets none); the API copies carry only the titles the workflow sets.
    queued = got["output"]
    titles = {k: v.pop("_meta", {}).get("title") for k, v in queued.items()}
    assert queued == {k: {"class_type": v["class_type"], "inputs": v["inputs"]} for k, v in api.items()}
    assert {k: titles[k] for k, v in api.items() if "_meta" in v} == \
           {k: v["_meta"]["title"] for k, v in api.items() if "_meta" in v}
    # Saved again from the frontend, the file's widget values come out as they are.
    assert got["saved"] == {str(n["id"]): n.get("widgets_values", []) for n in ui["nodes"]}


@pytest.mark.parametrize("name", NAMES)
def test_no_node_covers_another(browser, name):
    frontend_browser.load_workflow(browser, _load(os.path.join(REPO, "workflows"), name), name)
    time.sleep(1)  # DOM widgets (text boxes, the video preview) size their nodes after loading
    rects = frontend_browser.node_rects(browser)
    overlaps = [(a, b) for a in rects for b in rects if a < b and _intersect(rects[a], rects[b])]
    assert overlaps == [], {k: [round(v) for v in r] for k, r in rects.items()}


def _intersect(a, b):
    return a[0] < b[0] + b[2] and b[0] < a[0] + a[2] and a[1] < b[1] + b[3] and b[1] < a[1] + a[3]


@pytest.mark.parametrize("name", NAMES)
def test_workflow_runs_from_the_browser(server, browser, name):
    """The template as opened, with the test checkpoint picked in the loader's combo (and the
    small clip's frame numbers), queued with the Run button."""
    ui = _load(os.path.join(REPO, "workflows"), name)
    frontend_browser.load_workflow(browser, ui, name)
    picks = {str(n["id"]): {"ckpt_name": CKPT} for n in ui["nodes"] if n["type"] == "SAM2LongModelLoader"}
    for nid, inputs in OVERRIDES.get(name, {}).items():
        picks.setdefault(nid, {}).update(inputs)
    frontend_browser.set_widgets(browser, picks)
    for folder in MATTES.get(name, []):
        shutil.rmtree(server.base / "output" / folder, ignore_errors=True)
    before = set(get(server.url + "/history"))
    frontend_browser.click_run(browser)
    prompt_id = _queued_id(server, browser, before)
    h = wait_history(server, prompt_id)
    assert h["status"]["status_str"] == "success", json.dumps(h["status"], indent=1)[-3000:]
    for nid, node in _load(API_DIR, name).items():  # every image-showing output node showed images
        if node["class_type"] in IMAGE_OUTPUTS:
            assert h["outputs"].get(nid, {}).get("images"), (nid, node["class_type"], h["outputs"].get(nid))
    for folder in MATTES.get(name, []):  # one matte per frame of the shot, at source size
        assert mattes(server, folder) == {i: (WIDTH, HEIGHT) for i in range(N_FRAMES)}, folder


IMAGE_OUTPUTS = {"SaveImage", "PreviewImage", "SAM2LongPreview"}


def _queued_id(server, browser, before, timeout=30):
    """The id of the prompt that the click queued; fails with the frontend's error dialog if the
    server refused it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        q = get(server.url + "/queue")
        ids = {e[1] for e in q["queue_running"] + q["queue_pending"]} | set(get(server.url + "/history"))
        if ids - before:
            (prompt_id,) = ids - before
            return prompt_id
        time.sleep(0.3)
    raise AssertionError("Run queued nothing; the frontend says: " + frontend_browser.error_dialog_text(browser))
