"""SAM 3's tracker from the `sam3` package: building, checkpoints, and the package's
own predictor run on CPU as its users run it (the reference for the SAM 3 family).

Skipped when `sam3` is not importable. Models are reduced random-weight trackers
built from the package's own classes (`REDUCED`); one test builds the full size.
"""

import numpy as np
import pytest
import torch
from PIL import Image

from sam2long.errors import CheckpointError
from sam2long.models.sam3 import checkpoint as sam3_checkpoint, family as sam3_family
from sam2long.models.sam3 import network as sam3_network, shims as sam3_shims

try:
    sam3_shims.sam3_modules()
except ImportError as e:  # the optional extra is not installed
    pytest.skip(f"sam3 is not importable: {e}", allow_module_level=True)

from conftest import moving_square_clip  # noqa: E402
from sam3_testing import FAKE_DETECTOR, REDUCED, official_layout  # noqa: E402

LOWRES = REDUCED.image_size // 14 * 4  # the decoder's mask side: 64


def reference_predictor(seed=0):
    """The package's Sam3TrackerPredictor as build_tracker(apply_temporal_disambiguation=True,
    with_backbone=True) makes it, at the reduced sizes."""
    torch.manual_seed(seed)
    return sam3_network.build_tracker_net(REDUCED, predictor=True)


@pytest.fixture
def package_on_cpu(monkeypatch):
    """SAM 3's predictor calls ``.cuda()`` and ``.pin_memory()`` on tensors it has put
    on its own device (sam3_tracker_base.py, sam3_tracking_predictor.py). For the
    reference run on a CPU both keep the tensor where it is: device placement only,
    no arithmetic changes. Our adapter never needs this."""
    monkeypatch.setattr(torch.Tensor, "cuda", lambda self, *a, **k: self)
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self, *a, **k: self)


@pytest.fixture(scope="module")
def predictor():
    net = reference_predictor()
    yield net
    net.bf16_context.__exit__(None, None, None)  # the constructor enters it for the thread


@pytest.fixture(scope="module")
def jpeg_clip(tmp_path_factory):
    """Frames as the predictor's users pass them: a folder of <index>.jpg."""
    folder = tmp_path_factory.mktemp("sam3_frames")
    frames = moving_square_clip(n=5, h=72, w=96)
    for i, frame in enumerate(frames.numpy()):
        Image.fromarray(frame).save(folder / f"{i}.jpg", quality=95)
    return folder, frames


# --------------------------------------------------------------------------- layout


def test_tracker_layout_is_the_checkpoints():
    net = sam3_network.build_tracker_net(REDUCED)
    names = list(net.state_dict())
    tracker = [k for k in names if not k.startswith(sam3_checkpoint.VISION_PREFIX)]
    vision = [k[len(sam3_checkpoint.VISION_PREFIX):] for k in names if k.startswith(sam3_checkpoint.VISION_PREFIX)]
    # sam3.pt holds 309 tracker.* tensors; the tracker's vision part is trunk + sam2_convs only
    assert len(tracker) == 309
    assert {k.split(".", 1)[0] for k in vision} == {"trunk", "sam2_convs"}
    assert not any("language_backbone" in k for k in names)


def test_full_size_tracker_builds_with_sam3_layout():
    net = sam3_network.build_tracker_net()
    sd = net.state_dict()
    count = lambda prefix: sum(v.numel() for k, v in sd.items() if k.startswith(prefix))  # noqa: E731
    assert len(sd) == 309 + 420 + 22
    assert count(sam3_checkpoint.VISION_PREFIX + "trunk.") == 447_417_344
    assert count(sam3_checkpoint.VISION_PREFIX + "sam2_convs.") == 7_802_112
    assert sum(v.numel() for v in sd.values()) == 466_963_074
    assert tuple(sd[sam3_checkpoint.PATCH_EMBED].shape) == (1024, 3, 14, 14)
    assert sam3_checkpoint.trunk_config(sd) == sam3_network.SAM3_SIZES
    assert net.image_size == 1008 and net.backbone_stride == 14


# --------------------------------------------------------------------------- checkpoints


