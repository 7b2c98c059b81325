"""Frame sources from disk: video files streamed with PyAV and folders of images."""

from pathlib import Path

import numpy as np
import pytest

from sam2long.errors import FrameError
from sam2long.media.frames import VideoFrames, open_frames
from sam2long.media.plates import PlateFrames

MEDIA = Path(__file__).resolve().parents[1].parent / "shared" / "media"


def media(name):
    p = MEDIA / name
    if not p.exists():
        pytest.skip(f"{p} is not here (shared media lives beside the repository)")
    return p


def frame_image(i, w, h):
    """A frame whose brightness encodes its index (survives lossy coding) plus texture."""
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (i * 9) % 250
    img[..., 1] = ((xx + 3 * i) % 64) * 2
    img[..., 2] = ((yy * 2 + i) % 32) * 4
    return img


def write_video(path, n=20, w=64, h=48, codec="mpeg4", gop=5):
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=24)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.codec_context.gop_size = gop
        for i in range(n):
            for pkt in s.encode(av.VideoFrame.from_ndarray(frame_image(i, w, h), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def collect(source, indices):
    out = list(source.frames(indices))
    assert [i for i, _ in out] == list(indices)
    return {i: np.asarray(f) for i, f in out}


@pytest.mark.parametrize(
    "name,codec", [("a.mp4", "libx264"), ("b.mkv", "mpeg4"), ("c.webm", "libvpx-vp9"), ("d.avi", "mpeg4"),
                   ("e.mov", "mpeg4")]
)
def test_synthetic_video_forward_equals_backward(tmp_path, name, codec):
    path = write_video(tmp_path / name, n=23, codec=codec)
    src = open_frames(path, block_size=4)
    assert isinstance(src, VideoFrames)
    assert (src.width, src.height, len(src), src.first_index) == (64, 48, 23, 0)
    fw = collect(src, range(23))
    bw = collect(src, range(22, -1, -1))
    for i in range(23):
        assert fw[i].shape == (48, 64, 3) and fw[i].dtype == np.uint8
        assert np.array_equal(fw[i], bw[i]), i
        # the right frame, not just the same frame twice: red encodes the index
        assert abs(float(fw[i][..., 0].mean()) - (i * 9) % 250) < 12, i


def test_any_order_and_sub_ranges(tmp_path):
    src = open_frames(write_video(tmp_path / "v.mp4", n=30, codec="libx264", gop=8), block_size=3)
    fw = collect(src, range(30))
    order = [12, 13, 14, 9, 8, 7, 6, 25, 2, 29, 28, 0]
    got = collect(src, order)
    for i in order:
        assert np.array_equal(got[i], fw[i]), i
    tail = collect(src, range(29, 19, -1))  # backward from the end, not to 0
    assert all(np.array_equal(tail[i], fw[i]) for i in tail)


def test_out_of_range_index(tmp_path):
    src = open_frames(write_video(tmp_path / "v.mp4", n=5))
    with pytest.raises(IndexError, match="outside"):
        list(src.frames([5]))


def test_real_clip_metadata():
    bedroom = open_frames(media("bedroom.mp4"))
    assert (bedroom.width, bedroom.height, len(bedroom)) == (960, 540, 200)
    cups = open_frames(media("cups.mp4"))
    assert (cups.width, cups.height, len(cups)) == (1280, 720, 300)


def test_real_clip_backward_matches_forward():
    src = open_frames(media("bedroom.mp4"), block_size=8)
    fw = collect(src, range(100, 140))
    bw = collect(src, range(139, 99, -1))
    for i in range(100, 140):
        assert fw[i].shape == (540, 960, 3)
        assert np.array_equal(fw[i], bw[i]), i
    assert not np.array_equal(fw[100], fw[139])
    # a lone frame far into the clip equals the one reached by decoding through
    (_, f120), = src.frames([120])
    assert np.array_equal(np.asarray(f120), fw[120])


def write_folder(folder, names, size=(40, 30)):
    from PIL import Image

    folder.mkdir()
    for k, name in enumerate(names):
        img = np.full((size[1], size[0], 3), k * 20, np.uint8)
        Image.fromarray(img).save(folder / name)
    return folder


def test_folder_is_numbered_by_its_file_names(tmp_path):
    names = ["shot_10.png", "shot_8.png", "shot_11.png", "shot_12.png", "shot_9.png"]
    folder = write_folder(tmp_path / "f", names)
    (folder / "notes.txt").write_text("not a frame")
    (folder / ".hidden.png").write_bytes(b"junk")
    src = open_frames(folder)
    assert isinstance(src, PlateFrames)
    assert [f.name for f in src.files] == ["shot_8.png", "shot_9.png", "shot_10.png", "shot_11.png", "shot_12.png"]
    assert (src.width, src.height, len(src), src.first_index, src.padding) == (40, 30, 5, 8, 1)
    got = collect(src, range(12, 7, -1))
    # written value k*20 for names[k]: frame 8 is names[1], frame 12 is names[3]
    assert [int(got[i][0, 0, 0]) for i in range(8, 13)] == [20, 80, 0, 40, 60]
    assert got[8].shape == (30, 40, 3) and got[8].dtype == np.uint8


def test_folder_formats_and_modes(tmp_path):
    from PIL import Image

    for ext, kw in ((".jpg", {}), (".png", {}), (".webp", {"lossless": True})):
        folder = tmp_path / ext[1:]
        folder.mkdir()
        Image.fromarray(np.full((8, 8, 3), 50, np.uint8)).save(folder / f"0001{ext}", **kw)
        Image.fromarray(np.full((8, 8), 100, np.uint8), "L").save(folder / f"0002{ext}", **kw)
        if ext != ".jpg":
            Image.fromarray(np.full((8, 8, 4), 150, np.uint8), "RGBA").save(folder / f"0003{ext}", **kw)
        src = open_frames(folder)
        got = collect(src, range(1, 1 + len(src)))
        assert all(tuple(f.shape) == (8, 8, 3) for f in got.values())
        assert abs(int(got[1][0, 0, 0]) - 50) <= 1 and abs(int(got[2][0, 0, 0]) - 100) <= 1
        if ext != ".jpg":
            assert abs(int(got[3][0, 0, 0]) - 150) <= 1


def test_folder_size_mismatch_names_the_file(tmp_path):
    from PIL import Image

    folder = write_folder(tmp_path / "f", ["1.png", "2.png", "3.png"])
    Image.fromarray(np.zeros((31, 41, 3), np.uint8)).save(folder / "3.png")
    with pytest.raises(FrameError, match=r"3\.png.*41x31.*40x30"):
        open_frames(folder)


def test_errors(tmp_path):
    with pytest.raises(FrameError, match="does not exist"):
        open_frames(tmp_path / "nope.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FrameError, match="no frames in folder"):
        open_frames(tmp_path / "empty")
    (tmp_path / "clip.gif").write_bytes(b"GIF89a")
    with pytest.raises(FrameError, match="unsupported extension"):
        open_frames(tmp_path / "clip.gif")
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x01this is not a video" * 100)
    with pytest.raises(FrameError, match="cannot read video"):
        open_frames(tmp_path / "bad.mp4")
    (tmp_path / "frames").mkdir()
    (tmp_path / "frames" / "0001.png").write_bytes(b"not a png")
    with pytest.raises(FrameError, match="0001.png"):
        open_frames(tmp_path / "frames")
    assert issubclass(FrameError, ValueError)


def test_truncated_video_is_a_frame_error(tmp_path):
    good = write_video(tmp_path / "v.mkv", n=40, w=64, h=48)
    data = good.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 3])
    try:
        src = open_frames(cut)
    except FrameError:
        return  # refused up front: fine
    # mkv headers do not carry the frame count, so the demux count sees the cut
    assert len(src) < 40
    collect(src, range(len(src) - 1, -1, -1))


# --- bounded allocations ---------------------------------------------------------------------


def test_video_over_the_frame_limit_is_refused_from_its_header(tmp_path, monkeypatch):
    video = write_video(tmp_path / "v.mkv", n=3)
    monkeypatch.setenv("SAM2LONG_MAX_FRAME_SIDE", "32")
    with pytest.raises(FrameError, match=r"video .* is 64x48 \(3,072 pixels\), over the limit of 32 pixels a "
                                         r"side .*SAM2LONG_MAX_FRAME_SIDE"):
        open_frames(video)


def test_video_decoding_stays_within_the_checked_size(tmp_path, monkeypatch):
    video = write_video(tmp_path / "v.mkv", n=3)
    src = open_frames(video)
    # FFmpeg's decoder is held to the pixel limit too (its max_pixels), should the stream grow
    monkeypatch.setenv("SAM2LONG_MAX_FRAME_PIXELS", "1000")
    with pytest.raises(FrameError, match="cannot decode video"):
        collect(src, [0])
    monkeypatch.delenv("SAM2LONG_MAX_FRAME_PIXELS")
    # a decoded frame of another size than the header's is refused before it is converted
    src.width, src.height = 32, 24
    with pytest.raises(FrameError, match=r"frame 0 of video .* is 64x48 but the video is 32x24"):
        collect(src, [0])


def test_memory_error_while_decoding_video_is_a_frame_error(tmp_path, monkeypatch):
    src = open_frames(write_video(tmp_path / "v.mkv", n=3))

    def no_memory(self, frame, idx):
        raise MemoryError

    monkeypatch.setattr(VideoFrames, "_rgb", no_memory)
    with pytest.raises(FrameError, match=r"out of memory decoding video .* at frame 0 \(64x48\)"):
        collect(src, [0, 1])
