"""A workflow is untrusted input on a shared server (issue 18): the nodes read only under
ComfyUI's input, output and temp folders and write only under its output folder, plus the
folders in SAM2LONG_ALLOWED_PATHS; hostile numbers give a one-line node error.

Each hostile value is tried through the nodes as ComfyUI calls them (fake ComfyUI), and
each test checks that the outside folder was neither listed, opened nor changed."""

from __future__ import annotations

import builtins
import io as pyio
import os

import av
import numpy as np
import pytest
import torch
from PIL import Image

from test_nodes import _frames, _prompt, comfy, handle, run  # noqa: F401  (module-scoped fixtures)
from test_nodes_longshot import _clip, _write_mp4

ENV = "SAM2LONG_ALLOWED_PATHS"
REFUSED = "is outside the folders this ComfyUI server lets SAM2Long"


def _dirs():
    import folder_paths

    return folder_paths.get_input_directory(), folder_paths.get_output_directory(), folder_paths.get_temp_directory()


def _base():
    """The ComfyUI base folder of the fake (parent of input/output/temp/models): not a root."""
    import folder_paths

    return os.path.dirname(folder_paths.models_dir)


def _tree(root) -> dict:
    """Every path under `root` (links not followed) with its size and modification time."""
    out = {}
    if not os.path.lexists(root):
        return out
    for folder, dirs, files in os.walk(root):
        for name in dirs + files:
            p = os.path.join(folder, name)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def _save_frames(folder, frames, name="f_{:03d}.png"):
    os.makedirs(folder, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(os.path.join(folder, name.format(i)))


@pytest.fixture(scope="module")
def world(comfy, tmp_path_factory):
    """A clip and frames in the input folder, and outside the roots: a folder with a
    video and frames (`outside`), and a video beside the input folder (`base/secret.mp4`),
    reached from inside through links and `..`."""
    inp, out, _ = _dirs()
    clip = _clip(n=4)
    os.makedirs(inp, exist_ok=True)
    os.makedirs(out, exist_ok=True)
    _write_mp4(os.path.join(inp, "clip.mp4"), clip)
    _save_frames(os.path.join(inp, "frames"), clip)
    outside = str(tmp_path_factory.mktemp("outside"))
    _write_mp4(os.path.join(outside, "secret.mp4"), clip)
    _save_frames(os.path.join(outside, "frames"), clip)
    os.makedirs(os.path.join(outside, "dst"))
    _write_mp4(os.path.join(_base(), "secret.mp4"), clip)
    os.symlink(os.path.join(outside, "secret.mp4"), os.path.join(inp, "link.mp4"))
    os.symlink(os.path.join(outside, "frames"), os.path.join(inp, "plates_link"))
    os.symlink(os.path.join(outside, "dst"), os.path.join(out, "elsewhere"))
    os.symlink(os.path.join(outside, "dst"), os.path.join(out, "shot#1"))  # '#' makes a name look like a pattern
    # a frames folder inside the input folder whose second frame is a link to an outside frame
    mixed = os.path.join(inp, "linked_frames")
    _save_frames(mixed, clip[:1])
    os.symlink(os.path.join(outside, "frames", "f_001.png"), os.path.join(mixed, "f_001.png"))
    return type("World", (), {"outside": outside, "clip": clip})


class Spy:
    """Records each stat, listing and open of a path whose real path is under a watched
    folder (lstat/readlink are not recorded: resolving links is how the policy decides)."""

    def __init__(self, monkeypatch, watched):
        self.watched = [os.path.realpath(w) for w in watched]
        self.seen: list[tuple[str, str]] = []
        for owner, name, kind in ((os, "stat", "stat"), (os, "scandir", "list"), (os, "listdir", "list"),
                                  (builtins, "open", "open"), (pyio, "open", "open"), (av, "open", "open")):
            monkeypatch.setattr(owner, name, self._wrap(getattr(owner, name), kind))

    def _watched(self, arg, kind) -> bool:
        if not isinstance(arg, (str, os.PathLike)):
            return False  # a file descriptor
        real = os.path.realpath(os.fspath(arg))
        if real == os.sep:
            return kind == "list"  # listing the root folder
        return any(os.path.commonpath([real, w]) == w for w in self.watched)

    def _wrap(self, fn, kind):
        def spy(*args, **kwargs):
            path = args[0] if args else kwargs.get("path", kwargs.get("file"))
            if self._watched(path, kind):
                self.seen.append((kind, os.fspath(path)))
            return fn(*args, **kwargs)
        return spy


def _outside_state(world):
    return _tree(world.outside), _tree(os.path.join(_base(), "secret.mp4")), os.path.exists(os.path.join(_base(), "x"))


# ------------------------------------------------------------------------------ Load Shot: reading

def _load_cases(world):
    inp = _dirs()[0]
    o = world.outside
    climb = os.path.relpath(os.path.join(o, "secret.mp4"), inp)
    return {
        "climb": {"path": climb},
        "absolute": {"path": os.path.join(o, "secret.mp4")},
        "root_folder": {"path": "/"},
        "video_climb": {"video": "../secret.mp4"},
        "video_absolute": {"video": os.path.join(o, "secret.mp4")},
        "link_in_input": {"path": "link.mp4"},
        "linked_folder": {"path": "plates_link"},
        "pattern_outside": {"path": os.path.join(o, "frames", "f_###.png")},
        "pattern_through_link": {"path": "plates_link/f_###.png"},
        "pattern_climb": {"path": os.path.relpath(os.path.join(o, "frames"), inp) + "/f_%03d.png"},
        "climb_from_inside": {"path": "frames/../../secret.mp4"},
    }


CASES = ["climb", "absolute", "root_folder", "video_climb", "video_absolute", "link_in_input", "linked_folder",
         "pattern_outside", "pattern_through_link", "pattern_climb", "climb_from_inside"]


@pytest.mark.parametrize("case", CASES)
def test_load_shot_refuses_a_path_outside_the_roots(comfy, world, monkeypatch, case):
    from nodes.access import PathNotAllowed
    from nodes.shot import SAM2LongLoadShot

    inputs = _load_cases(world)[case]
    inputs.setdefault("video", "")
    before = _outside_state(world)
    spy = Spy(monkeypatch, [world.outside, os.path.join(_base(), "secret.mp4")])
    msg = SAM2LongLoadShot.validate_inputs(video=inputs["video"], path=inputs.get("path", ""))
    assert isinstance(msg, str) and REFUSED in msg and ENV in msg, msg
    assert SAM2LongLoadShot.fingerprint_inputs(**inputs) is None
    with pytest.raises(PathNotAllowed) as e:
        run(comfy, "SAM2LongLoadShot", **inputs)
    assert str(e.value) == msg and "\n" not in msg
    typed = inputs.get("path") or inputs["video"]
    if world.outside not in typed:  # where a link leads is not told
        assert world.outside not in msg
    assert spy.seen == []  # nothing outside was stat'ed, listed or opened
    assert _outside_state(world) == before


def test_fingerprint_of_the_root_folder_does_not_scan_it(comfy, world, monkeypatch):
    from nodes.shot import SAM2LongLoadShot

    listed = []
    real_scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda p=".": listed.append(p) or real_scandir(p))
    assert SAM2LongLoadShot.fingerprint_inputs(video="", path="/") is None
    assert SAM2LongLoadShot.fingerprint_inputs(video="", path=os.path.join(world.outside, "frames")) is None
    assert listed == []