def test_bf16_repack_without_rope_tables_loads(tmp_path):
    """A .safetensors repack in bf16 that dropped the trunk's complex RoPE buffers."""
    from safetensors.torch import save_file

    source = reference_predictor(seed=4)
    repack = {
        k: v.to(torch.bfloat16) if v.is_floating_point() else v
        for k, v in official_layout(source).items()
        if not k.endswith(sam3_checkpoint.ROPE_TABLE)
    }
    save_file(repack, str(tmp_path / "sam3_bf16.safetensors"))
    net = sam3_checkpoint.load_sam3_tracker(tmp_path / "sam3_bf16.safetensors", config=REDUCED)
    loaded, expected = net.state_dict(), source.state_dict()
    tables = [k for k in loaded if k.endswith(sam3_checkpoint.ROPE_TABLE)]
    assert len(tables) == REDUCED.depth and all(torch.equal(loaded[k], expected[k]) for k in tables)
    weight = "tracker.obj_ptr_proj.layers.0.weight"
    assert loaded[weight[len("tracker."):]].dtype == torch.float32
    assert torch.equal(loaded[weight[len("tracker."):]], repack[weight].float())


@pytest.mark.parametrize("fmt", ["pt", "safetensors", "tracker-only"])
def test_checkpoint_round_trip(tmp_path, fmt):
    source = reference_predictor(seed=3)
    official = official_layout(source)
    if fmt == "pt":
        path = tmp_path / "sam3.pt"
        torch.save(official, path)
    elif fmt == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "sam3.safetensors"
        save_file(official, str(path))
    else:
        path = tmp_path / "sam3_tracker.pt"  # as build_tracker(with_backbone=True) saves
        torch.save(source.state_dict(), path)

    net = sam3_checkpoint.load_sam3_tracker(path, config=REDUCED)
    loaded = net.state_dict()
    expected = source.state_dict()
    detector_neck = [k for k in expected if k.startswith(sam3_checkpoint.VISION_PREFIX + "convs.")]
    assert detector_neck and not any(k in loaded for k in detector_neck)  # not kept
    assert set(loaded) == set(expected) - set(detector_neck)
    assert all(torch.equal(loaded[k], expected[k]) for k in loaded)


def test_official_layout_leaves_out_the_detector():
    official = official_layout(reference_predictor())
    kept, left_out = sam3_checkpoint.tracker_tensors(official)
    assert set(FAKE_DETECTOR) <= set(left_out)
    assert all(k.startswith("detector.backbone.vision_backbone.convs.") or k in FAKE_DETECTOR for k in left_out)
    assert sam3_checkpoint.is_sam3_state_dict(official) and sam3_checkpoint.is_sam3_state_dict(kept)


def test_bad_checkpoints_name_the_problem(tmp_path):
    official = official_layout(reference_predictor())
    broken = dict(official)
    del broken["tracker.obj_ptr_proj.layers.0.weight"]
    broken["tracker.maskmem_tpos_enc"] = torch.zeros(3, 1, 1, 64)
    path = tmp_path / "broken.pt"
    torch.save(broken, path)
    with pytest.raises(CheckpointError, match=r"missing tensors \(1\): obj_ptr_proj.layers.0.weight.*maskmem_tpos_enc"):
        sam3_checkpoint.load_sam3_tracker(path, config=REDUCED)

    sam2_like = tmp_path / "sam2.pt"
    torch.save({"image_encoder.trunk.patch_embed.proj.weight": torch.zeros(96, 3, 7, 7)}, sam2_like)
    with pytest.raises(CheckpointError, match="not a SAM 3 checkpoint"):
        sam3_checkpoint.load_sam3_tracker(sam2_like)

    # without a config, the trunk must be SAM 3's own
    torch.save(official, tmp_path / "small.pt")
    with pytest.raises(CheckpointError, match=r"unknown SAM 3 image encoder.*\(64, 3, 14, 14\) with 2 blocks"):
        sam3_checkpoint.load_sam3_tracker(tmp_path / "small.pt")


# --------------------------------------------------------------------------- features


