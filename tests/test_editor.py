"""The Prompt Editor node and its routes (fake ComfyUI): the stored JSON read and checked,
frames served one at a time under the path policy, a track's masks served for one frame."""

from __future__ import annotations

import io as pyio
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from test_nodes import _frames, _prompt, comfy, handle, run  # noqa: F401  (module-scoped fixtures)
from test_nodes_longshot import _clip, _write_mp4

REFUSED = "is outside the folders this ComfyUI server lets SAM2Long read"


def _state(*objects):
    return json.dumps({"version": 1, "objects": list(objects)})


def _obj(obj_id, frames, name=None):
    return {"id": obj_id, "name": name or f"object {obj_id}", "frames": frames}


def _editor(comfy, state, **inputs):
    (chain,), ui = run(comfy, "SAM2LongPromptEditor", editor=state, **inputs)
    return chain, ui


# ------------------------------------------------------------------------------ the stored JSON

def test_state_becomes_prompt_entries_after_the_chain_given(comfy):
    state = _state(_obj(0, {"0": {"points": [[10, 12, 1], [30.5, 20, 0]], "box": None},
                            "12": {"points": [], "box": [40, 30, 5, 2]}}),
                   _obj(3, {"2": {"points": [[1, 2, 1]], "box": [0, 0, 20, 20]}, "5": {"points": [], "box": None}}))
    before = _prompt(comfy, object_id=7, frame_index=1)
    chain, ui = _editor(comfy, state, prompts=before)
    assert chain.entries[0] == before.entries[0]
    got = [(e.frame, e.obj_id, e.points, e.labels, e.box) for e in chain.entries[1:]]
    assert got == [(0, 0, ((10.0, 12.0), (30.5, 20.0)), (1, 0), None),
                   (12, 0, (), (), (5.0, 2.0, 40.0, 30.0)),  # a box drawn either way round
                   (2, 3, ((1.0, 2.0),), (1,), (0.0, 0.0, 20.0, 20.0))]  # frame 5 holds nothing
    assert chain.obj_ids == [0, 3, 7] and ui is None


def test_editor_prompts_track(comfy, handle):
    imgs = _frames()
    chain, _ = _editor(comfy, _state(_obj(2, {"1": {"points": [[16, 22, 1]], "box": None}})))
    (track, masks, _), ui = run(comfy, "SAM2LongTrack", model=handle, images=imgs, prompts=chain)
    assert track.obj_ids == (2,) and masks.shape == (6, 48, 64)
    assert not track.present[2][0] and track.present[2][1:].all()  # tracked forward from the prompted frame
    import nodes.served as served

    assert served.lookup(ui["sam2long_track"][0]) is track


@pytest.mark.parametrize("state, says", [
    ("{not json", "is not valid JSON"),
    ("[" * 100_000, "nested too deeply"),
    ('{"version": 2, "objects": []}', '"version": 1'),
    (_state({"id": -1, "frames": {}}), "an object id must be a whole number from 0 to 10000, got -1"),
    (_state({"id": 1.5, "frames": {}}), "got 1.5"),
    (_state(_obj(1, {}), _obj(1, {})), "object id 1 is used twice"),
    (_state(_obj(0, {"-3": {"points": [[1, 1, 1]]}})), "frame '-3'"),
    (_state(_obj(0, {"x": {"points": [[1, 1, 1]]}})), "frame 'x'"),
    (_state(_obj(0, {"0": {"points": [[1, 1, 2]]}})), "label 1 (positive) or 0 (negative)"),
    (_state(_obj(0, {"0": {"points": [[1, 1, True]]}})), "label 1 (positive)"),
    (_state(_obj(0, {"0": {"points": [["a", 1, 1]]}})), "must be a number, got 'a'"),
    ('{"version": 1, "objects": [{"id": 0, "frames": {"0": {"points": [[NaN, 1, 1]]}}}]}', "finite"),
    ('{"version": 1, "objects": [{"id": 0, "frames": {"0": {"points": [[1e400, 1, 1]]}}}]}', "finite"),
    ('{"version": 1, "objects": [{"id": 0, "frames": {"0": {"box": [0, 0, Infinity, 4]}}}]}', "four numbers"),
    (_state(_obj(0, {"0": {"points": [[1, 1, 1]], "box": [1, 2, 3]}})), "must be [x0, y0, x1, y1]"),
    (_state(_obj(0, {"0": {"points": [], "box": [5, 5, 5, 9]}})), "empty box"),
    (_state(_obj(0, {})), "holds no prompts"),
])
def test_bad_state_is_a_one_line_node_error(comfy, state, says):
    with pytest.raises(ValueError) as e:  # PromptError is a ValueError
        _editor(comfy, state)
    assert says in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert str(e.value).startswith(("SAM2Long Prompt Editor: ", "SAM2Long: "))


