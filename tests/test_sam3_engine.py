"""Everything the engine does for SAM 2 also works on SAM 3's tracker: objects batched
in one network call, identical pathways computed once, exact streaming and max-lag,
flat state, chunk hand-over (pickled too), backward and both directions, and the
product's doors (ComfyUI nodes on a streamed shot, `sam2long track`, `--sam2` /
`--no-tree`, `sam2long batch`).

Skipped when `sam3` is not importable. Models are reduced random-weight trackers
(`sam3_testing.REDUCED`, 224 px) and, for the runs over many frames, the same sizes
at 112 px (an 8x8 token grid). Random weights make arbitrary masks: the tests check
that each path gives what the library gives, not segmentation quality.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from sam2long.models.sam3 import network as sam3_network, shims as sam3_shims

try:
    sam3_shims.sam3_modules()
except ImportError as e:  # the optional extra is not installed
    pytest.skip(f"sam3 is not importable: {e}", allow_module_level=True)

from sam2long import TensorFrames, Tracker, TreeConfig  # noqa: E402
from sam2long.models import loading  # noqa: E402
from sam2long.app import cli  # noqa: E402
from sam2long.media.frames import open_frames  # noqa: E402
from sam2long.models.model import LoadedModel  # noqa: E402
from sam2long.engine.step import TreeStep  # noqa: E402

from conftest import moving_square_clip, write_mp4  # noqa: E402
from sam3_testing import REDUCED, load_reduced, official_layout  # noqa: E402
from test_nodes import comfy, run  # noqa: E402,F401  (the fake ComfyUI fixture)
from loader_options import use_small_models

SMALL = replace(REDUCED, image_size=112)
# Object logits of these random trackers sit near +0.15; shifted down, SAM 3's
# memory-frame filter ((2 sigmoid(s) - 1) * IoU > 0.01) drops some frames, so its own
# tracker (TreeConfig.sam3()) differs from SAM 2's rules (as in test_sam3_equivalence).
PRESENCE_SHIFT = -0.112


def reduced(config=REDUCED, seed=0, shift=0.0):
    torch.manual_seed(seed)
    net = sam3_network.build_tracker_net(config)
    with torch.no_grad():
        net.sam_mask_decoder.pred_obj_score_head.layers[-1].bias += shift
    return net


@pytest.fixture(scope="module")
def model():
    return LoadedModel.from_net(reduced(), "sam3", device="cpu")


@pytest.fixture(scope="module")
def small():
    # seed 1: P=3 pathways that stay apart for two frames (max_lag=1 has to force)
    return LoadedModel.from_net(reduced(SMALL, seed=1), "sam3", device="cpu")


def track(model, frames, prompts, tree=None, direction="forward", first_index=0, tracker=None, **kw):
    tracker = tracker or Tracker(model, tree or TreeConfig())
    for args in prompts:
        getattr(tracker, args[0])(*args[1:])
    results = tracker.propagate(TensorFrames(frames, first_index), direction=direction, return_logits=True, **kw)
    return {r.frame_idx: r for r in results}, tracker


def assert_same(a, b, frames):
    for t in frames:
        assert a[t].obj_ids == b[t].obj_ids, t
        assert torch.equal(a[t].masks, b[t].masks), f"masks differ on frame {t}"
        assert torch.equal(a[t].logits, b[t].logits), f"logits differ on frame {t}"


# --------------------------------------------------------------------------- the engine


def test_objects_share_one_call_and_identical_pathways_are_computed_once(model):
    """P=3, two objects: every tracked frame is one decoder call and one memory-encoder
    call, whose batch is the distinct pathways of both objects, not 2 x 3."""
    net = model.net
    calls, per_frame, distinct = [], {}, {}
    hooks = [
        net.sam_mask_decoder.register_forward_pre_hook(
            lambda m, a, kw: calls.append(("decoder", kw["image_embeddings"].shape[0])), with_kwargs=True),
        net.maskmem_backbone.register_forward_pre_hook(lambda m, a: calls.append(("memory", a[1].shape[0]))),
    ]
    tracker = Tracker(model, TreeConfig())
    tracker.add_points(0, 1, [(30, 20)], [1])
    tracker.add_points(0, 2, [(70, 50)], [1])

    def on_step(t):
        per_frame[t] = list(calls)
        calls.clear()
        distinct[t] = sum(len(set(o.pathways)) for o in tracker._run.objects.values())

    try:
        out = list(tracker.propagate(TensorFrames(moving_square_clip(n=6)), on_step=on_step))
    finally:
        for h in hooks:
            h.remove()
    assert [r.obj_ids for r in out] == [[1, 2]] * 6
    # the prompt frame: one decoder call per object, their memories encoded together (SAM 3's joint consolidation)
    assert per_frame[0] == [("decoder", 1), ("decoder", 1), ("memory", 2)]
    for t in range(1, 6):
        assert [n for kind, n in per_frame[t] if kind == "decoder"] == [distinct[t - 1]], t
        assert len(per_frame[t]) == 2 and per_frame[t][1][0] == "memory", t
    assert distinct[0] == 2  # three identical pathways per object: one unit each
    assert max(distinct.values()) == 6  # the pathways really split, and still one call


def test_batched_equals_unbatched(small):
    """Objects prompted on different frames (no joint prompt memory) track together as alone,
    with padded memory banks of different lengths."""
    clip = moving_square_clip(n=10)
    tree = TreeConfig(iou_threshold=0.52)
    a = ("add_points", 0, 1, [(30, 20)], [1])
    b = ("add_points", 4, 2, [(70, 50)], [1])
    together, _ = track(small, clip, [a, b], tree)
    alone = {1: track(small, clip, [a], tree)[0], 2: track(small, clip, [b], tree)[0]}
    for t in range(10):
        assert together[t].obj_ids == ([1, 2] if t >= 4 else [1])
        for i, o in enumerate(together[t].obj_ids):
            assert torch.equal(together[t].masks[i], alone[o][t].masks[0]), (t, o)
            torch.testing.assert_close(together[t].logits[i], alone[o][t].logits[0], atol=1e-4, rtol=1e-4)


def test_streaming_is_exact_and_max_lag_bounds_it(small, monkeypatch):
    clip = moving_square_clip(n=12, h=48, w=64, size=12)

    def streamed(max_lag=None):
        tracker = Tracker(small, TreeConfig(), max_lag=max_lag)
        tracker.add_points(0, 1, [(12, 16)], [1])
        step, out, lag = {}, {}, {}
        for r in tracker.propagate(TensorFrames(clip), return_logits=True, on_step=lambda t: step.update(t=t)):
            out[r.frame_idx], lag[r.frame_idx] = r, step["t"] - r.frame_idx
        return out, lag

    exact, lag = streamed()
    assert sorted(exact) == list(range(12))
    assert max(lag.values()) == 2  # frames wait for the pathways to agree ...
    assert all(t + lag[t] < 11 for t in range(9))  # ... and come out before the end
    with monkeypatch.context() as mp:  # nothing commits early: the final best pathway, read back
        mp.setattr(TreeStep, "_commit", lambda self, obj: None)
        offline, offline_lag = streamed()
    assert all(offline_lag[t] == 11 - t for t in range(1, 12))  # (the prompt frame is out at once)
    assert_same(exact, offline, range(12))
    _, forced = streamed(max_lag=1)
    assert max(forced.values()) == 1


@pytest.mark.parametrize("tree", [TreeConfig(), TreeConfig.sam3()], ids=["P3", "sam3"])
def test_state_size_does_not_grow_with_length(small, tree):
    frames = moving_square_clip(n=40, h=48, w=64, size=12)
    tracker = Tracker(small, tree)
    tracker.add_points(0, 1, [(12, 16)], [1])
    sizes = {}
    for _ in tracker.propagate(TensorFrames(frames), on_step=lambda t: sizes.update({t: tracker.state_nbytes()})):
        pass
    # full after the pointer budget (16 frames): memories and pointers are replaced, not added
    assert sizes[5] < sizes[20] and sizes[20] == sizes[39]


@pytest.mark.parametrize("tree", [TreeConfig(), TreeConfig.sam3()], ids=["P3", "sam3"])
def test_chunked_and_resumed_equals_uninterrupted(small, tree):
    clip = moving_square_clip(n=12)
    prompt = [("add_points", 0, 1, [(30, 20)], [1]), ("add_box", 0, 2, (40, 30, 80, 60))]
    whole, _ = track(small, clip, prompt, tree)
    # a first chunk under 16 frames needs the shot's length (pointer positions, as in SAM 2)
    first, tracker = track(small, clip[:6], prompt, tree, shot_length=len(clip))
    state = tracker.state()
    second, _ = track(small, clip[6:], [], tracker=Tracker.resume(small, state), first_index=6)
    assert sorted(second) == list(range(6, 12))
    assert_same(second, whole, range(6, 12))
    # frames out before the chunk's end are final (with P=3, the last two wait for the pathways
    # to agree: this model's lag, see the streaming test; they come from the chunk's best pathway)
    assert sorted(first) == list(range(6))
    assert_same(first, whole, range(6 if tree.pathways == 1 else 4))
    # a pickled state (as ComfyUI may cache it) resumes the same way
    thawed, _ = track(small, clip[6:], [], tracker=Tracker.resume(small, pickle.loads(pickle.dumps(state))),
                      first_index=6)
    assert_same(thawed, whole, range(6, 12))
    # the state says which model it belongs to
    sam2_state = replace(state, variant="sam2.1_hiera_tiny")
    with pytest.raises(ValueError, match="tracked with sam2.1_hiera_tiny at 112px, not sam3 at 112px"):
        Tracker.resume(small, sam2_state)


def test_backward_and_both_directions(small):
    clip = moving_square_clip(n=12)
    prompt = [("add_points", 6, 1, [(40, 20)], [1])]
    both, _ = track(small, clip, prompt, direction="both")
    forward, _ = track(small, clip, prompt, direction="forward")
    backward, _ = track(small, clip, prompt, direction="backward")
    assert sorted(both) == list(range(12))
    assert sorted(forward) == list(range(6, 12)) and sorted(backward) == list(range(7))
    assert_same(both, forward, range(6, 12))
    assert_same(both, backward, range(6))
    assert all(backward[t].masks.shape == (1, 72, 96) for t in backward)


@pytest.mark.parametrize("tree", [TreeConfig(), TreeConfig.sam3()], ids=["P3", "sam3"])
def test_corrections_and_new_objects_on_a_later_chunk(small, tree):
    """A mask correction takes effect on its frame (nothing before it changes); given on a
    resumed chunk with a new object, it gives what one run with all the prompts gives."""
    clip = moving_square_clip(n=10)
    mask = torch.zeros(72, 96, dtype=torch.bool)
    mask[20:50, 30:70] = True
    start = ("add_points", 0, 1, [(30, 20)], [1])
    later = [("add_mask", 5, 1, mask), ("add_points", 6, 3, [(70, 50)], [1])]
    plain, _ = track(small, clip, [start], tree)
    whole, _ = track(small, clip, [start, *later], tree)
    assert_same(whole, plain, range(5))
    iou = (whole[5].masks[0] & mask).sum() / (whole[5].masks[0] | mask).sum()
    assert iou > 0.9  # the prompt's mask is the output on its frame (up to low-res resampling)
    assert whole[6].obj_ids == [1, 3]
    _, tracker = track(small, clip[:4], [start], tree, shot_length=len(clip))
    rest, _ = track(small, clip[4:], later, tracker=Tracker.resume(small, tracker.state()), first_index=4)
    assert_same(rest, whole, range(5, 10))


# --------------------------------------------------------------------------- the product's doors

W, H, N = 72, 56, 5
POINT = (24, 24)


@pytest.fixture(scope="module")
def shot(tmp_path_factory):
    """A reduced sam3.pt in Meta's layout (presence shifted: see PRESENCE_SHIFT), a
    5-frame mp4, and the library's masks on its decoded frames: tree on and tree off."""
    d = tmp_path_factory.mktemp("sam3_shot")
    net = reduced(shift=PRESENCE_SHIFT)
    torch.save(official_layout(net), d / "sam3.pt")
    video = write_mp4(d / "shot.mp4", list(moving_square_clip(n=N, h=H, w=W).numpy()))
    model = LoadedModel.from_net(net, "sam3", device="cpu")
    source = open_frames(video)
    masks = {}
    for name, tree in (("tree", TreeConfig()), ("sam3", TreeConfig.sam3()), ("sam2", TreeConfig.sam2())):
        tracker = Tracker(model, tree)
        tracker.add_points(0, 1, [POINT], [1])
        masks[name] = {r.frame_idx: r.masks[0].numpy() for r in tracker.propagate(source)}
    # the tree-off switch must pick SAM 3's own rules: on this model they give other masks than SAM 2's
    assert any(not np.array_equal(masks["sam3"][t], masks["sam2"][t]) for t in range(N))
    return type("Shot", (), {"dir": d, "checkpoint": d / "sam3.pt", "video": video, "masks": masks})