@pytest.mark.parametrize("field", ["path", "video"])
def test_refusal_is_the_same_whether_the_outside_file_exists(comfy, world, field):
    from nodes.access import PathNotAllowed
    from nodes.shot import SAM2LongLoadShot

    target = os.path.join(world.outside, "maybe.mp4")
    inputs = {"video": "", field: target}
    _write_mp4(target, world.clip)
    try:
        there = SAM2LongLoadShot.validate_inputs(video=inputs["video"], path=inputs.get("path", ""))
        with pytest.raises(PathNotAllowed) as e1:
            run(comfy, "SAM2LongLoadShot", **inputs)
    finally:
        os.remove(target)
    gone = SAM2LongLoadShot.validate_inputs(video=inputs["video"], path=inputs.get("path", ""))
    with pytest.raises(PathNotAllowed) as e2:
        run(comfy, "SAM2LongLoadShot", **inputs)
    assert REFUSED in there and there == gone == str(e1.value) == str(e2.value)


def test_frame_links_leading_outside_are_refused_before_a_frame_is_read(comfy, world, monkeypatch):
    from nodes.access import PathNotAllowed

    spy = Spy(monkeypatch, [world.outside])
    with pytest.raises(PathNotAllowed, match=r"the path 'linked_frames' \(its frame 'f_001.png'\) " + REFUSED):
        run(comfy, "SAM2LongLoadShot", path="linked_frames")
    assert [s for s in spy.seen if s[0] in ("open", "list")] == []


