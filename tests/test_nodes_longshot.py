"""Long shots through the node layer (fake ComfyUI modules): Load Shot, Track from a shot
or core VIDEO with masks spilled to disk, Track To Mask ranges, Preview from a shot,
Save Mattes, caching fingerprints, interrupts and bad input."""

from __future__ import annotations

import contextlib
import gc
import os
import sys

import av
import numpy as np
import pytest
import torch
from PIL import Image

from test_nodes import _prompt, comfy, handle, run  # noqa: F401  (module-scoped fixtures)

H, W, N = 48, 64, 8


def _clip(n=N, seed=0):
    """uint8 [n, H, W, 3]: a bright square moving right over dark noise."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 40, (n, H, W, 3), dtype=np.uint8)
    for i in range(n):
        frames[i, 14:30, 8 + 3 * i:24 + 3 * i] = (230, 200, 50)
    return frames


def _write_mp4(path, frames, fps=12, faststart=False):
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", format="mp4", options=options) as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": "12", "g": "4"}
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def _dirs():
    import folder_paths

    return folder_paths.get_input_directory(), folder_paths.get_output_directory(), folder_paths.get_temp_directory()


@pytest.fixture(scope="module")
def media(comfy):
    """clip.mp4 and a folder of PNG frames in the input folder, and the decoded video frames."""
    from sam2long.media.frames import open_frames

    inp, _, _ = _dirs()
    os.makedirs(os.path.join(inp, "frames"), exist_ok=True)
    clip = _clip()
    _write_mp4(os.path.join(inp, "clip.mp4"), clip)
    for i, f in enumerate(clip):
        Image.fromarray(f).save(os.path.join(inp, "frames", f"f_{i:03d}.png"))
    src = open_frames(os.path.join(inp, "clip.mp4"))
    decoded = np.stack([f for _, f in src.frames(range(len(src)))])
    return type("Media", (), {"clip": clip, "decoded": decoded, "video": os.path.join(inp, "clip.mp4")})


def _images(u8):
    # As the engine scales uint8 frames, so the IMAGE path sees the same numbers.
    return torch.from_numpy(u8).float() * (1.0 / 255.0)


def _spills():
    folder = os.path.join(_dirs()[2], "sam2long")
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def _count_decodes(monkeypatch):
    """Record the frame indices each source.frames() call is asked for."""
    from sam2long.media import frames as fr

    asked = []
    from sam2long.media.plates import PlateFrames

    for cls in (fr.VideoFrames, PlateFrames):
        orig = cls.frames

        def spy(self, indices, _orig=orig):
            indices = list(indices)
            asked.append(indices)
            return _orig(self, indices)

        monkeypatch.setattr(cls, "frames", spy)
    return asked


@contextlib.contextmanager
def _cancel_at_check(comfy, n):
    """Press Cancel: the n-th interrupt check raises ComfyUI's interrupt exception."""
    st = comfy.fake.state()
    st.interrupt_checks, st.interrupt_after = 0, n
    try:
        with pytest.raises(sys.modules["comfy.model_management"].InterruptProcessingException):
            yield
    finally:
        st.interrupt_after = None


# ------------------------------------------------------------------------------ Load Shot

def test_load_shot_video_and_folder(comfy, media, monkeypatch):
    from nodes.shot import SAM2LongLoadShot

    assert "clip.mp4" in SAM2LongLoadShot.define_schema().inputs[0].options
    asked = _count_decodes(monkeypatch)
    (shot, n, w, h, fps, frame), _ = run(comfy, "SAM2LongLoadShot", video="clip.mp4", preview_index=5)
    assert (n, w, h, fps) == (N, W, H, 12.0) and (shot.start, shot.count, shot.total) == (0, N, N)
    assert frame.shape == (1, H, W, 3) and frame.dtype == torch.float32
    assert torch.equal(frame[0], _images(media.decoded[5]))
    assert asked == [[N - 1], [5]]  # the range's last frame (truncation check) and the one shown
    # a range: positions count from first_frame; path overrides the combo
    (shot, n, *_, frame), _ = run(comfy, "SAM2LongLoadShot", video="clip.mp4", path=media.video,
                                  first_frame=2, frame_count=4, preview_index=1)
    assert (shot.start, shot.count, n, shot.range_number) == (2, 4, 4, 2)
    assert torch.equal(frame[0], _images(media.decoded[3]))
    # a folder of frames, relative to the input folder
    (shot, n, w, h, fps, frame), _ = run(comfy, "SAM2LongLoadShot", path="frames", preview_index=7)
    assert (n, w, h, fps) == (N, W, H, 0.0)
    assert torch.equal(frame[0], _images(media.clip[7]))