def test_place_checked_against_the_connected_frames(comfy, tmp_path):
    imgs = _frames()  # 6 frames of 64x48
    ok = _state(_obj(0, {"5": {"points": [[64, 48, 1]], "box": None}}))  # the far corner is inside
    _editor(comfy, ok, images=imgs)
    for state, says in [(_state(_obj(0, {"6": {"points": [[1, 1, 1]]}})), "frame 6 is not in this shot"),
                        (_state(_obj(0, {"0": {"points": [[64.5, 1, 1]]}})), "outside the 64x48 frame"),
                        (_state(_obj(0, {"0": {"points": [], "box": [0, 0, 10, 49]}})), "outside the 64x48"),
                        (_state(_obj(0, {"0": {"points": [[3, 3, 0]]}})), "only negative points")]:
        with pytest.raises(ValueError, match="SAM2Long Prompt Editor") as e:
            _editor(comfy, state, images=imgs)
        assert says in str(e.value) and "6 frames of 64x48" in str(e.value), str(e.value)


def test_place_checked_against_the_connected_shot(comfy, shot_files):
    (shot, *_), _ = run(comfy, "SAM2LongLoadShot", video="editor.mp4", first_frame=2)  # 4 frames of 64x48
    _editor(comfy, _state(_obj(0, {"3": {"points": [[1, 1, 1]]}})), shot=shot)
    with pytest.raises(ValueError, match="frame 4 is not in this shot.*the shot has 4 frames of 64x48"):
        _editor(comfy, _state(_obj(0, {"4": {"points": [[1, 1, 1]]}})), shot=shot)


# ------------------------------------------------------------------------------ routes

def _input_dir():
    import folder_paths

    return folder_paths.get_input_directory()


@pytest.fixture(scope="module")
def shot_files(comfy, tmp_path_factory):
    """A 6-frame clip as input/editor.mp4 and input/editor_frames/f_###.png, and one outside."""
    clip = _clip(n=6)
    os.makedirs(os.path.join(_input_dir(), "editor_frames"), exist_ok=True)
    _write_mp4(os.path.join(_input_dir(), "editor.mp4"), clip)
    for i, f in enumerate(clip):
        Image.fromarray(f).save(os.path.join(_input_dir(), "editor_frames", f"f_{i:03d}.png"))
    outside = tmp_path_factory.mktemp("outside") / "secret.mp4"
    _write_mp4(outside, clip)
    return clip, str(outside)


def _image(reply):
    return np.asarray(Image.open(pyio.BytesIO(reply.body)))


def test_routes_registered_inside_comfyui_only(comfy):
    import server

    from nodes import routes

    assert routes.register()
    assert set(server.PromptServer.instance.routes.added) == {"/sam2long/palette", "/sam2long/frame",
                                                              "/sam2long/masks"}


def test_palette_route_is_the_overlay_palette(comfy):
    from nodes import routes
    from sam2long.media.overlay import PALETTE

    reply = routes.palette()
    assert reply.status == 200 and json.loads(reply.body) == [list(c) for c in PALETTE]


@pytest.mark.parametrize("kind", ["video", "frames"])
def test_frame_route_decodes_only_the_frame_asked_for(comfy, shot_files, monkeypatch, kind):
    from nodes import routes
    from sam2long.media.frames import VideoFrames
    from sam2long.media.plates import PlateFrames

    clip, _ = shot_files
    decoded = []
    cls, method = (VideoFrames, "_rgb") if kind == "video" else (PlateFrames, "_read")
    original = getattr(cls, method)
    monkeypatch.setattr(cls, method, lambda self, *a: decoded.append(a) or original(self, *a))
    query = {"video": "editor.mp4"} if kind == "video" else {"path": "editor_frames"}
    reply = routes.frame({**query, "first_frame": "1", "frame_count": "4", "index": "2", "max": "32"})
    assert reply.status == 200, reply.body
    assert len(decoded) == 1
    assert reply.content_type == "image/jpeg"
    assert reply.headers["X-SAM2Long-Width"] == "64" and reply.headers["X-SAM2Long-Height"] == "48"
    assert reply.headers["X-SAM2Long-Frames"] == "4"
    img = _image(reply)
    assert img.shape == (24, 32, 3)  # scaled down to 32 px a side, aspect kept
    want = np.asarray(Image.fromarray(clip[3]).resize((32, 24), Image.BILINEAR), np.float32)
    assert np.abs(img.astype(np.float32) - want).mean() < 12  # frame 1 + 2 of the shot, not another