def test_encode_image_equals_the_packages_forward_image(predictor, tmp_path):
    path = tmp_path / "sam3.pt"
    torch.save(official_layout(predictor), path)
    net = sam3_checkpoint.load_sam3_tracker(path, config=REDUCED)
    image = torch.randn(1, 3, REDUCED.image_size, REDUCED.image_size, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ours = sam3_family.encode_image(net, image)
        theirs = predictor.forward_image(image)
    # the decoder's conv_s0 / conv_s1 narrow the two finest levels to 32 and 64 channels
    assert [tuple(x.shape) for x in ours["backbone_fpn"]] == [(1, 32, 64, 64), (1, 64, 32, 32), (1, 256, 16, 16)]
    assert [tuple(x.shape) for x in ours["vision_pos_enc"]] == [(1, 256, 64, 64), (1, 256, 32, 32), (1, 256, 16, 16)]
    for key in ("backbone_fpn", "vision_pos_enc"):
        assert len(ours[key]) == len(theirs[key])
        assert all(torch.equal(a, b) for a, b in zip(ours[key], theirs[key]))
    assert torch.equal(ours["vision_features"], theirs["vision_features"])


# --------------------------------------------------------------------------- the package's predictor


class DecoderLog:
    """Records every call of the mask decoder (a forward hook: observes, changes nothing)."""

    def __init__(self, decoder):
        self.calls = []
        self.handle = decoder.register_forward_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs, out):
        masks, ious, tokens, obj = out
        self.calls.append((kwargs["multimask_output"], masks.clone(), ious.clone(), obj.clone()))



@pytest.mark.parametrize("reverse", [False, True])
def test_package_predictor_tracks_on_cpu(package_on_cpu, predictor, jpeg_clip, reverse):
    folder, frames = jpeg_clip
    n, h, w = frames.shape[:3]
    start = n - 1 if reverse else 0
    state = predictor.init_state(video_path=str(folder), offload_video_to_cpu=True, offload_state_to_cpu=True)
    assert tuple(state["images"].shape) == (n, 3, REDUCED.image_size, REDUCED.image_size)
    log = DecoderLog(predictor.sam_mask_decoder)
    try:
        _, obj_ids, _, prompt_masks = predictor.add_new_points_or_box(
            state, frame_idx=start, obj_id=1, points=np.array([[0.3, 0.35]], np.float32), labels=np.array([1], np.int32)
        )
        outputs = list(
            predictor.propagate_in_video(
                state, start_frame_idx=start, max_frame_num_to_track=n, reverse=reverse, propagate_preflight=True, tqdm_disable=True
            )
        )
    finally:
        log.handle.remove()

    assert obj_ids == [1] and tuple(prompt_masks.shape) == (1, 1, h, w)
    order = [t for t, *_ in outputs]
    assert order == (list(range(n - 1, -1, -1)) if reverse else list(range(n)))
    for _, ids, low_res, video_res, obj_scores in outputs:
        assert ids == [1]
        assert low_res.shape == (1, 1, LOWRES, LOWRES) and video_res.shape == (1, 1, h, w)
        assert obj_scores.shape == (1, 1)

    # the click: one call, 3 candidates; then one multimask call per tracked frame
    multimask = [c for c in log.calls if c[0]]
    assert len(multimask) == n  # n - 1 tracked frames + the one-click prompt
    tracked = state["output_dict"]["non_cond_frame_outputs"]
    assert sorted(tracked) == sorted(set(range(n)) - {start})
    for (_, masks, ious, obj), t in zip(multimask[1:], order[1:]):
        assert masks.shape == (1, 3, LOWRES, LOWRES) and ious.shape == (1, 3) and obj.shape == (1, 1)
        out = tracked[t]
        best = int(ious[0].argmax())
        # only the best candidate is kept (masks of an absent object become NO_OBJ_SCORE)
        kept = masks[:, best : best + 1] if obj.item() > 0 else torch.full_like(out["pred_masks"], -1024.0)
        assert torch.equal(out["pred_masks"], kept)
        assert torch.equal(out["object_score_logits"], obj)
        # use_memory_selection: the frame's score for SAM 3's memory-frame filter
        assert torch.equal(out["iou_score"], ious.max(-1)[0])
        assert torch.equal(out["eff_iou_score"], predictor.cal_mem_score(obj, ious.max(-1)[0]))


# --------------------------------------------------------------------------- memory attention


