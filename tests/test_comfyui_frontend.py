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


# ------------------------------------------------------------------------------ the Prompt Editor

EDITOR = """
const [id] = args;
const node = app.graph.getNodeById(id), ed = node.sam2longEditor;
const rect = ed.canvas.getBoundingClientRect();
return {value: node.widgets.find(w => w.name === "editor").value, frame: ed.frame, count: ed.count,
        size: ed.size, shown: !!ed.image && ed.imageFrame === ed.frame, message: ed.message,
        view: ed.view(), canvas: [ed.canvas.width, ed.canvas.height],
        rect: [rect.left, rect.top, rect.width, rect.height], track: ed.trackId,
        mask: ed.mask && {frame: ed.mask.frame, track: ed.mask.track}};
"""


def _editor(browser, nid, until=None, timeout=60):
    """The editor's state as the browser holds it, once `until(state)` holds."""
    deadline = time.time() + timeout
    while True:
        got = frontend_browser.run_js(browser, EDITOR, nid)
        if until is None or until(got):
            return got
        if time.time() > deadline:
            raise AssertionError(f"the editor never got there: {got}")
        time.sleep(0.3)


def _press(browser, ed, source_from, source_to=None, shift=False, right=False):
    """A user's click (or drag to `source_to`) on the editor's canvas at source pixels."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    canvas = [c for c in browser.find_elements(By.CSS_SELECTOR, ".sam2long-view canvas") if c.is_displayed()][0]
    left, top, width, height = ed["rect"]
    view, (cw, ch) = ed["view"], ed["canvas"]

    def offset(x, y):  # from the element's centre, in CSS pixels (selenium 4)
        return (round((view["x"] + x * view["scale"]) * width / cw - width / 2),
                round((view["y"] + y * view["scale"]) * height / ch - height / 2))

    chain = ActionChains(browser)
    if shift:
        chain.key_down(Keys.SHIFT)
    chain.move_to_element_with_offset(canvas, *offset(*source_from))
    if source_to is not None:
        chain.click_and_hold().move_to_element_with_offset(canvas, *offset(*source_to)).release()
    elif right:
        chain.context_click()
    else:
        chain.click()
    if shift:
        chain.key_up(Keys.SHIFT)
    chain.perform()
    return ed["view"]["scale"] * width / cw  # CSS pixels per source pixel


def _button(browser, title):
    from selenium.webdriver.common.by import By

    (b,) = [b for b in browser.find_elements(By.CSS_SELECTOR, f".sam2long-editor button[title^='{title}']")
            if b.is_displayed()]
    b.click()


def test_editor_click_persist_queue_and_masks(server, browser):
    """The roto loop as an artist runs it: the editor shows Load Shot's frame before anything is
    queued, clicks and a drag become the stored prompts (in source pixels), they survive a reload,
    Run tracks them, the mattes are written and the run's masks come back onto the canvas."""
    name = "sam2long_roto_loop"
    ui = _load(os.path.join(REPO, "workflows"), name)
    frontend_browser.load_workflow(browser, ui, name)
    frontend_browser.set_widgets(browser, {"2": {"ckpt_name": CKPT}})
    ed = _editor(browser, 3, until=lambda e: e["shown"])
    assert ed["size"] == {"w": WIDTH, "h": HEIGHT} and ed["count"] == N_FRAMES and ed["frame"] == 0
    _button(browser, "Remove the object")  # the template's click was for the 960x540 demo clip
    _editor(browser, 3, until=lambda e: json.loads(e["value"])["objects"][0]["frames"] == {})

    tol = 1.0 / _press(browser, ed, (96, 54)) + 0.01  # a CSS pixel, in source pixels
    _press(browser, ed, (30, 20), shift=True)
    _press(browser, ed, (150, 90), right=True)
    _button(browser, "Next frame")
    _button(browser, "Next frame")
    ed = _editor(browser, 3, until=lambda e: e["frame"] == 2 and e["shown"])
    _press(browser, ed, (120, 80), (60, 30))  # a box dragged up-left
    state = json.loads(_editor(browser, 3)["value"])
    (obj,) = state["objects"]
    assert obj["id"] == 0 and sorted(obj["frames"]) == ["0", "2"]
    got = obj["frames"]["0"]["points"]
    assert [p[2] for p in got] == [1, 0, 0] and obj["frames"]["0"]["box"] is None
    for (x, y, _), want in zip(got, [(96, 54), (30, 20), (150, 90)]):
        assert abs(x - want[0]) <= tol and abs(y - want[1]) <= tol, (got, tol)
    box = obj["frames"]["2"]["box"]
    assert obj["frames"]["2"]["points"] == [] and all(abs(a - b) <= tol for a, b in zip(box, (60, 30, 120, 80))), box

    # the state is the workflow's: saved, reloaded, and what Run queues
    again = frontend_browser.run_js(browser, """
const saved = app.graph.serialize();
await app.loadGraphData(saved, true, true, "roto again");
const prompt = await app.graphToPrompt();
return {value: app.graph.getNodeById(3).widgets.find(w => w.name === "editor").value,
        queued: prompt.output["3"].inputs.editor,
        objects: app.graph.getNodeById(3).sam2longEditor.state.objects};""")
    assert json.loads(again["value"]) == state and json.loads(again["queued"]) == state
    assert again["objects"][0]["frames"]["2"]["box"] == box
    ed = _editor(browser, 3, until=lambda e: e["shown"])
    frontend_browser.set_widgets(browser, {"2": {"ckpt_name": CKPT}})

    shutil.rmtree(server.base / "output" / "sam2long" / "roto", ignore_errors=True)
    before = set(get(server.url + "/history"))
    frontend_browser.click_run(browser)
    h = wait_history(server, _queued_id(server, browser, before))
    assert h["status"]["status_str"] == "success", json.dumps(h["status"], indent=1)[-3000:]
    assert mattes(server, "sam2long/roto/0") == {i: (WIDTH, HEIGHT) for i in range(N_FRAMES)}
    (track,) = h["outputs"]["4"]["sam2long_track"]
    ed = _editor(browser, 3, until=lambda e: e["mask"] == {"frame": e["frame"], "track": track})
    _button(browser, "Next frame")  # scrubbing fetches that frame's masks
    _editor(browser, 3, until=lambda e: e["mask"] == {"frame": ed["frame"] + 1, "track": track} and e["shown"])
    changed = frontend_browser.run_js(browser, """
const ed = app.graph.getNodeById(3).sam2longEditor, ctx = ed.canvas.getContext("2d");
const pixels = () => ctx.getImageData(0, 0, ed.canvas.width, ed.canvas.height).data;
ed.draw();
const withMasks = pixels(), mask = ed.mask;
ed.mask = null;
ed.draw();
const without = pixels();
ed.mask = mask;
ed.draw();
let changed = 0;
for (let i = 0; i < without.length; i += 4) changed += without[i] !== withMasks[i] || without[i + 1] !== withMasks[i + 1];
return changed / (without.length / 4);""")
    assert changed > 0.01, changed  # the masks are drawn over the frame (the random model's cover much of it)