@pytest.fixture
def reduced_loading(monkeypatch):
    """`load_model` as the CLI and the batch command call it, loading the reduced tracker."""
    loads = []

    def with_reduced(*args, **kw):
        loads.append(args[0])
        return load_reduced(*args, **kw)

    monkeypatch.setattr(loading, "load_model", with_reduced)
    return loads


def mattes(folder, pattern):
    files = sorted(folder.glob(pattern))
    return [np.asarray(Image.open(p)) for p in files], [p.name for p in files]


def assert_mattes(images, want):
    assert len(images) == len(want)
    for t, img in enumerate(images):
        assert img.dtype == np.uint8 and set(np.unique(img)) <= {0, 255}
        assert np.array_equal(img > 127, want[t]), f"frame {t}"


def test_cli_tracks_with_sam3(shot, reduced_loading, tmp_path, capsys):
    out = tmp_path / "out"
    rc = cli.main(["track", str(shot.video), "--checkpoint", str(shot.checkpoint), "--out", str(out),
                   "--point", f"{POINT[0]},{POINT[1]}", "--device", "cpu", "--quiet", "--json"])
    stdout, err = capsys.readouterr()
    assert rc == 0, err
    assert reduced_loading == [str(shot.checkpoint)]
    images, names = mattes(out / "1", "*.png")
    assert names == [f"{t:05d}.png" for t in range(N)] and images[0].shape == (H, W)
    assert_mattes(images, shot.masks["tree"])
    assert (out / "preview.mp4").is_file()
    assert json.loads(stdout.splitlines()[-1])["summary"]["frames"] == N