def test_load_shot_fingerprint_follows_the_files(comfy, media, tmp_path):
    from nodes.shot import SAM2LongLoadShot

    fp = SAM2LongLoadShot.fingerprint_inputs
    a = fp(video="clip.mp4")
    assert a == fp(video="clip.mp4") == fp(path=media.video)  # unchanged: ComfyUI reuses its cache
    st = os.stat(media.video)
    os.utime(media.video, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # touched
    assert fp(video="clip.mp4") != a
    folder = os.path.join(_dirs()[0], "frames")
    b = fp(path="frames")
    assert b == fp(path=folder)
    extra = os.path.join(folder, "f_999.png")
    Image.fromarray(media.clip[0]).save(extra)
    try:
        assert fp(path="frames") != b  # a frame added to the folder
    finally:
        os.remove(extra)
    assert fp(path="frames") == b


def test_load_shot_errors_name_the_problem(comfy, media):
    from nodes.shot import SAM2LongLoadShot

    inp = _dirs()[0]
    with pytest.raises(FileNotFoundError) as e:
        run(comfy, "SAM2LongLoadShot", path="nope/shot.mp4")
    assert os.path.join(inp, "nope", "shot.mp4") in str(e.value) and "input folder" in str(e.value)
    msg = SAM2LongLoadShot.validate_inputs(video="", path="missing.mov")
    assert isinstance(msg, str) and os.path.join(inp, "missing.mov") in msg
    assert SAM2LongLoadShot.validate_inputs(video="clip.mp4", path="") is True
    with pytest.raises(FileNotFoundError, match="no shot given"):
        run(comfy, "SAM2LongLoadShot", video="")
    notes = os.path.join(inp, "notes.txt")
    with open(notes, "w") as f:
        f.write("not a video")
    with pytest.raises(ValueError, match="unsupported extension"):
        run(comfy, "SAM2LongLoadShot", path="notes.txt")
    with pytest.raises(ValueError, match=r"first_frame 8 is outside the shot .*frames 0\.\.7"):
        run(comfy, "SAM2LongLoadShot", video="clip.mp4", first_frame=8)
    with pytest.raises(ValueError, match=r"frames 5\.\.9 run past the end"):
        run(comfy, "SAM2LongLoadShot", video="clip.mp4", first_frame=5, frame_count=5)
    with pytest.raises(ValueError, match=r"preview_index 3 is outside the range"):
        run(comfy, "SAM2LongLoadShot", video="clip.mp4", first_frame=5, preview_index=3)
    # frames of mixed sizes
    mixed = os.path.join(inp, "mixed")
    os.makedirs(mixed, exist_ok=True)
    Image.fromarray(media.clip[0]).save(os.path.join(mixed, "a_1.png"))
    Image.fromarray(media.clip[1, :40]).save(os.path.join(mixed, "a_2.png"))
    with pytest.raises(ValueError, match="same size") as e:
        run(comfy, "SAM2LongLoadShot", path="mixed")
    assert "a_2.png" in str(e.value)


def test_truncated_video_named_before_anything_is_written(comfy, media, tmp_path, monkeypatch):
    monkeypatch.setenv("SAM2LONG_ALLOWED_PATHS", str(tmp_path))  # absolute paths: a folder the owner allows
    path = _write_mp4(tmp_path / "cut.mp4", _clip(n=30), faststart=True)  # header first: it still opens
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * 0.6)])
    with pytest.raises(ValueError, match=r"cut\.mp4.*ended after \d+ frames but 30 were expected"):
        run(comfy, "SAM2LongLoadShot", path=str(path))
    moov_last = _write_mp4(tmp_path / "cut2.mp4", _clip(n=30))
    data = moov_last.read_bytes()
    moov_last.write_bytes(data[:len(data) // 2])
    with pytest.raises(ValueError, match=r"cut2\.mp4.*truncated"):
        run(comfy, "SAM2LongLoadShot", path=str(moov_last))


# ------------------------------------------------------------------------------ Track from a stream

def test_track_from_shot_video_and_images_agree(comfy, handle, media):
    from comfy_api.latest import InputImpl
    from sam2long.media.trackstore import SpilledTrack, TrackResult

    p = _prompt(comfy, positive_coords='[{"x": 14, "y": 22}]', frame_index=1)
    (img_track, img_masks, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=_images(media.decoded),
                                       prompts=p)
    (shot, *_), _ = run(comfy, "SAM2LongLoadShot", video="clip.mp4")
    (shot_track, shot_masks, s1), _ = run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p)
    (vid_track, _, _), _ = run(comfy, "SAM2LongTrack", model=handle,
                               video=InputImpl.VideoFromFile(media.video), prompts=p)
    assert isinstance(img_track, TrackResult) and isinstance(shot_track, SpilledTrack)
    assert img_masks.shape == (N, H, W) and img_masks[1:].sum() > 0
    for t in (shot_track, vid_track):
        assert (t.num_frames, t.height, t.width, t.obj_ids) == (N, H, W, (0,))
        assert torch.equal(t.union(), img_track.union())
        assert np.array_equal(t.present[0], img_track.present[0])
        assert np.allclose(t.scores[0], img_track.scores[0], equal_nan=True)
        assert t.nbytes() < 200  # flags and scores only: the masks are on disk
    # a streamed track's masks output is small: the first tracked frame only
    assert shot_masks.shape == (1, H, W) and torch.equal(shot_masks[0], img_masks[1])
    assert s1.next_index == N
    # a range of the shot == the same frames as a batch; prompts count from the range's first frame
    (sub, *_), _ = run(comfy, "SAM2LongLoadShot", video="clip.mp4", first_frame=2, frame_count=5)
    (sub_track, _, s2), _ = run(comfy, "SAM2LongTrack", model=handle, shot=sub, prompts=p)
    (ref, ref_masks, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=_images(media.decoded[2:7]),
                                 prompts=p)
    assert torch.equal(sub_track.union(), ref_masks.bool())
    assert (sub_track.first_index, sub_track.first_number, s2.next_index) == (2, 2, 7)


def test_track_both_directions_from_a_shot_range(comfy, handle, media):
    # the backward pass asks the range for descending frames, decoded in blocks
    p = _prompt(comfy, positive_coords='[{"x": 22, "y": 22}]', frame_index=3)
    (sub, *_), _ = run(comfy, "SAM2LongLoadShot", video="clip.mp4", first_frame=1, frame_count=6)
    (t, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, shot=sub, prompts=p, direction="both")
    (_, ref, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=_images(media.decoded[1:7]), prompts=p,
                         direction="both")
    assert t.present[0].all() and torch.equal(t.union(), ref.bool())


def test_track_from_shot_continues_from_state(comfy, handle, media):
    p = _prompt(comfy, positive_coords='[{"x": 14, "y": 22}]')
    imgs = _images(media.decoded)
    (_, m1, s1), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs[:4], prompts=p)
    (_, ref, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=imgs[4:], state=s1)
    (rest, *_), _ = run(comfy, "SAM2LongLoadShot", video="clip.mp4", first_frame=4)
    (t2, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, shot=rest, state=s1)
    assert torch.equal(t2.union(), ref.bool())
    (wrong, *_), _ = run(comfy, "SAM2LongLoadShot", video="clip.mp4", first_frame=3)
    with pytest.raises(ValueError, match="set Load Shot's first_frame to 4"):
        run(comfy, "SAM2LongTrack", model=handle, shot=wrong, state=s1)