def test_editor_shows_the_images_of_a_run(server, browser):
    """With an IMAGE batch instead of a shot, the editor asks for a run, then shows the batch's
    frames (and the masks of the Track it feeds)."""
    state = {"version": 1, "objects": [{"id": 0, "name": "object 0",
                                        "frames": {"0": {"points": [[96, 54, 1]], "box": None}}}]}
    api = {
        "1": {"class_type": "LoadVideo", "inputs": {"file": "bedroom.mp4"}},
        "2": {"class_type": "GetVideoComponents", "inputs": {"video": ["1", 0]}},
        "3": {"class_type": "SAM2LongModelLoader", "inputs": {"ckpt_name": CKPT, "precision": "auto", "device": "auto"}},
        "4": {"class_type": "SAM2LongPromptEditor", "inputs": {"editor": json.dumps(state), "images": ["2", 0]}},
        "5": {"class_type": "SAM2LongTrack", "inputs": {"model": ["3", 0], "images": ["2", 0], "prompts": ["4", 0],
                                                        "pathways": 1, "iou_threshold": 0.3, "uncertainty": 2.0,
                                                        "direction": "forward", "start_frame": 0, "end_frame": -1}},
        "6": {"class_type": "SAM2LongPreview", "inputs": {"track": ["5", 0], "images": ["2", 0], "opacity": 0.5,
                                                          "object_ids": "", "show_ids": True, "preview_frames": 2}},
    }
    frontend_browser.close_dialogs(browser)
    frontend_browser.run_js(browser, "app.loadApiJson(args[0], 'editor images');", api)
    ed = _editor(browser, 4, until=lambda e: "Queue the graph once" in e["message"])
    assert not ed["shown"]
    before = set(get(server.url + "/history"))
    frontend_browser.click_run(browser)
    h = wait_history(server, _queued_id(server, browser, before))
    assert h["status"]["status_str"] == "success", json.dumps(h["status"], indent=1)[-3000:]
    (track,) = h["outputs"]["5"]["sam2long_track"]
    ed = _editor(browser, 4, until=lambda e: e["shown"] and e["mask"] == {"frame": 0, "track": track})
    assert ed["size"] == {"w": WIDTH, "h": HEIGHT} and ed["count"] == N_FRAMES
    assert json.loads(ed["value"]) == state  # showing frames never rewrites the stored prompts