@pytest.mark.parametrize("switch", ["--sam2", "--no-tree"])
def test_tree_off_switch_is_sam3s_own_tracker(shot, reduced_loading, tmp_path, capsys, switch):
    out = tmp_path / "out"
    rc = cli.main(["track", str(shot.video), "--checkpoint", str(shot.checkpoint), "--out", str(out),
                   "--point", f"{POINT[0]},{POINT[1]}", "--device", "cpu", "--quiet", "--no-preview", switch])
    assert rc == 0, capsys.readouterr().err
    assert_mattes(mattes(out / "1", "*.png")[0], shot.masks["sam3"])


def test_batch_runs_sam3_jobs(shot, reduced_loading, tmp_path, capsys):
    import yaml

    for name in ("sam3.pt", "shot.mp4"):
        (tmp_path / name).symlink_to(shot.dir / name)
    prompts = [{"object": 1, "frame": 0, "point": list(POINT)}]
    job = {"defaults": {"checkpoint": "sam3.pt", "device": "cpu", "no_preview": True},
           "shots": [{"name": "tree", "input": "shot.mp4", "output": "out/tree", "prompts": prompts},
                     {"name": "off", "input": "shot.mp4", "output": "out/off", "no-tree": True, "prompts": prompts}]}
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(job))
    rc = cli.main(["batch", str(tmp_path / "job.yaml"), "--json"])
    out, err = capsys.readouterr()
    assert rc == 0, err
    events = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert sorted(e["shot"] for e in events if e.get("event") == "done") == ["off", "tree"]
    assert reduced_loading == [str(tmp_path / "sam3.pt")]  # one load for both shots
    assert_mattes(mattes(tmp_path / "out/tree/1", "*.png")[0], shot.masks["tree"])
    assert_mattes(mattes(tmp_path / "out/off/1", "*.png")[0], shot.masks["sam3"])