def test_track_inputs_and_prompt_range_errors(comfy, handle, media):
    import io as _io

    from comfy_api.latest import InputImpl

    p = _prompt(comfy)
    (shot, *_), _ = run(comfy, "SAM2LongLoadShot", video="clip.mp4", first_frame=4)
    before = _spills()
    with pytest.raises(ValueError, match="exactly one of images, shot or video.*none"):
        run(comfy, "SAM2LongTrack", model=handle, prompts=p)
    with pytest.raises(ValueError, match="exactly one of images, shot or video.*images, shot"):
        run(comfy, "SAM2LongTrack", model=handle, images=_images(media.decoded), shot=shot, prompts=p)
    with pytest.raises(ValueError, match=r"on frame 4, but the shot's range has frames 0\.\.3"):
        run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=_prompt(comfy, frame_index=4))
    with pytest.raises(ValueError, match="not a file on disk"):
        run(comfy, "SAM2LongTrack", model=handle, video=InputImpl.VideoFromFile(_io.BytesIO(b"x")), prompts=p)
    assert _spills() == before  # nothing was written


# ------------------------------------------------------------------------------ spilled results

def test_spilled_track_reads_back_like_the_in_memory_one(tmp_path):
    from sam2long.media.trackstore import SpillBuilder, TrackBuilder

    rng = np.random.default_rng(1)
    n, h, w = 7, 30, 45
    mem, disk = TrackBuilder(n, h, w, first_index=10), SpillBuilder(tmp_path, n, h, w, first_index=10)
    for b in (mem, disk):
        b.ensure_objects([0, 3, 5])
    for t in (12, 10, 11, 15):  # any order, not every frame, not every object
        masks = torch.from_numpy(rng.random((2, h, w)) > 0.5)
        for b in (mem, disk):
            b.add(t, [0, 3], masks, [0.5, -1.0])
    a, b = mem.build(), disk.build()
    assert b.obj_ids == a.obj_ids == (0, 3, 5) and b.first_number == 10
    for oid in a.obj_ids:
        assert torch.equal(a.object_masks(oid), b.object_masks(oid))
        assert torch.equal(a.object_masks(oid, 1, 4), b.object_masks(oid)[1:5])
        assert np.array_equal(a.present[oid], b.present[oid])
        assert np.array_equal(a.scores[oid], b.scores[oid], equal_nan=True)
    assert torch.equal(a.union(), b.union()) and torch.equal(a.union([3], 2, 3), b.union([3])[2:5])
    assert a.frame_masks(4) == {} and set(b.frame_masks(2)) == {0, 3}
    with pytest.raises(ValueError, match="outside this track"):
        b.union(first=7)
    with pytest.raises(ValueError, match="run past the end"):
        b.object_masks(0, 5, 3)
    # the folder lives as long as the result: dropped (superseded) -> removed
    folder = b.folder
    assert folder.is_dir() and folder.parent == tmp_path
    del b
    gc.collect()
    assert not folder.exists()
    c = SpillBuilder(tmp_path, n, h, w)
    c.add(0, [1], torch.ones((1, h, w), dtype=torch.bool))
    c.abort()  # an interrupted track
    assert list(tmp_path.iterdir()) == []


