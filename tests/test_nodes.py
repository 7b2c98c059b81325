"""The ComfyUI node layer, tested without ComfyUI (fake comfy modules, tests/comfy_fake).

Nodes are called as ComfyUI calls them: classmethods define_schema/execute, optional
inputs absent. The engine is real, with a random-weight tiny model at 128 px.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import os
import sys

import numpy as np
import pytest
import torch
from loader_options import use_small_models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.dirname(os.path.abspath(__file__))


def _purge_nodes():
    for name in list(sys.modules):
        if name == "nodes" or name.startswith("nodes.") or name.startswith("sam2long_pack"):
            del sys.modules[name]


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """Install the fake comfy modules and import our `nodes` package against them."""
    for p in (REPO, TESTS):
        if p not in sys.path:
            sys.path.insert(0, p)
    import comfy_fake

    models = tmp_path_factory.mktemp("comfyui") / "models"  # input/output/temp are its siblings
    models.mkdir()
    comfy_fake.install(str(models))
    _purge_nodes()
    nodes = importlib.import_module("nodes")
    importlib.import_module("nodes.paths").register_model_folder()
    yield type("Comfy", (), {"fake": comfy_fake, "nodes": nodes, "models": models})
    _purge_nodes()
    comfy_fake.uninstall()


@pytest.fixture(scope="module")
def handle(comfy):
    from sam2long.models.model import LoadedModel, build_net

    torch.manual_seed(0)
    net = build_net("sam2.1_hiera_tiny", image_size=128)
    model = LoadedModel.from_net(net, "sam2.1_hiera_tiny", device="cpu")
    from nodes.loader import SAM2LongModelHandle, _ManagedNet
    import comfy.model_patcher as mp

    cpu = torch.device("cpu")
    patcher = mp.ModelPatcher(_ManagedNet(model.net, cpu), load_device=cpu, offload_device=cpu)
    return SAM2LongModelHandle(loaded=model, patcher=patcher, precision="auto", name="random-tiny")


def _frames(n=6, h=48, w=64, seed=0):
    """A bright square moving right over a dark, slightly noisy background."""
    g = torch.Generator().manual_seed(seed)
    imgs = torch.rand((n, h, w, 3), generator=g) * 0.15
    for i in range(n):
        x = 8 + 3 * i
        imgs[i, 14:30, x:x + 16] = torch.tensor([0.9, 0.8, 0.2])
    return imgs


def run(comfy, cls_name, **inputs):
    mod = comfy.nodes
    return comfy.fake.run_node(getattr(mod, cls_name), **inputs)


# ------------------------------------------------------------------------------ registration

def test_schemas_valid_and_prefixed(comfy):
    seen = set()
    for cls in comfy.nodes.NODES:
        s = cls.define_schema()
        s.validate()  # unique ids across inputs and outputs
        assert s.node_id.startswith("SAM2Long") and s.category.startswith("SAM2Long")
        assert s.node_id not in seen
        seen.add(s.node_id)
        for o in s.outputs:
            assert o.display_name, (s.node_id, o.id)
    assert seen == {"SAM2LongModelLoader", "SAM2LongLoadShot", "SAM2LongPrompt", "SAM2LongPromptEditor", "SAM2LongTrack",
                    "SAM2LongTrackToMask", "SAM2LongPreview", "SAM2LongSaveMattes"}
    assert comfy.nodes.SAM2LongPreview.define_schema().is_output_node
    assert comfy.nodes.SAM2LongSaveMattes.define_schema().is_output_node


def test_entry_point_imports_as_comfyui_does(comfy):
    # ComfyUI loads the pack folder by file location under a path-like module name.
    spec = importlib.util.spec_from_file_location("sam2long_pack", os.path.join(REPO, "__init__.py"),
                                                  submodule_search_locations=[REPO])
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sam2long_pack"] = mod
    spec.loader.exec_module(mod)
    assert not hasattr(mod, "NODE_CLASS_MAPPINGS")  # else ComfyUI would ignore comfy_entrypoint
    ext = asyncio.run(mod.comfy_entrypoint())
    ids = [c.define_schema().node_id for c in asyncio.run(ext.get_node_list())]
    assert len(ids) == 8 and all(i.startswith("SAM2Long") for i in ids)
    # the Prompt Editor's canvas: ComfyUI serves WEB_DIRECTORY's .js files as frontend extensions
    web = os.path.join(REPO, mod.WEB_DIRECTORY)
    assert os.path.isfile(os.path.join(web, "sam2long_editor.js"))
    import server

    assert "/sam2long/frame" in server.PromptServer.instance.routes.added  # its routes, on the server


def test_model_folder_keeps_user_entry(comfy, tmp_path):
    import folder_paths
    from nodes import paths

    user = str(tmp_path / "my_sam2")
    saved = folder_paths.folder_names_and_paths.pop("sam2", None)
    try:
        folder_paths.folder_names_and_paths["sam2"] = ([user], {".safetensors"})  # from extra_model_paths.yaml
        paths.register_model_folder()
        dirs, exts = folder_paths.folder_names_and_paths["sam2"]
        assert dirs[0] == user and os.path.join(folder_paths.models_dir, "sam2") in dirs
        assert exts == {".safetensors"}
        del folder_paths.folder_names_and_paths["sam2"]
        paths.register_model_folder()
        dirs, exts = folder_paths.folder_names_and_paths["sam2"]
        assert ".pt" in exts and ".safetensors" in exts and ".txt" not in exts
    finally:
        folder_paths.folder_names_and_paths.pop("sam2", None)
        if saved is not None:
            folder_paths.folder_names_and_paths["sam2"] = saved


def test_loader_missing_checkpoint_says_where(comfy):
    from nodes.loader import SAM2LongModelLoader

    msg = SAM2LongModelLoader.validate_inputs(ckpt_name="sam2.1_hiera_large.pt")
    assert isinstance(msg, str) and "sam2.1_hiera_large.pt" in msg
    assert os.path.join(str(comfy.models), "sam2") in msg and "extra_model_paths.yaml" in msg
    with pytest.raises(FileNotFoundError, match="models"):
        run(comfy, "SAM2LongModelLoader", ckpt_name="nothing.pt")


def test_loader_loads_and_hands_to_model_management(comfy, monkeypatch):
    from sam2long.models.model import build_net

    folder = comfy.models / "sam2"
    folder.mkdir(exist_ok=True)
    torch.manual_seed(1)
    sd = build_net("sam2.1_hiera_tiny", image_size=128).state_dict()
    torch.save({"model": sd}, folder / "random_tiny.pt")
    from nodes.loader import SAM2LongModelLoader

    assert "random_tiny.pt" in SAM2LongModelLoader.define_schema().inputs[0].options
    assert SAM2LongModelLoader.validate_inputs(ckpt_name="random_tiny.pt") is True
    use_small_models(monkeypatch, image_size=128)
    (h,), _ = run(comfy, "SAM2LongModelLoader", ckpt_name="random_tiny.pt", precision="fp16")
    assert h.loaded.variant == "sam2.1_hiera_tiny" and h.patcher is not None and h.patcher.model.net is h.loaded.net
    before = len(comfy.fake.state().loaded)
    m = h.acquire()
    assert comfy.fake.state().loaded[before:] == [h.patcher]
    assert m.precision == "fp32"  # CPU computes in fp32 whatever was asked


# ------------------------------------------------------------------------------ prompts

def test_points_json_formats(comfy):
    # parsing needs no model
    from nodes.prompts import parse_points

    assert parse_points('[{"x": 10, "y": 20}, {"x": 3.5, "y": 4}]') == [(10.0, 20.0), (3.5, 4.0)]
    assert parse_points("[[1, 2]]") == [(1.0, 2.0)]
    assert parse_points('{"x": 1, "y": 2}') == [(1.0, 2.0)]
    assert parse_points("") == [] and parse_points(None) == [] and parse_points("[]") == []
    with pytest.raises(ValueError, match="JSON"):
        parse_points("[{x: 1}]")
    with pytest.raises(ValueError, match='"x" and "y"'):
        parse_points('[{"x": 1}]')


def test_box_formats(comfy):
    from nodes.prompts import parse_boxes

    assert parse_boxes((1, 2, 30, 40)) == [[(1, 2, 30, 40)]]
    assert parse_boxes([(1, 2, 30, 40), (5, 6, 7, 8)]) == [[(1, 2, 30, 40), (5, 6, 7, 8)]]  # BBOX list
    assert parse_boxes({"x": 1, "y": 2, "width": 10, "height": 20}) == [[(1, 2, 11, 22)]]  # BOUNDING_BOX
    assert parse_boxes([{"x": 1, "y": 2, "width": 10, "height": 20}]) == [[(1, 2, 11, 22)]]
    per_frame = [[{"x": 0, "y": 0, "width": 4, "height": 4}], [], [(1, 1, 5, 5), (2, 2, 6, 6)]]
    assert parse_boxes(per_frame) == [[(0, 0, 4, 4)], [], [(1, 1, 5, 5), (2, 2, 6, 6)]]
    assert parse_boxes(torch.tensor([[1.0, 2.0, 3.0, 4.0]])) == [[(1, 2, 3, 4)]]
    assert parse_boxes((30, 40, 1, 2)) == [[(1, 2, 30, 40)]]  # corners in any order
    assert parse_boxes(None) == [] and parse_boxes([]) == []
    with pytest.raises(ValueError):
        parse_boxes([{"x": 1}])


def test_prompt_node_chains_objects_and_frames(comfy):
    (p1,), _ = run(comfy, "SAM2LongPrompt", positive_coords='[{"x": 16, "y": 20}]',
                   negative_coords='[{"x": 2, "y": 2}]')
    (p2,), _ = run(comfy, "SAM2LongPrompt", prompts=p1, object_id=1, frame_index=3,
                   bboxes=[{"x": 30, "y": 10, "width": 12, "height": 12}, {"x": 0, "y": 0, "width": 5, "height": 5}])
    mask = torch.zeros((1, 48, 64))
    mask[0, 14:30, 8:24] = 1
    (p3,), _ = run(comfy, "SAM2LongPrompt", prompts=p2, object_id=5, frame_index=2, mask=mask)
    assert len(p1.entries) == 1 and len(p2.entries) == 3 and len(p3.entries) == 4  # inputs not mutated
    e = p1.entries[0]
    assert (e.frame, e.obj_id, e.points, e.labels) == (0, 0, ((16.0, 20.0), (2.0, 2.0)), (1, 0))
    assert p3.obj_ids == [0, 1, 2, 5] and p3.frames == [0, 2, 3]
    assert p3.entries[1].box == (30, 10, 42, 22) and p3.entries[2].obj_id == 2
    assert p3.entries[3].mask.dtype == torch.bool and p3.entries[3].mask.shape == (48, 64)
    # points + box on one object: the points join the first box
    (p4,), _ = run(comfy, "SAM2LongPrompt", positive_coords='[{"x": 5, "y": 5}]', bboxes=(1, 1, 9, 9))
    assert len(p4.entries) == 1 and p4.entries[0].points == ((5.0, 5.0),) and p4.entries[0].box == (1, 1, 9, 9)


def test_prompt_node_errors(comfy):
    with pytest.raises(ValueError, match="empty"):
        run(comfy, "SAM2LongPrompt")
    with pytest.raises(ValueError, match="negative points"):
        run(comfy, "SAM2LongPrompt", negative_coords='[{"x": 1, "y": 1}]')
    with pytest.raises(ValueError, match="empty"):
        run(comfy, "SAM2LongPrompt", mask=torch.zeros((1, 8, 8)))


# ------------------------------------------------------------------------------ tracking

def _prompt(comfy, **kw):
    kw.setdefault("positive_coords", '[{"x": 16, "y": 22}]')
    (p,), _ = run(comfy, "SAM2LongPrompt", **kw)
    return p


def test_track_layouts_one_mask_per_frame(comfy, handle):
    imgs = _frames()
    p = _prompt(comfy)
    before = len(comfy.fake.state().progress)
    (track, masks, state), ui = run(comfy, "SAM2LongTrack", model=handle, images=imgs, prompts=p)
    assert list(ui) == ["sam2long_track"]  # the id the Prompt Editor fetches its masks by
    assert masks.shape == (6, 48, 64) and masks.dtype == torch.float32 and masks.device.type == "cpu"
    assert set(torch.unique(masks).tolist()) <= {0.0, 1.0}
    assert track.obj_ids == (0,) and track.num_frames == 6 and (track.height, track.width) == (48, 64)
    assert track.packed[0].dtype == np.uint8 and track.packed[0].shape == (6, (48 * 64 + 7) // 8)
    assert track.present[0].all()
    assert torch.equal(track.union().float(), masks)
    assert state.next_index == 6
    prog = comfy.fake.state().progress[before:]
    assert prog and prog[-1] == (6, 6)
    # deterministic: the same inputs give the same outputs (ComfyUI's cache relies on it)
    (track2, masks2, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs, prompts=p)
    assert torch.equal(masks, masks2)


def test_track_range_and_source_resolution(comfy, handle):
    imgs = _frames(n=7, h=40, w=56)
    p = _prompt(comfy, frame_index=3)
    (track, masks, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs, prompts=p,
                               direction="forward", start_frame=0, end_frame=5)
    assert masks.shape == (7, 40, 56)
    assert track.present[0].tolist() == [False, False, False, True, True, True, False]
    assert masks[[0, 1, 2, 6]].sum() == 0
    (track_b, masks_b, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs, prompts=p, direction="both")
    assert masks_b.shape == (7, 40, 56) and track_b.present[0].all()
    (track_r, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs, prompts=p, direction="backward")
    assert track_r.present[0].tolist() == [True] * 4 + [False] * 3


def test_track_prompt_on_batch_frame_outside(comfy, handle):
    with pytest.raises(ValueError, match="frame_index"):
        run(comfy, "SAM2LongTrack", model=handle, images=_frames(n=3), prompts=_prompt(comfy, frame_index=5))
    with pytest.raises(ValueError, match="Prompt"):
        run(comfy, "SAM2LongTrack", model=handle, images=_frames(n=3))


def test_normalized_coordinates(comfy, handle):
    from nodes.prompts import apply_prompts

    calls = []

    class Rec:
        def add_points(self, **kw):
            calls.append(("points", kw))

        def add_box(self, **kw):
            calls.append(("box", kw))

        def add_mask(self, **kw):
            calls.append(("mask", kw))

    p = _prompt(comfy, positive_coords='[{"x": 0.5, "y": 0.25}]', coordinates="normalized", frame_index=1)
    m = torch.zeros((1, 12, 16))
    m[0, 2:5, 2:5] = 1
    (p,), _ = run(comfy, "SAM2LongPrompt", prompts=p, object_id=3, mask=m)
    apply_prompts(Rec(), p, first_index=10, num_frames=4, height=48, width=64)
    assert calls[0] == ("points", {"frame": 11, "obj_id": 0, "points": [(32.0, 12.0)], "labels": [1]})
    kind, kw = calls[1]
    assert kind == "mask" and kw["frame"] == 10 and kw["mask"].shape == (48, 64)  # resized to source


def test_chain_checked_by_the_library_validator(comfy):
    from nodes.prompts import PromptChain, apply_prompts

    class Refuse:
        def __getattr__(self, name):
            raise AssertionError("nothing reaches the tracker before every prompt is checked")

    p = _prompt(comfy, positive_coords='[{"x": 64, "y": 48}]')  # the frame's far corner: inside
    p = _prompt(comfy, prompts=p, object_id=1, positive_coords='[{"x": 70, "y": 5}]')
    assert isinstance(p, PromptChain)
    with pytest.raises(ValueError, match=r"SAM2Long: point \(70, 5\) for object 1 on frame 0 is outside the "
                                         r"64x48 frame"):
        apply_prompts(Refuse(), p, first_index=0, num_frames=4, height=48, width=64)


def test_track_to_mask_selection(comfy, handle):
    imgs = _frames()
    p = _prompt(comfy)
    p = _prompt(comfy, prompts=p, object_id=2, positive_coords="", bboxes=[(40, 30, 60, 44)])
    (track, masks, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs, prompts=p)
    assert track.obj_ids == (0, 2)
    (u, cnt, nf), _ = run(comfy, "SAM2LongTrackToMask", track=track)
    assert torch.equal(u, masks) and cnt == 2 and nf == 6
    (one, cnt, _), _ = run(comfy, "SAM2LongTrackToMask", track=track, object_ids="2")
    assert torch.equal(one, track.object_masks(2).float()) and cnt == 1
    (per, cnt, _), _ = run(comfy, "SAM2LongTrackToMask", track=track, object_ids="0, 2", mode="per_object")
    assert per.shape == (12, 48, 64) and per.dtype == torch.float32 and cnt == 2
    assert torch.equal(per[:6], track.object_masks(0).float()) and torch.equal(per[6:], one)
    with pytest.raises(ValueError, match="not in this track"):
        run(comfy, "SAM2LongTrackToMask", track=track, object_ids="7")
    with pytest.raises(ValueError, match="cannot read"):
        run(comfy, "SAM2LongTrackToMask", track=track, object_ids="a")


def test_preview_overlay(comfy, handle):
    imgs = _frames()
    (track, masks, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs, prompts=_prompt(comfy))
    (overlay,), ui = run(comfy, "SAM2LongPreview", track=track, images=imgs, preview_frames=3)
    assert overlay.shape == imgs.shape and overlay.dtype == torch.float32
    assert 0.0 <= overlay.min() and overlay.max() <= 1.0
    assert ui.image.shape[0] == 3
    on = masks.bool()
    if on.any():
        assert not torch.allclose(overlay[on], imgs[on])
    assert torch.allclose(overlay[~on.any(0, keepdim=True).expand_as(on)].mean(), imgs[~on.any(0, keepdim=True).expand_as(on)].mean(), atol=0.05)
    (plain,), _ = run(comfy, "SAM2LongPreview", track=track, images=imgs, opacity=0.0, show_ids=False)
    border_free = ~on
    assert torch.allclose(plain[border_free][:100], imgs[border_free][:100])
    with pytest.raises(ValueError, match="do not match"):
        run(comfy, "SAM2LongPreview", track=track, images=imgs[:3])


def test_track_result_is_compact(comfy, handle):
    imgs = _frames(n=6, h=64, w=96)
    (track, masks, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs,
                               prompts=_prompt(comfy, positive_coords='[{"x": 16, "y": 22}]'))
    # The hard masks as before; the soft mattes (8-bit, compressed) come on top. This random-weight
    # model's logits stay within +-0.4, so its probability is noise that no compressor shrinks much;
    # a trained model's is 0 or 1 outside a thin edge band (see the README's disk figures).
    assert track.nbytes() - track.soft_nbytes() < masks.numel() * masks.element_size() / 16
    assert 0 < track.soft_nbytes() <= masks.numel()  # at most one byte per pixel


# ------------------------------------------------------------------------------ chunks

def _chunked(comfy, handle, imgs, p, cut):
    (t1, m1, s1), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs[:cut], prompts=p)
    (t2, m2, s2), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs[cut:], state=s1)
    return (t1, m1, s1), (t2, m2, s2)


def test_chunk_continuation_matches_unchunked(comfy, handle):
    # A first chunk of 16 frames or more: shorter, it is tracked as a shot of its own length
    # (SAM 2 positions object pointers by min(shot length, 16) - 1), which the full run is not.
    imgs = _frames(n=18)
    p = _prompt(comfy)
    (full, mfull, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs, prompts=p, pathways=1)
    (t1, m1, s1), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs[:16], prompts=p, pathways=1)
    (t2, m2, s2), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs[16:], state=s1)
    assert m2.shape == (2, 48, 64) and t2.first_index == 16 and s2.next_index == 18
    # with one pathway the tree commits every frame: chunked == unchunked everywhere
    assert torch.equal(torch.cat([m1, m2]), mfull)


def test_chunk_continuation_multipath_after_boundary(comfy, handle):
    imgs = _frames(n=18)  # a first chunk of 16 frames, as above
    p = _prompt(comfy)
    (full, mfull, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs, prompts=p)
    (t1, m1, s1), (t2, m2, s2) = _chunked(comfy, handle, imgs, p, 16)
    # frames after the boundary continue from the exact state
    (again, m2b, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs[16:], state=s1)
    assert torch.equal(m2, m2b)  # the cached input state was not consumed or mutated
    assert torch.equal(m2, mfull[16:])


def test_chunk_state_rules(comfy, handle):
    imgs = _frames(n=6)
    (_, _, s1), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs[:3], prompts=_prompt(comfy))
    with pytest.raises(ValueError, match="forward"):
        run(comfy, "SAM2LongTrack", model=handle, images=imgs[3:], state=s1, direction="both")
    with pytest.raises(ValueError, match="shot"):
        run(comfy, "SAM2LongTrack", model=handle, images=imgs[3:, :40], state=s1)


# ------------------------------------------------------------------------------ interrupt

def test_interrupt_stops_promptly_and_leaves_nothing_behind(comfy, handle):
    imgs = _frames(n=8)
    p = _prompt(comfy)
    (_, ref, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs, prompts=p)
    st = comfy.fake.state()
    mm = sys.modules["comfy.model_management"]
    st.interrupt_checks, st.interrupt_after = 0, 3
    try:
        with pytest.raises(mm.InterruptProcessingException):
            run(comfy, "SAM2LongTrack", model=handle, images=imgs, prompts=p)
        assert st.interrupt_checks == 3  # stopped at the first check that raised, not at the end
    finally:
        st.interrupt_after = None
    # re-running after the interrupt gives the same result: nothing half-done was kept
    (_, again, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs, prompts=p)
    assert torch.equal(again, ref)


def test_interrupted_chunk_keeps_input_state_intact(comfy, handle):
    imgs = _frames(n=8)
    (_, _, s1), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs[:4], prompts=_prompt(comfy))
    (_, ref, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs[4:], state=s1)
    st = comfy.fake.state()
    mm = sys.modules["comfy.model_management"]
    st.interrupt_checks, st.interrupt_after = 0, 2
    try:
        with pytest.raises(mm.InterruptProcessingException):
            run(comfy, "SAM2LongTrack", model=handle, images=imgs[4:], state=s1)
    finally:
        st.interrupt_after = None
    (_, again, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs[4:], state=s1)
    assert torch.equal(again, ref)