def test_tilde_is_not_expanded(comfy, world, monkeypatch, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    _write_mp4(home / "x.mp4", world.clip)
    monkeypatch.setenv("HOME", str(home))
    before = _tree(home)
    spy = Spy(monkeypatch, [home])
    with pytest.raises(FileNotFoundError) as e:
        run(comfy, "SAM2LongLoadShot", path="~/x.mp4")
    assert os.path.join(_dirs()[0], "~", "x.mp4") in str(e.value)  # looked for in the input folder
    assert spy.seen == [] and _tree(home) == before


def test_track_refuses_a_video_whose_file_is_outside(comfy, world, handle, monkeypatch):
    """A VIDEO made by another pack's node from any path is held to the same policy."""
    from comfy_api.latest import InputImpl
    from nodes.access import PathNotAllowed

    spy = Spy(monkeypatch, [world.outside])
    with pytest.raises(PathNotAllowed, match=REFUSED):
        run(comfy, "SAM2LongTrack", model=handle, prompts=_prompt(comfy),
            video=InputImpl.VideoFromFile(os.path.join(world.outside, "secret.mp4")))
    assert spy.seen == []
    (track, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, prompts=_prompt(comfy),
                           video=InputImpl.VideoFromFile(os.path.join(_dirs()[0], "clip.mp4")))
    assert track.num_frames == 4


def test_roots_themselves_still_load(comfy, world):
    """Inside the roots nothing changes: the input folder by name, `..` that stays inside,
    an absolute path into the input folder and a file in the output folder."""
    inp, out, _ = _dirs()
    for inputs in ({"video": "clip.mp4"}, {"path": "frames/../clip.mp4"}, {"path": os.path.join(inp, "frames")},
                   {"path": "frames/f_###.png"}):
        (shot, n, *_), _ = run(comfy, "SAM2LongLoadShot", **inputs)
        assert n == 4, inputs
    _write_mp4(os.path.join(out, "rendered.mp4"), world.clip)
    (shot, n, *_), _ = run(comfy, "SAM2LongLoadShot", video="rendered.mp4 [output]")
    assert n == 4 and shot.path == os.path.realpath(os.path.join(out, "rendered.mp4"))


# ------------------------------------------------------------------------------ Save Mattes: writing

@pytest.fixture(scope="module")
def track(comfy, handle):
    (t, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=_frames(n=3), prompts=_prompt(comfy))
    return t


def _save_cases(world):
    inp, out, tmp = _dirs()
    return {
        "climb": ("../../x", os.path.join(os.path.dirname(_base()), "x")),
        "climb_one": ("../x", os.path.join(_base(), "x")),
        "climb_from_inside": ("sam2long/../../x", os.path.join(_base(), "x")),
        "absolute": (os.path.join(world.outside, "new", "deep"), os.path.join(world.outside, "new")),
        "link_in_output": ("elsewhere/m", os.path.join(world.outside, "dst", "m")),
        "link_named_like_a_pattern": ("shot#1", os.path.join(world.outside, "dst", "matte.0000.png")),
        "input_folder": (os.path.join(inp, "m"), os.path.join(inp, "m")),
        "temp_folder": (os.path.join(tmp, "m"), os.path.join(tmp, "m")),
    }


@pytest.mark.parametrize("case", ["climb", "climb_one", "climb_from_inside", "absolute", "link_in_output",
                                  "link_named_like_a_pattern", "input_folder", "temp_folder"])
def test_save_mattes_refuses_a_folder_outside_the_output_folder(comfy, world, track, case):
    from nodes.access import PathNotAllowed
    from nodes.save import SAM2LongSaveMattes

    folder, would_be = _save_cases(world)[case]
    watched = [world.outside, _base(), os.path.dirname(_base())]
    before = [_tree(w) for w in watched]
    msg = SAM2LongSaveMattes.validate_inputs(folder=folder)
    assert isinstance(msg, str) and REFUSED in msg and "write to" in msg and ENV in msg, msg
    with pytest.raises(PathNotAllowed) as e:
        run(comfy, "SAM2LongSaveMattes", track=track, folder=folder)
    assert str(e.value) == msg and "\n" not in msg
    assert not os.path.lexists(would_be)  # not even a parent folder was made
    assert [_tree(w) for w in watched] == before


def test_nul_in_a_path_is_one_line(comfy, world, track):
    from nodes.access import PathNotAllowed
    from nodes.shot import SAM2LongLoadShot

    assert "NUL" in SAM2LongLoadShot.validate_inputs(video="", path="clip\x00.mp4")
    with pytest.raises(PathNotAllowed, match="NUL"):
        run(comfy, "SAM2LongSaveMattes", track=track, folder="a\x00b")


def test_save_refusal_is_the_same_whether_the_outside_folder_exists(comfy, world, track):
    from nodes.access import PathNotAllowed

    folder = os.path.join(world.outside, "maybe")
    os.mkdir(folder)
    with pytest.raises(PathNotAllowed) as there:
        run(comfy, "SAM2LongSaveMattes", track=track, folder=folder)
    assert os.listdir(folder) == []
    os.rmdir(folder)
    with pytest.raises(PathNotAllowed) as gone:
        run(comfy, "SAM2LongSaveMattes", track=track, folder=folder)
    assert str(there.value) == str(gone.value) and not os.path.lexists(folder)


def test_save_mattes_tilde_stays_in_the_output_folder(comfy, world, track, monkeypatch, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    (folder,), _ = run(comfy, "SAM2LongSaveMattes", track=track, folder="~/mattes", mode="union")
    assert folder == os.path.join(os.path.realpath(_dirs()[1]), "~", "mattes")
    assert len(os.listdir(folder)) == 3 and list(home.iterdir()) == []


def test_legitimate_save_still_writes_mattes(comfy, world, track):
    out = os.path.realpath(_dirs()[1])
    (folder,), _ = run(comfy, "SAM2LongSaveMattes", track=track)  # the default folder
    assert folder == os.path.join(out, "sam2long", "mattes")
    assert sorted(os.listdir(os.path.join(folder, "0"))) == [f"matte.{i:04d}.png" for i in range(3)]
    for given in (os.path.join(out, "abs"), "a/../b", ""):  # absolute inside, `..` staying inside, the folder itself
        (folder,), _ = run(comfy, "SAM2LongSaveMattes", track=track, folder=given, mode="union", prefix="legit")
        assert os.path.commonpath([folder, out]) == out
        assert sorted(f for f in os.listdir(folder) if f.startswith("legit")) == [f"legit.{i:04d}.png" for i in range(3)]


# ------------------------------------------------------------------------------ SAM2LONG_ALLOWED_PATHS

def test_allowed_paths_open_a_plate_mount_for_reading_and_writing(comfy, world, track, monkeypatch, tmp_path):
    from nodes.access import PathNotAllowed

    mount, other = tmp_path / "plates", tmp_path / "other"
    _save_frames(mount / "sh010", world.clip, "sh010.{:04d}.png")
    evil = tmp_path / "plates_evil"  # shares the mount's name as a string prefix
    _save_frames(evil, world.clip)
    pattern = str(mount / "sh010" / "sh010.####.png")
    with pytest.raises(PathNotAllowed):  # not allowed until the owner says so
        run(comfy, "SAM2LongLoadShot", path=pattern)
    monkeypatch.setenv(ENV, os.pathsep.join([str(other), str(mount)]))
    (shot, n, *_), _ = run(comfy, "SAM2LongLoadShot", path=pattern)
    assert n == 4 and shot.first_number == 0
    (folder,), _ = run(comfy, "SAM2LongSaveMattes", track=track, folder=str(mount / "mattes"), mode="union")
    assert sorted(os.listdir(folder)) == [f"matte.{i:04d}.png" for i in range(3)]
    before = _tree(evil)
    with pytest.raises(PathNotAllowed) as e:
        run(comfy, "SAM2LongLoadShot", path=str(evil))
    assert str(mount) in str(e.value)  # the message names the allowed roots
    with pytest.raises(PathNotAllowed):
        run(comfy, "SAM2LongSaveMattes", track=track, folder=str(evil / "mattes"))
    assert _tree(evil) == before


# ------------------------------------------------------------------------------ Model Loader

def test_checkpoint_name_cannot_leave_the_model_folders(comfy, world):
    from nodes.loader import SAM2LongModelLoader

    import folder_paths

    sam2 = os.path.join(folder_paths.models_dir, "sam2")
    os.makedirs(sam2, exist_ok=True)
    open(os.path.join(sam2, "mine.pt"), "wb").close()
    open(os.path.join(world.outside, "stolen.pt"), "wb").close()
    assert SAM2LongModelLoader.validate_inputs("mine.pt") is True
    for name in (os.path.relpath(os.path.join(world.outside, "stolen.pt"), sam2),
                 os.path.join(world.outside, "stolen.pt")):
        msg = SAM2LongModelLoader.validate_inputs(name)
        assert isinstance(msg, str) and "was not found" in msg, name


# ------------------------------------------------------------------------------ numbers

BAD_NUMBERS = [
    ("SAM2LongPrompt", {"frame_index": float("inf")}, "frame_index"),
    ("SAM2LongPrompt", {"frame_index": float("nan")}, "frame_index"),
    ("SAM2LongPrompt", {"frame_index": 1.5}, "frame_index"),
    ("SAM2LongPrompt", {"frame_index": -1}, "frame_index"),
    ("SAM2LongPrompt", {"object_id": float("-inf")}, "object_id"),
    ("SAM2LongPrompt", {"object_id": 10**30}, "object_id"),
    ("SAM2LongPrompt", {"positive_coords": '[{"x": 1e999, "y": 2}]'}, "finite"),
    ("SAM2LongPrompt", {"positive_coords": '[{"x": NaN, "y": 2}]'}, "finite"),
    ("SAM2LongPrompt", {"positive_coords": '[{"x": ' + "9" * 400 + ', "y": 2}]'}, "too large"),
    ("SAM2LongPrompt", {"bboxes": [0, 0, float("inf"), 3]}, "box"),
    ("SAM2LongPrompt", {"bboxes": [0, 0, 10**400, 3]}, "too large"),
    ("SAM2LongPrompt", {"bboxes": {"x": 0, "y": 0, "width": float("nan"), "height": 3}}, "box"),
    ("SAM2LongTrack", {"pathways": float("inf")}, "pathways"),
    ("SAM2LongTrack", {"pathways": 17}, "pathways"),
    ("SAM2LongTrack", {"iou_threshold": float("nan")}, "iou_threshold"),
    ("SAM2LongTrack", {"iou_threshold": 1.0}, "iou_threshold"),
    ("SAM2LongTrack", {"uncertainty": float("nan")}, "uncertainty"),
    ("SAM2LongTrack", {"uncertainty": float("inf")}, "uncertainty"),
    ("SAM2LongTrack", {"start_frame": float("inf")}, "start_frame"),
    ("SAM2LongTrack", {"end_frame": float("nan")}, "end_frame"),
    ("SAM2LongLoadShot", {"first_frame": float("inf")}, "first_frame"),
    ("SAM2LongLoadShot", {"frame_count": float("nan")}, "frame_count"),
    ("SAM2LongLoadShot", {"preview_index": 1e300}, "preview_index"),
    ("SAM2LongSaveMattes", {"first_number": float("inf")}, "first_number"),
    ("SAM2LongPreview", {"opacity": float("nan")}, "opacity"),
    ("SAM2LongPreview", {"preview_frames": float("inf")}, "preview_frames"),
    ("SAM2LongTrackToMask", {"first_frame": float("inf")}, "first_frame"),
    ("SAM2LongTrackToMask", {"frame_count": -1}, "frame_count"),
]


@pytest.mark.parametrize("node,bad,named", BAD_NUMBERS, ids=[f"{n}-{next(iter(b))}-{i}" for i, (n, b, _) in
                                                             enumerate(BAD_NUMBERS)])
def test_hostile_numbers_give_a_one_line_node_error(comfy, world, handle, track, node, bad, named):
    base = {
        "SAM2LongPrompt": {"positive_coords": '[{"x": 16, "y": 22}]'},
        "SAM2LongTrack": {"model": handle, "images": _frames(n=3), "prompts": _prompt(comfy)},
        "SAM2LongLoadShot": {"video": "clip.mp4"},
        "SAM2LongSaveMattes": {"track": track, "folder": "numbers"},
        "SAM2LongPreview": {"track": track, "images": _frames(n=3)},
        "SAM2LongTrackToMask": {"track": track},
    }[node]
    if "bboxes" in bad:
        base = {}
    with pytest.raises(ValueError) as e:  # PromptError and FrameError are ValueErrors
        run(comfy, node, **{**base, **bad})
    text = str(e.value)
    assert type(e.value) is not OverflowError and text.startswith("SAM2Long:") and "\n" not in text
    assert named in text and len(text) < 300, text
    assert not os.path.exists(os.path.join(_dirs()[1], "numbers"))


def test_whole_and_real_accept_what_comfyui_sends(comfy):
    from nodes.widgets import real, whole

    assert whole(3, "n", 0, 5) == 3 and whole(3.0, "n", 0, 5) == 3 and whole(np.int64(2), "n", 0, 5) == 2
    assert real(0.5, "x", 0, 1) == 0.5 and real(1, "x", 0, 1) == 1.0 and real(np.float32(0.25), "x", 0, 1) == 0.25
    for bad in (True, "3", None, torch.tensor(1)):
        with pytest.raises(ValueError):
            whole(bad, "n", 0, 5)


def test_track_widgets_offer_only_what_the_library_accepts(comfy):
    """The Track node's tree widgets take their defaults and bounds from the library's own."""
    from nodes.track import SAM2LongTrack
    from sam2long.engine.tree import TreeConfig

    inputs = {i.id: i for i in SAM2LongTrack.define_schema().inputs}
    for name in ("pathways", "iou_threshold", "uncertainty"):
        widget = inputs[name]
        assert widget.default == getattr(TreeConfig, name), name
        low, high = widget.extra["min"], widget.extra["max"]
        for value in (low, high):
            TreeConfig(**{name: value})  # the widget's ends are accepted
        step = 1 if name == "pathways" else 1e-6
        with pytest.raises(ValueError):
            TreeConfig(**{name: high + step})  # and nothing beyond them