def test_interrupted_streamed_track_leaves_no_spill(comfy, handle, media):
    (shot, *_), _ = run(comfy, "SAM2LongLoadShot", video="clip.mp4")
    p = _prompt(comfy)
    before = _spills()
    with _cancel_at_check(comfy, 3):
        run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p)
    assert _spills() == before
    # a finished track keeps its folder while it is referenced (ComfyUI's cache), drops it when superseded
    (track, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p)
    assert track.folder.is_dir() and len(_spills()) == len(before) + 1
    folder = track.folder
    del track
    gc.collect()
    assert not folder.exists() and _spills() == before


# ------------------------------------------------------------------------------ downstream nodes

@pytest.fixture(scope="module")
def two_objects(comfy, handle, media):
    """A spilled track of two objects over frames 3..7 of the clip, and the same from images."""
    p = _prompt(comfy, positive_coords='[{"x": 20, "y": 22}]')
    p = _prompt(comfy, prompts=p, object_id=4, positive_coords='[{"x": 50, "y": 40}]')
    (shot, *_), _ = run(comfy, "SAM2LongLoadShot", video="clip.mp4", first_frame=3)
    (spilled, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p)
    (memory, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=_images(media.decoded[3:]), prompts=p)
    return shot, spilled, memory


def test_track_to_mask_range(comfy, two_objects):
    _, spilled, memory = two_objects
    for t in (spilled, memory):
        (m, cnt, nf), _ = run(comfy, "SAM2LongTrackToMask", track=t, first_frame=1, frame_count=3)
        assert m.shape == (3, H, W) and m.dtype == torch.float32 and (cnt, nf) == (2, 3)
        assert torch.equal(m, memory.union()[1:4].float())
        (per, cnt, nf), _ = run(comfy, "SAM2LongTrackToMask", track=t, object_ids="4", mode="per_object",
                                first_frame=2)
        assert per.shape == (3, H, W) and (cnt, nf) == (1, 3)
        assert torch.equal(per, memory.object_masks(4)[2:].float())
    with pytest.raises(ValueError, match="run past the end"):
        run(comfy, "SAM2LongTrackToMask", track=spilled, first_frame=3, frame_count=5)