def test_nodes_stream_a_shot_into_mattes(comfy, shot, monkeypatch):
    """Model Loader (sam3.pt in models/sam3) -> Load Shot -> Track (streamed, spilled) ->
    Save Mattes: the library's masks, written with the frames' numbers."""
    import folder_paths

    (comfy.models / "sam3").mkdir(exist_ok=True)
    (comfy.models / "sam3" / "sam3.pt").write_bytes(shot.checkpoint.read_bytes())
    inputs = Path(folder_paths.get_input_directory())
    inputs.mkdir(parents=True, exist_ok=True)
    (inputs / "sam3_shot.mp4").write_bytes(shot.video.read_bytes())
    use_small_models(monkeypatch, sam3_sizes=REDUCED)
    (handle,), _ = run(comfy, "SAM2LongModelLoader", ckpt_name="sam3.pt", device="cpu")
    (prompts,), _ = run(comfy, "SAM2LongPrompt", object_id=1,
                        positive_coords=json.dumps([{"x": POINT[0], "y": POINT[1]}]))
    (loaded, *_), _ = run(comfy, "SAM2LongLoadShot", video="sam3_shot.mp4", first_frame=1)
    (spilled, first, state), _ = run(comfy, "SAM2LongTrack", model=handle, shot=loaded, prompts=prompts)
    assert (spilled.num_frames, spilled.height, spilled.width, spilled.obj_ids) == (N - 1, H, W, (1,))
    assert first.shape == (1, H, W) and state.next_index == N
    (folder,), _ = run(comfy, "SAM2LongSaveMattes", track=spilled, folder="sam3_shot")
    images, names = mattes(Path(folder) / "1", "*.png")
    assert names == [f"matte.{t:04d}.png" for t in range(1, N)]  # the frames' numbers in the video
    # the range starts at frame 1: the library tracking frames 1.. of the same file
    model = handle.acquire()
    tracker = Tracker(model, TreeConfig())
    tracker.add_points(1, 1, [POINT], [1])
    want = [r.masks[0].numpy() for r in tracker.propagate(open_frames(shot.video), start=1)]
    assert_mattes(images, want)
