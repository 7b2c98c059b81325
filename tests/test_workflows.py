"""The shipped workflows checked against the nodes' schemas, without ComfyUI (fake modules).

ComfyUI rejects an API prompt with a missing required input or a link to an output that
does not exist; these checks catch that in CI, where the real-server test cannot run.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))
API_DIR = os.path.join(TESTS, "workflows_api")
NAMES = sorted(n[:-5] for n in os.listdir(API_DIR) if n.endswith(".json"))


@pytest.fixture(scope="module")
def schemas(tmp_path_factory):
    for p in (REPO, TESTS):
        if p not in sys.path:
            sys.path.insert(0, p)
    import comfy_fake

    comfy_fake.install(str(tmp_path_factory.mktemp("comfy") / "models"))
    for name in [m for m in sys.modules if m == "nodes" or m.startswith("nodes.")]:
        del sys.modules[name]
    nodes = importlib.import_module("nodes")
    yield {cls.define_schema().node_id: cls.define_schema() for cls in nodes.NODES}
    for name in [m for m in sys.modules if m == "nodes" or m.startswith("nodes.")]:
        del sys.modules[name]
    comfy_fake.uninstall()


def _load(folder, name):
    with open(os.path.join(folder, name + ".json")) as f:
        return json.load(f)


@pytest.mark.parametrize("name", NAMES)
def test_api_copy_matches_schemas(schemas, name):
    prompt = _load(API_DIR, name)
    for nid, node in prompt.items():
        schema = schemas.get(node["class_type"])
        for value in node["inputs"].values():
            if isinstance(value, list):  # a link: [source node id, output index]
                src = prompt[value[0]]
                if src["class_type"] in schemas:
                    assert value[1] < len(schemas[src["class_type"]].outputs), (name, nid, value)
        if schema is None:  # a core node
            continue
        ids = {i.id for i in schema.inputs}
        assert set(node["inputs"]) <= ids, (name, nid, set(node["inputs"]) - ids)
        missing = [i.id for i in schema.inputs if not i.optional and i.id not in node["inputs"]]
        assert not missing, (name, nid, node["class_type"], missing)


@pytest.mark.parametrize("name", NAMES)
def test_ui_and_api_formats_agree(name):
    ui = _load(os.path.join(REPO, "workflows"), name)
    api = _load(API_DIR, name)
    assert {str(n["id"]): n["type"] for n in ui["nodes"] if n["type"] != "Note"} == \
           {k: v["class_type"] for k, v in api.items()}
    assert os.path.isfile(os.path.join(REPO, "workflows", name + ".jpg"))


WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}


@pytest.mark.parametrize("name", NAMES)
def test_ui_widget_values_land_where_meant(schemas, name):
    """The frontend hands a node's widgets_values out by position: to the widget inputs in the
    schema's order, then to the upload button that a combo with upload adds after them (seen in
    the real frontend, 1.27; tests/test_comfyui_frontend.py checks it there). Each of our nodes'
    values must so land on the input that the API copy gives it."""
    ui = _load(os.path.join(REPO, "workflows"), name)
    api = _load(API_DIR, name)
    for node in ui["nodes"]:
        schema = schemas.get(node["type"])
        if schema is None:  # a core node
            continue
        inputs = [i for i in schema.inputs if i.io_type in WIDGET_TYPES and not i.extra.get("force_input")]
        names = [i.id for i in inputs] + ["upload" for i in inputs if i.extra.get("upload")]
        meant = api[str(node["id"])]["inputs"]
        assert len(node["widgets_values"]) == len(names), (name, node["id"], node["type"])
        landed = {k: v for k, v in zip(names, node["widgets_values"]) if k != "upload"}
        assert landed == {k: v for k, v in meant.items() if k in landed}, (name, node["id"], node["type"])
        assert set(meant) - set(landed) <= {i.id for i in schema.inputs if i.id not in names}, (name, node["id"])


@pytest.mark.parametrize("name", [n for n in NAMES if "long_shot" in n])
def test_long_shot_workflows_stream(name):
    """No long-shot workflow decodes the whole shot into an IMAGE batch: frames come from Load Shot."""
    api = _load(API_DIR, name)
    types = [v["class_type"] for v in api.values()]
    assert "SAM2LongLoadShot" in types and "GetVideoComponents" not in types
    for node in api.values():
        if node["class_type"] == "SAM2LongTrack":
            assert "shot" in node["inputs"] and "images" not in node["inputs"]
