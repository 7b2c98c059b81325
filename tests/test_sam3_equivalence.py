"""With the tree off, the engine on SAM 3's tracker is the `sam3` package's own
`Sam3TrackerPredictor`: the same masks, run as its users run it (`init_state(video_path=
folder)`, its own JPEG loader), on the same weights, frames and prompts.

The predictor's own loader normalises with ImageNet's mean / std, so our side runs the
SAM 3 family with those (`Sam3Family(IMG_MEAN, IMG_STD)`); by default the family uses
0.5 / 0.5, as SAM 3's video model feeds the tracker. Nothing of the reference is
patched except device placement (`package_on_cpu`: `.cuda()` / `.pin_memory()` keep a
CPU tensor where it is). Models: a reduced random-weight tracker built from the
package's classes (`sam3_testing.REDUCED`); one test runs the full-size architecture.
"""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.nn.attention import SDPBackend, sdpa_kernel

from sam2long.models.sam3 import family as sam3_family, network as sam3_network, shims as sam3_shims

try:
    sam3_shims.sam3_modules()
except ImportError as e:  # the optional extra is not installed
    pytest.skip(f"sam3 is not importable: {e}", allow_module_level=True)

from sam2long.engine.tree import TreeConfig  # noqa: E402
from sam2long.models.family import IMG_MEAN, IMG_STD  # noqa: E402
from sam2long.models.model import LoadedModel  # noqa: E402

from conftest import moving_square_clip  # noqa: E402
from equivalence import assert_same  # noqa: E402
from equivalence import our_run as track_folder  # noqa: E402
from sam3_testing import REDUCED  # noqa: E402

H, W, N = 72, 96, 12
# Object logits of this random tracker sit near +0.15 on every frame; shifted so that they
# straddle SAM 3's memory threshold ((2 sigmoid(s) - 1) * IoU > 0.01), its memory-frame
# filter keeps some tracked frames and drops others (the tests check both happen).
PRESENCE_SHIFT = -0.112


@pytest.fixture
def package_on_cpu(monkeypatch):
    """The predictor calls ``.cuda()`` / ``.pin_memory()`` on tensors already on its
    device; on a CPU both keep the tensor where it is (placement only)."""
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: self)


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sam3_eq")
    for i, frame in enumerate(moving_square_clip(n=N, h=H, w=W).numpy()):
        Image.fromarray(frame).save(folder / f"{i:05d}.jpg", quality=90)
    return folder


def models(config=REDUCED, seed=0, use_memory_selection=True, shift=PRESENCE_SHIFT):
    """The package's predictor and our LoadedModel on the same random weights."""
    torch.manual_seed(seed)
    predictor = sam3_network.build_tracker_net(config, predictor=True, use_memory_selection=use_memory_selection)
    with torch.no_grad():
        predictor.sam_mask_decoder.pred_obj_score_head.layers[-1].bias += shift
    net = sam3_network.build_tracker_net(config, use_memory_selection=use_memory_selection)
    net.load_state_dict({k: v for k, v in predictor.state_dict().items() if k in net.state_dict()})
    ours = LoadedModel(net, "sam3", torch.device("cpu"), "fp32", family=sam3_family.Sam3Family(IMG_MEAN, IMG_STD))
    return predictor, ours


def relative(points):
    """Pixel points as the predictor takes them (relative), with the float32 arithmetic
    that our prompt path uses, so both sides scale the same numbers."""
    return torch.tensor(points, dtype=torch.float32) / torch.tensor([W, H])


def reference_run(predictor, folder, prompts, reverse=False, start=None):
    try:
        with torch.inference_mode(), sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            state = predictor.init_state(video_path=str(folder), offload_video_to_cpu=True, offload_state_to_cpu=True)
            for kind, frame, obj, value in prompts:
                if kind == "points":
                    pts, labels = value
                    predictor.add_new_points_or_box(state, frame, obj, points=relative(pts),
                                                    labels=np.array(labels, np.int32))
                elif kind == "box":
                    x0, y0, x1, y1 = value
                    predictor.add_new_points_or_box(state, frame, obj, box=relative([(x0, y0), (x1, y1)]).flatten())
                else:
                    predictor.add_new_mask(state, frame, obj, value)
            out = {}
            for t, obj_ids, _, masks, _ in predictor.propagate_in_video(
                state, start_frame_idx=start, max_frame_num_to_track=N, reverse=reverse, propagate_preflight=True,
                tqdm_disable=True,
            ):
                out[t] = {o: masks[i, 0].clone() for i, o in enumerate(obj_ids)}
    finally:
        predictor.bf16_context.__exit__(None, None, None)  # its constructor enters it for the thread
    return out, state


