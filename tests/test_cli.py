"""The command line, run in-process through `sam2long.app.cli.main(argv)`.

A tiny synthetic clip and a random-weight SAM 2.1 tiny network at 128 px keep the
end-to-end runs to a few seconds on a CPU. Random weights make arbitrary masks,
so these tests check the files and the plumbing, not segmentation quality.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_checkpoint, write_mp4
from PIL import Image

from sam2long.app import cli, outputs
from sam2long.app import run as app_run
from sam2long.media.frames import open_frames

W, H, N = 72, 56, 5
SIZE = 128




def clip_frame(i):
    img = np.full((H, W, 3), 30, np.uint8)
    x = 10 + 4 * i
    img[15:35, x:x + 18] = (230, 60, 40)  # a red block moving right
    img[40:50, 5:60] = (40, 200, 90)
    return img


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_mp4(tmp_path_factory.mktemp("clip") / "shot.mp4", [clip_frame(i) for i in range(N)])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("frames") / "shot"
    d.mkdir()
    for i in range(N):
        Image.fromarray(clip_frame(i)).save(d / f"shot.{i + 1001}.png")
    return d


@pytest.fixture(scope="module")
def net():
    from sam2long.models.model import build_net

    torch.manual_seed(0)
    return build_net("sam2.1_hiera_tiny", image_size=SIZE)


@pytest.fixture(scope="module")
def checkpoint(net, tmp_path_factory):
    return save_checkpoint(net, tmp_path_factory.mktemp("ckpt") / "random_tiny.pt")


@pytest.fixture
def in_memory_model(net, monkeypatch):
    """Skip reading a checkpoint from disk: hand the CLI the random network directly."""
    from sam2long.models.model import LoadedModel

    calls = []

    def load(settings, progress=False):
        calls.append(settings.checkpoint)
        return LoadedModel.from_net(net, "sam2.1_hiera_tiny", device="cpu")

    monkeypatch.setattr(app_run, "load_model_for", load)
    return calls


def run(argv, capsys):
    rc = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def pngs(d: Path):
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*.png"))


def mask_file(path: Path) -> tuple[np.ndarray, Path]:
    """A mask prompt on the red block of frame 2, saved as a PNG."""
    mask = np.zeros((H, W), np.uint8)
    mask[15:35, 22:40] = 255
    Image.fromarray(mask).save(path)
    return mask, path


def leftovers(d: Path):
    return [p.name for p in d.rglob("*") if p.name.endswith(".tmp")]


# --- argument handling (no model needed) ------------------------------------------------


def test_help_documents_prompt_order(capsys):
    rc, out, _ = run(["track", "--help"], capsys)
    assert rc == 0
    assert "FOLLOW" in out and "--object 2 --frame 40" in out


def test_frame_and_object_apply_to_following_prompts(tmp_path):
    mask, _ = mask_file(tmp_path / "m.png")
    args = cli.build_parser().parse_args(
        ["track", "v.mp4", "--checkpoint", "c", "--out", "o",
         "--point", "5,6", "--box", "1,2,30,40",
         "--object", "2", "--frame", "4", "--point", "7,8,0", "--point", "9,9",
         "--frame", "6", "--mask", str(tmp_path / "m.png")])
    prompts = cli.prompts_from_events(args.events)  # the library's PromptSet
    assert {(f, o) for o, per in prompts.by_object.items() for f in per} == {(0, 1), (4, 2), (6, 2)}
    p = prompts.get(0, 1)
    assert p.points == [(5.0, 6.0)] and p.box == (1.0, 2.0, 30.0, 40.0)
    p = prompts.get(4, 2)
    assert p.points == [(7.0, 8.0), (9.0, 9.0)] and p.labels == [0, 1]
    p = prompts.get(6, 2)
    assert np.array_equal(p.mask, mask > 0) and p.points == [] and p.mask_name.endswith("m.png")
    # a second parse starts from a clean slate
    again = cli.build_parser().parse_args(["track", "v.mp4", "--checkpoint", "c", "--out", "o", "--point", "1,1"])
    again = cli.prompts_from_events(again.events)
    assert list(again.by_object) == [1] and again.get(0, 1).points == [(1.0, 1.0)] and again.get(0, 1).labels == [1]


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--point", "500,10"], "outside the 72x56 frame"),
        (["--frame", "99", "--point", "5,5"], "frame 99 is not in this shot: its frames are 0-4"),
        (["--box", "5,5,100,20"], "outside"),
        ([], "no prompts"),
        (["--point", "5,5", "--start", "3"], "outside the tracked range"),
        (["--point", "5,5", "--end", "40"], "--end"),
        (["--point", "5,5", "--box", "1,1,9,9", "--box", "2,2,8,8"], "two --box"),
        (["--point", "72.5,5"], "0 <= x <= 72"),  # both frame edges are inside, beyond is not
        (["--box", "0,0,72,56.5"], "outside the 72x56 frame"),
    ],
)
def test_bad_prompts_exit_2_before_writing(clip, tmp_path, capsys, extra, message, in_memory_model):
    out = tmp_path / "out"
    rc, _, err = run(["track", clip, "--checkpoint", "x", "--out", out, *extra], capsys)
    assert rc == 2
    assert message in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
    assert in_memory_model == []  # refused before the model was even loaded


def test_syntax_errors_exit_2(clip, tmp_path, capsys):
    rc, _, err = run(["track", clip, "--checkpoint", "x", "--out", tmp_path / "o", "--point", "5"], capsys)
    assert rc == 2 and "--point" in err and len(err.strip().splitlines()) == 1
    rc, _, err = run(["track", clip, "--checkpoint", "x", "--out", tmp_path / "o", "--point", "5,5,7"], capsys)
    assert rc == 2 and "label" in err
    rc, _, err = run(["track", clip, "--out", tmp_path / "o", "--point", "5,5"], capsys)
    assert rc == 2 and "--checkpoint" in err


def test_missing_video_and_bad_mask(clip, tmp_path, capsys, in_memory_model):
    out = tmp_path / "out"
    rc, _, err = run(["track", tmp_path / "nope.mp4", "--checkpoint", "x", "--out", out, "--point", "1,1"], capsys)
    assert rc == 2 and "does not exist" in err and not out.exists()
    small = tmp_path / "small.png"
    Image.fromarray(np.full((10, 10), 255, np.uint8)).save(small)
    rc, _, err = run(["track", clip, "--checkpoint", "x", "--out", out, "--mask", small], capsys)
    assert rc == 2 and "10x10" in err and "72x56" in err and not out.exists()
    rc, _, err = run(["track", clip, "--checkpoint", "x", "--out", out, "--mask", tmp_path / "none.png"], capsys)
    assert rc == 2 and "does not exist" in err


@pytest.mark.parametrize(
    "extra,words",
    [
        (["--point", "1,2,inf"], ["--point", "finite"]),
        (["--point", "1,2,nan"], ["--point", "finite"]),
        (["--point", "inf,2"], ["--point", "finite"]),
        (["--point", "1e999,2"], ["--point", "finite"]),
        (["--box", "0,0,nan,5"], ["--box", "finite"]),
        (["--box", "0,-inf,5,5"], ["--box", "finite"]),
        (["--point", "1,2,2"], ["label must be 1"]),
        (["--point", "1,2,-1"], ["label must be 1"]),
        (["--point", "1,2,0.5"], ["label must be 1"]),
        (["--point", "5,5", "--iou-threshold", "nan"], ["--iou-threshold", "finite"]),
        (["--point", "5,5", "--uncertainty", "inf"], ["--uncertainty", "finite"]),
        (["--point", "5,5", "--iou-threshold", "5"], ["iou_threshold", "--iou-threshold"]),
        (["--point", "5,5", "--uncertainty", "-1"], ["uncertainty", "--uncertainty"]),
    ],
)
def test_non_finite_and_out_of_range_numbers_exit_2(clip, tmp_path, capsys, extra, words, in_memory_model):
    out = tmp_path / "out"
    rc, _, err = run(["track", clip, "--checkpoint", "x", "--out", out, *extra], capsys)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in err
    assert not out.exists() and in_memory_model == []


def test_mask_stands_alone(clip, tmp_path, capsys, in_memory_model):
    _, mpath = mask_file(tmp_path / "m.png")
    empty = tmp_path / "empty.png"
    Image.fromarray(np.zeros((H, W), np.uint8)).save(empty)
    out = tmp_path / "out"
    for extra, message in [(["--mask", mpath, "--point", "5,5"], "a mask prompt stands alone"),
                           (["--point", "5,5", "--mask", mpath], "a mask prompt stands alone"),
                           (["--mask", mpath, "--mask", mpath], "two --mask"),
                           (["--mask", empty], "is empty")]:
        rc, _, err = run(["track", clip, "--checkpoint", "x", "--out", out, *extra], capsys)
        assert rc == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert "empty.png" in err  # the mask's file is named
    assert not out.exists() and in_memory_model == []


def test_edge_coordinates_are_inside(clip, tmp_path, capsys, in_memory_model):
    # SAM 2 scales points by x / W, y / H: the far edges (x = W, y = H) are valid positions.
    out = tmp_path / "out"
    rc, _, err = run(["track", clip, "--checkpoint", "x", "--out", out, "--quiet", "--no-preview",
                      "--point", "72,56", "--box", "0,0,72,56", "--end", "1"], capsys)
    assert rc == 0, err
    assert pngs(out) == ["1/00000.png", "1/00001.png"]


def test_max_lag_zero_refused_by_the_parser(capsys):
    rc, _, err = run(["track", "v.mp4", "--checkpoint", "x", "--out", "o", "--point", "1,1", "--max-lag", "0"],
                     capsys)
    assert rc == 2 and "--max-lag" in err and "1 or more" in err and "leave --max-lag out" in err
    assert len(err.strip().splitlines()) == 1
    args = cli.build_parser().parse_args(["track", "v.mp4", "--checkpoint", "x", "--out", "o", "--max-lag", "1"])
    assert args.max_lag == 1


def test_help_says_one_pathway_is_not_plain_sam2(capsys):
    rc, out, _ = run(["track", "--help"], capsys)
    assert rc == 0
    flat = " ".join(out.split())
    assert "memory selection and key modulation (plain SAM 2 is --sam2)" in flat
    assert "single greedy history" not in flat


def test_tree_defaults_are_the_library_defaults():
    from sam2long.engine.tree import TreeConfig

    args = cli.build_parser().parse_args(["track", "v.mp4", "--checkpoint", "x", "--out", "o"])
    paper = TreeConfig()
    assert (args.pathways, args.iou_threshold, args.uncertainty) == (
        paper.pathways, paper.iou_threshold, paper.uncertainty)


@pytest.mark.parametrize("switch", ["--sam2", "--no-tree"])
def test_tree_off_is_the_models_own_tracker(net, switch, capsys):
    from sam2long.engine.tree import TreeConfig
    from sam2long.models.model import LoadedModel
    from sam2long.prompts import PromptSet

    args = cli.build_parser().parse_args(["track", "v.mp4", "--checkpoint", "x", "--out", "o", switch])
    model = LoadedModel.from_net(net, "sam2.1_hiera_tiny", device="cpu")
    assert app_run.build_tracker(model, cli.job_from_args(args).tree, PromptSet()).tree == TreeConfig.sam2()
    rc, out, _ = run(["track", "--help"], capsys)
    flat = " ".join(out.split())
    assert "--sam2, --no-tree" in flat
    assert "plain SAM 2 for a SAM 2 checkpoint, SAM 3's tracker with its own memory-frame filter for SAM 3" in flat


@pytest.mark.parametrize("device", ["cuda", "mps"])
def test_absent_device_exit_2(clip, tmp_path, capsys, in_memory_model, monkeypatch, device):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    out = tmp_path / "out"
    rc, _, err = run(["track", clip, "--checkpoint", "x", "--out", out, "--point", "5,5", "--device", device],
                     capsys)
    assert rc == 2, err
    assert f"--device {device}" in err and "--device cpu" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists() and in_memory_model == []


def test_run_track_with_a_loaded_model(net, clip, tmp_path, capsys):
    """The seam for callers that load once and track many shots: no checkpoint is read."""
    from sam2long.models.model import LoadedModel

    model = LoadedModel.from_net(net, "sam2.1_hiera_tiny", device="cpu")
    out = tmp_path / "out"
    args = cli.build_parser().parse_args(["track", str(clip), "--checkpoint", str(tmp_path / "absent.pt"),
                                          "--out", str(out), "--quiet", "--no-preview", "--point", "20,25"])
    assert cli.track_command(args, model=model) == 0, capsys.readouterr().err
    assert pngs(out) == [f"1/{f:05d}.png" for f in range(N)]


def test_missing_checkpoint_exit_2(clip, tmp_path, capsys):
    out = tmp_path / "out"
    rc, _, err = run(["track", clip, "--checkpoint", tmp_path / "missing.pt", "--out", out, "--point", "5,5"],
                     capsys)
    assert rc == 2
    assert "missing.pt" in err and "Traceback" not in err
    assert not out.exists()


def test_demo_clip_and_prompt():
    src = open_frames(cli.DEMO_VIDEO)
    assert (src.width, src.height, len(src)) == (480, 270, 60)
    assert cli.DEMO_VIDEO.stat().st_size < 3_000_000
    for x, y in cli.DEMO_POINTS:
        assert 0 <= x < src.width and 0 <= y < src.height
    args = cli.demo_args(cli.build_parser().parse_args(["demo"]))
    assert args.checkpoint == "sam2.1_hiera_tiny" and args.out == "sam2long_demo"
    assert cli.prompts_from_events(args.events).get(0, 1).labels == [1, 1]


# --- end to end -----------------------------------------------------------------------


def check_outputs(out: Path, objects, frames, padding=5):
    names = pngs(out)
    assert names == sorted(f"{o}/{f:0{padding}d}.png" for o in objects for f in frames)
    for name in names:
        a = np.asarray(Image.open(out / name))
        assert a.shape == (H, W) and a.dtype == np.uint8
        assert set(np.unique(a).tolist()) <= {0, 255}
    preview = open_frames(out / "preview.mp4")
    assert (preview.width, preview.height) == (W, H) or (preview.width, preview.height) == (W + W % 2, H + H % 2)
    assert len(preview) == len(frames)
    assert sum(1 for _ in preview.frames(range(len(preview)))) == len(frames)
    assert leftovers(out) == []


def test_track_real_checkpoint_json(clip, checkpoint, tmp_path, capsys):
    out = tmp_path / "out"
    rc, stdout, err = run(["track", clip, "--checkpoint", checkpoint, "--image-size", SIZE, "--device", "cpu",
                           "--out", out, "--point", "20,25", "--point", "60,45,0", "--json"], capsys)
    assert rc == 0, err
    check_outputs(out, [1], range(N))
    lines = [json.loads(line) for line in stdout.strip().splitlines()]
    assert [d["frame"] for d in lines[:-1]] == list(range(N))
    for d in lines[:-1]:
        assert set(d["objects"]) == {"1"}
        assert isinstance(d["objects"]["1"]["area"], int) and isinstance(d["objects"]["1"]["score"], float)
    summary = lines[-1]["summary"]
    assert summary["frames"] == N and summary["objects"] == [1] and summary["preview"].endswith("preview.mp4")


def test_two_objects_late_start_get_empty_masks(folder, tmp_path, capsys, in_memory_model):
    out = tmp_path / "out"
    rc, _, err = run(["track", folder, "--checkpoint", "random", "--out", out, "--quiet", "--pathways", "2",
                      "--box", "8,12,32,38",
                      "--object", "2", "--frame", "1003", "--point", "30,45"], capsys)
    assert rc == 0, err
    # a numbered sequence keeps its frame numbers and padding: shot.1001.png -> 1/1001.png
    check_outputs(out, [1, 2], range(1001, 1001 + N), padding=4)
    for f in (1001, 1002):  # object 2 starts on frame 1003
        assert not np.asarray(Image.open(out / "2" / f"{f}.png")).any()


def test_both_directions_and_mask_prompt(clip, tmp_path, capsys, in_memory_model):
    mask, mpath = mask_file(tmp_path / "m.png")
    out = tmp_path / "out"
    rc, stdout, err = run(["track", clip, "--checkpoint", "random", "--out", out, "--both", "--json",
                           "--frame", "2", "--mask", mpath, "--start", "1", "--end", "4"], capsys)
    assert rc == 0, err
    check_outputs(out, [1], range(1, 5))
    frames = [json.loads(line).get("frame") for line in stdout.strip().splitlines()[:-1]]
    assert sorted(frames) == [1, 2, 3, 4]
    # the prompt frame's mask is the given mask (up to resampling to the model's size and back)
    got = np.asarray(Image.open(out / "1" / "00002.png")) > 0
    assert (got & (mask > 0)).sum() / (got | (mask > 0)).sum() > 0.8


def test_reverse(clip, tmp_path, capsys, in_memory_model):
    out = tmp_path / "out"
    rc, _, err = run(["track", clip, "--checkpoint", "random", "--out", out, "--reverse", "--quiet",
                      "--frame", "3", "--point", "30,25"], capsys)
    assert rc == 0, err
    check_outputs(out, [1], range(0, 4))


def test_interrupt_leaves_only_complete_files(clip, tmp_path, capsys, in_memory_model, monkeypatch):
    import os

    real_replace = os.replace
    calls = {"n": 0}

    def replace(src, dst):
        calls["n"] += 1
        if calls["n"] == 4:  # the 4th PNG is written to its temp name, then Ctrl-C
            raise KeyboardInterrupt
        return real_replace(src, dst)

    import sam2long.media.writers as writers

    monkeypatch.setattr(writers.os, "replace", replace)
    out = tmp_path / "out"
    rc, _, err = run(["track", clip, "--checkpoint", "random", "--out", out, "--quiet", "--point", "20,25"], capsys)
    assert rc == 130
    assert "interrupted" in err and "Traceback" not in err
    assert leftovers(out) == [] and list(out.rglob("*.tmp")) == []
    assert pngs(out) == [f"1/{f:05d}.png" for f in range(3)]
    for name in pngs(out):
        Image.open(out / name).load()  # complete, decodable
    assert not (out / "preview.mp4").exists()


def test_interrupt_from_progress_step(clip, tmp_path, capsys, in_memory_model, monkeypatch):
    class Bar:
        n = 0

        def update(self, k):
            Bar.n += 1
            if Bar.n == 3:
                raise KeyboardInterrupt

        def close(self):
            pass

    monkeypatch.setattr(outputs, "progress_bar", lambda total, quiet: Bar())
    out = tmp_path / "out"
    rc, _, err = run(["track", clip, "--checkpoint", "random", "--out", out, "--point", "20,25", "--both"], capsys)
    assert rc == 130 and "interrupted" in err
    assert leftovers(out) == []
    for name in pngs(out):
        Image.open(out / name).load()
    assert not (out / "preview.mp4").exists()


def test_cryptomatte_from_the_command_line_decodes_to_the_soft_mattes(folder, tmp_path, capsys, in_memory_model):
    """--format cryptomatte: one EXR per plate frame holding both objects by name, which the
    PyPI decoders read back as the soft PNG16 mattes of the same run; --names only with it."""
    pytest.importorskip("OpenImageIO")
    from test_nodes_cryptomatte import _check_cryptomatte, _png16

    prompts = ["--box", "8,12,32,38", "--object", "2", "--frame", "1003", "--point", "30,45"]
    crypto, soft = tmp_path / "crypto", tmp_path / "soft"
    base = ["track", folder, "--checkpoint", "random", "--quiet", "--no-preview", *prompts]
    rc, _, err = run([*base, "--out", crypto, "--format", "cryptomatte", "--names", "2=ball"], capsys)
    assert rc == 0, err
    rc, _, err = run([*base, "--out", soft, "--format", "png16", "--soft"], capsys)
    assert rc == 0, err
    assert sorted(p.name for p in crypto.iterdir()) == [f"{f}.exr" for f in range(1001, 1001 + N)]
    for f in range(1001, 1001 + N):
        _check_cryptomatte(crypto / f"{f}.exr", {"object_1": _png16(soft / "1" / f"{f}.png"),
                                                 "ball": _png16(soft / "2" / f"{f}.png")},
                           tol=0.5 / 65535 + 1e-6)  # the PNG16's rounding
    rc, _, err = run([*base, "--out", tmp_path / "bad", "--names", "2=ball"], capsys)
    assert rc == 2 and "--names goes with --format cryptomatte" in err and not (tmp_path / "bad").exists()