def test_preview_from_shot_decodes_only_what_it_shows(comfy, media, two_objects, monkeypatch):
    shot, spilled, memory = two_objects
    (full,), _ = run(comfy, "SAM2LongPreview", track=memory, images=_images(media.decoded[3:]))
    asked = _count_decodes(monkeypatch)
    (shown,), ui = run(comfy, "SAM2LongPreview", track=spilled, shot=shot, preview_frames=2)
    assert asked == [[3, 7]]  # positions 0 and 4 of the range = frames 3 and 7 of the video
    assert shown.shape == (2, H, W, 3) and ui.image.shape[0] == 2
    assert torch.allclose(shown, full[[0, 4]])
    with pytest.raises(ValueError, match="either images or shot"):
        run(comfy, "SAM2LongPreview", track=spilled)
    (other, *_), _ = run(comfy, "SAM2LongLoadShot", video="clip.mp4")
    with pytest.raises(ValueError, match="do not match the track"):
        run(comfy, "SAM2LongPreview", track=spilled, shot=other)


def _files(folder):
    return sorted(f for f in os.listdir(folder) if not f.startswith("."))


def test_save_mattes_numbering_and_layouts(comfy, two_objects):
    _, spilled, memory = two_objects
    out = _dirs()[1]
    (folder,), ui = run(comfy, "SAM2LongSaveMattes", track=spilled, folder="shots/a")
    assert folder == os.path.join(out, "shots", "a") and ui.image.shape[-1] == 3
    assert _files(folder) == ["0", "4"]
    for oid in (0, 4):
        names = _files(os.path.join(folder, str(oid)))
        assert names == [f"matte.{n:04d}.png" for n in range(3, 8)]  # the frames' own numbers in the video
        for j, name in enumerate(names):
            with Image.open(os.path.join(folder, str(oid), name)) as im:
                assert im.size == (W, H) and im.mode == "L"
                assert np.array_equal(np.asarray(im) > 127, memory.object_masks(oid)[j].numpy())
    (folder,), _ = run(comfy, "SAM2LongSaveMattes", track=memory, folder="shots/u", mode="union",
                       prefix="hero", first_number=99_998, object_ids="4")
    assert _files(folder) == [f"hero.{n:06d}.png" for n in range(99_998, 100_003)]
    with Image.open(os.path.join(folder, "hero.100000.png")) as im:
        assert np.array_equal(np.asarray(im) > 127, memory.object_masks(4)[2].numpy())
    (folder,), _ = run(comfy, "SAM2LongSaveMattes", track=memory, folder="shots/z", mode="union", first_number=0)
    assert _files(folder)[0] == "matte.0000.png" and len(_files(folder)) == 5
    with pytest.raises(ValueError, match="plain file name prefix"):
        run(comfy, "SAM2LongSaveMattes", track=memory, prefix="a/b")
    with pytest.raises(ValueError, match="not in this track"):
        run(comfy, "SAM2LongSaveMattes", track=memory, folder="shots/bad", object_ids="2")
    assert not os.path.exists(os.path.join(out, "shots", "bad"))