def test_our_memory_attention_runs_sam3s_module():
    """sam2long.engine.attention.memory_attention (key modulation, padding) on SAM 3's memory
    attention: with one layout and no weights it is the package's encoder exactly;
    padded slots do not leak; weights change the result."""
    from sam2long.engine.attention import memory_attention

    encoder = sam3_network.build_tracker_net(REDUCED).transformer.encoder
    hw, frames, ptr_tokens = (REDUCED.feat_size**2), 3, 16  # 4 pointers of 4 tokens
    g = torch.Generator().manual_seed(0)
    curr, curr_pos = torch.randn(hw, 2, 256, generator=g), torch.randn(hw, 2, 256, generator=g)
    mem = torch.randn(frames * hw + ptr_tokens, 2, 64, generator=g)
    mem_pos = torch.randn(frames * hw + ptr_tokens, 2, 64, generator=g)
    with torch.inference_mode():
        theirs = encoder(
            src=[curr], src_key_padding_mask=[None], src_pos=[curr_pos], prompt=mem, prompt_pos=mem_pos,
            feat_sizes=[(REDUCED.feat_size,) * 2], num_obj_ptr_tokens=ptr_tokens,
        )["memory"]
        ours = memory_attention(encoder, curr, curr_pos, mem.transpose(0, 1), mem_pos.transpose(0, 1), ptr_tokens)
        # item 0 again with its last frame and last pointer masked out as padding
        short = torch.cat([mem[: 2 * hw], mem[frames * hw : frames * hw + 12]])[:, :1]
        short_pos = torch.cat([mem_pos[: 2 * hw], mem_pos[frames * hw : frames * hw + 12]])[:, :1]
        alone = encoder(
            src=[curr[:, :1]], src_key_padding_mask=[None], src_pos=[curr_pos[:, :1]], prompt=short,
            prompt_pos=short_pos, feat_sizes=[(REDUCED.feat_size,) * 2], num_obj_ptr_tokens=12,
        )["memory"]
        valid = torch.ones(2, mem.shape[0], dtype=torch.bool)
        valid[0, 2 * hw : frames * hw] = False
        valid[0, -4:] = False
        padded = memory_attention(
            encoder, curr, curr_pos, mem.transpose(0, 1), mem_pos.transpose(0, 1), ptr_tokens, key_valid=valid
        )
        weight = torch.full((2, mem.shape[0]), 0.9)
        weighted = memory_attention(
            encoder, curr, curr_pos, mem.transpose(0, 1), mem_pos.transpose(0, 1), ptr_tokens, key_weight=weight
        )
    assert torch.equal(ours, theirs)
    torch.testing.assert_close(padded[:, :1], alone, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(weighted, ours, atol=1e-4)


def test_package_predictor_box_and_mask_two_objects(package_on_cpu, predictor, jpeg_clip):
    folder, frames = jpeg_clip
    n, h, w = frames.shape[:3]
    state = predictor.init_state(video_path=str(folder), offload_video_to_cpu=True, offload_state_to_cpu=True)
    log = DecoderLog(predictor.sam_mask_decoder)
    try:
        predictor.add_new_points_or_box(state, frame_idx=0, obj_id=1, box=np.array([0.05, 0.1, 0.3, 0.45], np.float32))
        box_call = log.calls[-1]
        mask = torch.zeros(h, w, dtype=torch.bool)
        mask[40:60, 50:80] = True
        _, obj_ids, _, video_res = predictor.add_new_mask(state, frame_idx=0, obj_id=2, mask=mask)
        outputs = list(
            predictor.propagate_in_video(
                state, start_frame_idx=0, max_frame_num_to_track=n, reverse=False, propagate_preflight=True, tqdm_disable=True
            )
        )
    finally:
        log.handle.remove()
    # a box counts as two points: one mask (SAM 3's multimask range is 0-1 points), whose
    # stability fallback may still pick among the three
    assert box_call[0] is False and box_call[1].shape == (1, 1, LOWRES, LOWRES)
    assert obj_ids == [1, 2] and tuple(video_res.shape) == (2, 1, h, w)
    # on its own frame the mask is the output (as +-10 logits, resized to low-res and back)
    first = outputs[0]
    shown = first[3][1, 0] > 0
    assert first[0] == 0 and (shown & mask).sum() / (shown | mask).sum() > 0.8
    for t, ids, low_res, video_res, obj_scores in outputs:
        assert ids == [1, 2] and low_res.shape == (2, 1, LOWRES, LOWRES) and video_res.shape == (2, 1, h, w)
        assert obj_scores.shape == (2, 1)
    # tracked frames run both objects as one batch of 2, three candidates each
    batched = [c for c in log.calls if c[0] and c[1].shape[0] == 2]
    assert len(batched) == n - 1 and all(c[2].shape == (2, 3) for c in batched)
