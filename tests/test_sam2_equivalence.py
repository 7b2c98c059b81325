"""With the tree switched off, the engine is SAM 2: the same masks as the `sam2`
package's own SAM2VideoPredictor, run as its users run it (`init_state(video_path=
folder)`, its own JPEG loader), on the same weights, files and prompts.

Both sides run under one pinned attention kernel (torch's CPU flash kernel, which is
also what torch picks by default here; tests/test_attention.py checks that). Inputs
are bit-equal (tests/test_resize.py). With one object the logits are bit-equal too.
With several, SAM 2's predictor runs the networks once per object and we run them
once per frame for all objects, so sums differ in the last bits (measured: up to
4e-7): logits agree to LOGIT_TOL (tests/equivalence.py), and a mask pixel may differ only where the
reference logit is within LOGIT_TOL of 0."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn.attention import SDPBackend, sdpa_kernel

from sam2long.app import cli
from sam2long.app import run as app_run
from sam2long.media.frames import open_frames
from sam2long.models.model import LoadedModel
from sam2long.engine.tree import TreeConfig

from conftest import MEDIA, moving_square_clip, small_net
from equivalence import assert_same
from equivalence import our_run as track_folder

PREDICTOR = "sam2.sam2_video_predictor.SAM2VideoPredictor"


def write_jpegs(frames, folder):
    """Frames as a folder SAM 2's loader reads: <index>.jpg."""
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f.numpy() if torch.is_tensor(f) else f).save(folder / f"{i:05d}.jpg", quality=90)
    return folder


def reference_run(variant, video_path, prompts, reverse=False, start=None):
    """SAM 2's predictor on `video_path`, loading the frames itself."""
    net = small_net(variant)
    predictor = small_net(variant, target=PREDICTOR)
    predictor.load_state_dict(net.state_dict())
    model = LoadedModel.from_net(net, variant, device="cpu")
    with torch.inference_mode(), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        state = predictor.init_state(video_path=str(video_path))
        for kind, frame, obj, value in prompts:
            if kind == "points":
                pts, labels = value
                predictor.add_new_points_or_box(state, frame, obj, points=pts, labels=labels)
            elif kind == "box":
                predictor.add_new_points_or_box(state, frame, obj, box=value)
            else:
                predictor.add_new_mask(state, frame, obj, value)
        out = {}
        for t, obj_ids, masks in predictor.propagate_in_video(state, start_frame_idx=start, reverse=reverse):
            out[t] = {o: masks[i, 0].clone() for i, o in enumerate(obj_ids)}
    return model, out


def our_run(model, video_path, prompts, direction="forward"):
    return track_folder(model, video_path, prompts, TreeConfig.sam2(), direction)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory, clip):
    return write_jpegs(clip, tmp_path_factory.mktemp("clip") / "frames")


@pytest.mark.parametrize("variant", ["sam2.1_hiera_tiny", "sam2_hiera_tiny"])
def test_tree_off_equals_sam2_predictor_points(variant, clip_folder):
    # Two objects prompted on the same frame (SAM 2 tracks both from there).
    prompts = [
        ("points", 0, 1, ([(30, 20)], [1])),
        ("points", 0, 2, ([(70, 50), (10, 60)], [1, 0])),
    ]
    model, ref = reference_run(variant, clip_folder, prompts)
    ours = our_run(model, clip_folder, prompts)
    assert_same(ours, ref, range(24))


def test_tree_off_equals_sam2_predictor_box_and_mask(clip_folder):
    mask = torch.zeros(72, 96, dtype=torch.bool)
    mask[10:30, 5:25] = True
    prompts = [("box", 3, 1, (4, 8, 28, 32)), ("mask", 3, 5, mask)]
    model, ref = reference_run("sam2.1_hiera_tiny", clip_folder, prompts)
    ours = our_run(model, clip_folder, prompts)
    assert_same(ours, ref, range(3, 24))


def test_tree_off_equals_sam2_predictor_reverse(clip_folder):
    prompts = [("points", 20, 1, ([(60, 20)], [1]))]
    model, ref = reference_run("sam2.1_hiera_tiny", clip_folder, prompts, reverse=True, start=20)
    ours = our_run(model, clip_folder, prompts, direction="backward")
    assert_same(ours, ref, range(0, 21), exact=True)


def test_tree_off_equals_sam2_predictor_short_clip(tmp_path):
    # 9 frames: SAM 2 positions object pointers by distance / (9 - 1), not / 15.
    folder = write_jpegs(moving_square_clip(n=9, seed=3), tmp_path / "short")
    prompts = [("box", 0, 1, (4, 8, 28, 32))]
    model, ref = reference_run("sam2.1_hiera_tiny", folder, prompts)
    ours = our_run(model, folder, prompts)
    assert_same(ours, ref, range(9), exact=True)


def test_tree_off_equals_sam2_predictor_on_real_frames(tmp_path):
    # Real 960x540 frames, downscaled to the model's 128 px (PIL's widened kernel).
    source = open_frames(MEDIA / "bedroom.mp4")
    folder = write_jpegs([f for _, f in source.frames(range(0, 36, 3))], tmp_path / "bedroom")
    prompts = [("points", 0, 1, ([(480, 300)], [1])), ("box", 0, 2, (100, 80, 400, 500))]
    model, ref = reference_run("sam2.1_hiera_tiny", folder, prompts)
    ours = our_run(model, folder, prompts)
    assert_same(ours, ref, range(12))


def test_cli_sam2_masks_equal_sam2_predictor(clip_folder, tmp_path, monkeypatch):
    # The command line on the same folder (`--sam2`): the mask PNGs are SAM 2's masks.
    model, ref = reference_run("sam2.1_hiera_tiny", clip_folder, [("points", 0, 1, ([(30, 20)], [1]))])
    monkeypatch.setattr(app_run, "load_model_for", lambda settings, progress=False: model)
    out = tmp_path / "out"
    with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
        rc = cli.main(["track", str(clip_folder), "--checkpoint", "x", "--out", str(out), "--sam2",
                       "--point", "30,20", "--quiet", "--no-preview"])
    assert rc == 0
    for t in range(24):
        written = np.asarray(Image.open(out / "1" / f"{t:05d}.png")) > 0
        assert np.array_equal(written, (ref[t][1] > 0).numpy()), f"frame {t}: masks differ"