@pytest.mark.parametrize("fmt", ["exr", "png16", "tif16"])
def test_save_mattes_plate_formats(comfy, two_objects, fmt):
    """The save node writes the command line's formats through the same writer."""
    oiio = pytest.importorskip("OpenImageIO")
    _, _, memory = two_objects
    (folder,), _ = run(comfy, "SAM2LongSaveMattes", track=memory, folder=f"shots/{fmt}", object_ids="4",
                       format=fmt)
    ext = {"exr": "exr", "png16": "png", "tif16": "tif"}[fmt]
    names = _files(os.path.join(folder, "4"))
    assert names == [f"matte.{n:04d}.{ext}" for n in range(5)]  # an IMAGE batch numbers from 0
    inp = oiio.ImageInput.open(os.path.join(folder, "4", names[1]))
    spec = inp.spec()
    values = inp.read_image(oiio.FLOAT)
    inp.close()
    assert (spec.width, spec.height, spec.nchannels) == (W, H, 1)
    assert spec.format == (oiio.HALF if fmt == "exr" else oiio.UINT16)
    if fmt == "exr":
        assert spec.channelnames == ("A",)
    assert np.array_equal(values[..., 0] > 0.5, memory.object_masks(4)[1].numpy())
    assert set(np.unique(values)) <= {0.0, 1.0}


def test_save_mattes_interrupted_leaves_complete_files_only(comfy, two_objects, monkeypatch):
    from sam2long.media import writers

    _, spilled, _ = two_objects
    calls = [0]
    replace = os.replace

    def failing_replace(src, dst):  # the 5th file is interrupted after it was written, before its rename
        calls[0] += 1
        if calls[0] == 5:
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr(writers.os, "replace", failing_replace)
    with pytest.raises(KeyboardInterrupt):
        run(comfy, "SAM2LongSaveMattes", track=spilled, folder="shots/cut")
    monkeypatch.setattr(writers.os, "replace", replace)
    folder = os.path.join(_dirs()[1], "shots", "cut")
    everything = sorted(os.listdir(os.path.join(folder, "0")) + os.listdir(os.path.join(folder, "4")))
    assert everything == ["matte.0003.png", "matte.0003.png", "matte.0004.png", "matte.0004.png"]
    # through the Cancel button: the check after each frame stops it
    with _cancel_at_check(comfy, 2):
        run(comfy, "SAM2LongSaveMattes", track=spilled, folder="shots/cancel", mode="union")
    assert sorted(os.listdir(os.path.join(_dirs()[1], "shots", "cancel"))) == ["matte.0003.png", "matte.0004.png"]


def test_plate_sequence_through_load_shot_keeps_its_frame_numbers(comfy, handle, media):
    """A linear EXR plate given by pattern streams through Load Shot like a video: the same
    masks as its 8-bit frames as IMAGE, and Save Mattes numbers the files by the plate."""
    oiio = pytest.importorskip("OpenImageIO")
    inp, _, _ = _dirs()
    os.makedirs(os.path.join(inp, "plate"), exist_ok=True)
    srgb = media.clip[:5].astype(np.float32) / 255.0
    linear = np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)
    for i, f in enumerate(linear):
        out = oiio.ImageOutput.create("exr")
        spec = oiio.ImageSpec(W, H, 3, oiio.HALF)
        out.open(os.path.join(inp, "plate", f"sh010.{1001 + i:04d}.exr"), spec)
        out.write_image(np.ascontiguousarray(f))
        out.close()
    (shot, count, width, height, _, frame), _ = run(comfy, "SAM2LongLoadShot", video="",
                                                    path="plate/sh010.####.exr", preview_index=1)
    assert (count, width, height) == (5, W, H)
    assert np.array_equal((frame[0].numpy() * 255).round().astype(np.uint8), media.clip[1])
    p = _prompt(comfy, positive_coords='[{"x": 14, "y": 22}]', frame_index=0)
    (track, _, _), _ = run(comfy, "SAM2LongTrack", model=handle, shot=shot, prompts=p)
    (_, ref_masks, _), _ = run(comfy, "SAM2LongTrack", model=handle, images=_images(media.clip[:5]), prompts=p)
    assert torch.equal(track.union(), ref_masks.bool())
    (folder,), _ = run(comfy, "SAM2LongSaveMattes", track=track, folder="plate_mattes", mode="union")
    assert _files(folder) == [f"matte.{n:04d}.png" for n in range(1001, 1006)]