@pytest.mark.parametrize("query", [
    {"path": "../secret.mp4"}, {"path": "OUTSIDE"}, {"video": "../../secret.mp4"},
])
def test_frame_route_refuses_what_load_shot_may_not_read(comfy, shot_files, query, monkeypatch):
    from nodes import routes

    _, outside = shot_files
    query = {k: v.replace("OUTSIDE", outside) for k, v in query.items()}
    opened = []
    import sam2long.media.frames as frames

    monkeypatch.setattr(frames, "VideoFrames", lambda *a, **k: opened.append(a))
    reply = routes.frame({**query, "index": "0"})
    assert reply.status == 403 and opened == []
    said = comfy.nodes.SAM2LongLoadShot.validate_inputs(video=query.get("video", ""), path=query.get("path", ""))
    assert REFUSED in said and reply.body.decode() == said  # the same message as Load Shot's


@pytest.mark.parametrize("query, status, says", [
    ({"video": "editor.mp4", "index": "6"}, 400, "frame 6 is outside the range"),
    ({"video": "editor.mp4", "index": "-1"}, 400, "index must be a whole number"),
    ({"video": "editor.mp4", "max": "1e9"}, 400, "max must be a whole number"),
    ({"video": "nothing.mp4"}, 404, "was not found"),
    ({"images": "0123"}, 404, "no longer held"),
])
def test_frame_route_bad_requests(comfy, shot_files, query, status, says):
    from nodes import routes

    reply = routes.frame(query)
    assert reply.status == status and says in reply.body.decode(), reply.body


def test_images_after_a_run_are_served_by_id(comfy):
    from nodes import routes

    imgs = _frames()
    _, ui = _editor(comfy, _state(_obj(0, {"0": {"points": [[5, 5, 1]]}})), images=imgs)
    assert ui["sam2long_frames"] == [6]
    reply = routes.frame({"images": ui["sam2long_images"][0], "index": "4"})
    assert reply.status == 200 and reply.headers["X-SAM2Long-Frames"] == "6"
    got = _image(reply).astype(np.float32)
    off = [np.abs(got - f.numpy() * 255).mean() for f in imgs]
    assert int(np.argmin(off)) == 4 and off[4] < 10, off  # that frame (JPEG-close), no other


def _masks_track(spill_dir=None):
    from sam2long.media.trackstore import SpillBuilder, TrackBuilder

    builder = SpillBuilder(spill_dir, 4, 40, 60) if spill_dir else TrackBuilder(4, 40, 60)
    for j in range(4):
        m = torch.zeros(2, 40, 60, dtype=torch.bool)
        m[0, 5:15, 10 + j:30 + j] = True
        m[1, 20:35, 40:55] = j == 2  # object 5 only on frame 2
        builder.add(j, [1, 5], m)
    return builder.build()


@pytest.mark.parametrize("spilled", [False, True])
def test_masks_route_overlays_one_frame(comfy, tmp_path, monkeypatch, spilled):
    from nodes import routes, served
    from sam2long.media.overlay import PALETTE

    track = _masks_track(tmp_path if spilled else None)
    read = []
    original = type(track)._mask
    monkeypatch.setattr(type(track), "_mask", lambda self, i, j: read.append(j) or original(self, i, j))
    reply = routes.masks({"track": served.remember(track), "index": "2"})
    assert reply.status == 200 and reply.content_type == "image/png"
    assert set(read) == {2}  # that frame's masks only
    rgba = _image(reply)
    assert rgba.shape == (40, 60, 4)
    assert tuple(rgba[10, 20, :3]) == PALETTE[1] and 0 < rgba[10, 20, 3] < 255  # tinted inside
    assert tuple(rgba[5, 20]) == (*PALETTE[1], 255)  # outlined
    assert tuple(rgba[27, 47, :3]) == PALETTE[5]
    assert rgba[0, 0, 3] == 0 and rgba[25, 20, 3] == 0  # clear where no object is
    small = _image(routes.masks({"track": served.remember(track), "index": "1", "max": "30"}))
    assert small.shape == (20, 30, 4) and small[12:18, 20:28, 3].max() == 0  # object 5 not on frame 1


def test_masks_route_bad_requests(comfy):
    from nodes import routes, served

    track = _masks_track()
    assert routes.masks({"track": "nope", "index": "0"}).status == 404
    reply = routes.masks({"track": served.remember(track), "index": "4"})
    assert reply.status == 400 and "frames 0..3" in reply.body.decode()
    assert served.remember(track) == served.remember(track)
    key = served.remember(track)
    del track
    import gc

    gc.collect()
    assert served.lookup(key) is None  # only ComfyUI's cache keeps a result alive