def memory_filter_kept(state) -> list[bool]:
    """Per tracked frame of the reference: did SAM 3's memory-frame filter keep it?"""
    tracked = state["output_dict"]["non_cond_frame_outputs"]
    return [float(tracked[t]["eff_iou_score"]) > 0.01 for t in sorted(tracked)]


def our_run(model, folder, prompts, direction="forward", tree=None):
    return track_folder(model, folder, prompts, tree or TreeConfig.sam3(), direction)


def test_tree_off_equals_sam3_predictor_click(package_on_cpu, clip_folder):
    prompts = [("points", 0, 1, ([(24, 18)], [1]))]
    predictor, model = models()
    ref, state = reference_run(predictor, clip_folder, prompts)
    kept = memory_filter_kept(state)
    assert any(kept) and not all(kept)  # SAM 3's memory selection is exercised
    assert all((ref[t][1] > 0).any() for t in ref)  # the object is found on every frame
    assert_same(our_run(model, clip_folder, prompts), ref, range(N), exact=True)


def test_tree_off_equals_sam3_predictor_reverse(package_on_cpu, clip_folder):
    prompts = [("points", N - 2, 1, ([(60, 30), (10, 60)], [1, 0]))]
    predictor, model = models()
    ref, state = reference_run(predictor, clip_folder, prompts, reverse=True, start=N - 2)
    assert all((ref[t][1] > 0).any() for t in ref) and any(memory_filter_kept(state))
    assert_same(our_run(model, clip_folder, prompts, direction="backward"), ref, range(N - 1), exact=True)


def test_tree_off_equals_sam3_predictor_box(package_on_cpu, clip_folder):
    prompts = [("box", 2, 1, (6, 12, 30, 36))]
    predictor, model = models()
    ref, _ = reference_run(predictor, clip_folder, prompts, start=2)
    assert_same(our_run(model, clip_folder, prompts), ref, range(2, N), exact=True)


def test_tree_off_equals_sam3_predictor_mask(package_on_cpu, clip_folder):
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[10:30, 5:25] = True
    prompts = [("mask", 0, 1, mask)]
    predictor, model = models()
    ref, _ = reference_run(predictor, clip_folder, prompts)
    assert_same(our_run(model, clip_folder, prompts), ref, range(N), exact=True)


def test_tree_off_equals_sam3_predictor_without_memory_selection(package_on_cpu, clip_folder):
    """A tracker built with use_memory_selection=False reads SAM 2's last frames."""
    prompts = [("points", 0, 1, ([(24, 18)], [1]))]
    predictor, model = models(use_memory_selection=False)
    ref, _ = reference_run(predictor, clip_folder, prompts)
    assert_same(our_run(model, clip_folder, prompts, tree=TreeConfig.sam2()), ref, range(N), exact=True)


def test_tree_off_equals_sam3_predictor_two_objects(package_on_cpu, clip_folder):
    """Two objects prompted on one frame (the package fails on different frames: its
    _get_empty_mask_ptr passes track_step an argument it does not take)."""
    mask = torch.zeros(H, W, dtype=torch.bool)
    mask[40:60, 50:80] = True
    prompts = [("points", 0, 1, ([(24, 18)], [1])), ("mask", 0, 2, mask)]
    predictor, model = models()
    ref, state = reference_run(predictor, clip_folder, prompts)
    assert all((ref[t][o] > 0).any() for t in ref for o in (1, 2))
    assert_same(our_run(model, clip_folder, prompts), ref, range(N))


def test_full_size_tracker_equals_sam3_predictor(package_on_cpu, tmp_path):
    """SAM 3's real architecture at its real input size, 1008 (random weights): a click
    and a tracked frame (memory attention, decoder, memory encoder at 72 x 72). About 90
    CPU-seconds per frame and side, so two frames and two threads."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(moving_square_clip(n=2, h=H, w=W).numpy()):
        Image.fromarray(frame).save(folder / f"{i:05d}.jpg", quality=90)
    prompts = [("points", 0, 1, ([(24, 18)], [1]))]
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        predictor, model = models(config=sam3_network.SAM3_SIZES, shift=0.0)
        assert model.image_size == 1008 and model.net.backbone_stride == 14
        ref, _ = reference_run(predictor, folder, prompts)
        del predictor
        ours = our_run(model, folder, prompts)
    finally:
        torch.set_num_threads(threads)
    assert_same(ours, ref, range(2), exact=True)
