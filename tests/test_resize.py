"""Model input is SAM 2's: bit-equal to its own JPEG loader for 8-bit frames, the same
after quantisation for float (ComfyUI IMAGE) frames, and the torch copy of PIL's
bicubic (used for frames already on an accelerator) equal to PIL."""

import numpy as np
import pytest
import torch
from PIL import Image
from sam2.utils.misc import load_video_frames

from sam2long.engine.core import InferenceCore
from sam2long.engine.resize import model_input, normalise, pil_bicubic, pil_resize, quantise
from sam2long.media.frames import TensorFrames, open_frames

from conftest import MEDIA, moving_square_clip


def write_jpegs(frames, folder):
    folder.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(np.asarray(f)).save(folder / f"{i:05d}.jpg", quality=90)
    return folder


def sam2_input(folder, size):
    """SAM 2's loader, as its predictor calls it (synchronous, float32)."""
    images, _, _ = load_video_frames(str(folder), size, offload_video_to_cpu=True, compute_device=torch.device("cpu"))
    return images


def our_input(folder, size):
    source = open_frames(folder)
    return torch.cat([model_input(f, size, "cpu") for _, f in source.frames(range(len(source)))])


def bedroom_frames(n=3):
    source = open_frames(MEDIA / "bedroom.mp4")
    return [f for _, f in source.frames(range(0, 10 * n, 10))]


@pytest.mark.parametrize(
    "name, size",
    [("synthetic", 128), ("bedroom", 128), ("bedroom", 1024), ("portrait", 1024)],
)
def test_file_frames_are_bit_equal_to_sam2_loader(tmp_path, name, size):
    # Up- and downscales, and a portrait frame (Pillow >= 13 resizes it vertical pass first).
    frames = {
        "synthetic": lambda: list(moving_square_clip(n=4).numpy()),
        "bedroom": bedroom_frames,
        "portrait": lambda: [np.ascontiguousarray(f.transpose(1, 0, 2)) for f in bedroom_frames(2)],
    }[name]()
    folder = write_jpegs(frames, tmp_path / name)
    ref = sam2_input(folder, size)
    ours = our_input(folder, size)
    assert ours.dtype == ref.dtype == torch.float32
    assert torch.equal(ours, ref)


def test_preprocess_is_the_model_input(tiny_model):
    frame = moving_square_clip(n=1)[0]
    core = InferenceCore(tiny_model)
    assert torch.equal(core.preprocess(frame), model_input(frame, tiny_model.image_size, "cpu"))


@pytest.mark.parametrize("dtype", [torch.float16, torch.float32, torch.float64])
def test_float_frames_equal_the_8bit_frames_they_came_from(dtype):
    # ComfyUI's IMAGE is 8-bit pixels / 255 as floats: every level comes back exactly.
    levels = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(quantise(levels.to(dtype) / 255), levels)
    frames = torch.from_numpy(np.stack(bedroom_frames(2)))
    images = TensorFrames(frames.to(dtype) / 255)
    for (_, f8), (_, ff) in zip(TensorFrames(frames).frames(range(2)), images.frames(range(2))):
        assert torch.equal(model_input(ff, 128, "cpu"), model_input(f8, 128, "cpu"))


def test_quantise_rounds_to_nearest_and_clamps():
    x = torch.tensor([-0.2, 0.0, 0.4 / 255, 0.6 / 255, 0.5, 1.0, 1.7])
    assert quantise(x).tolist() == [0, 0, 0, 1, 128, 255, 255]  # 0.5 * 255 = 127.5: ties to even


def test_other_integer_frames_are_refused():
    with pytest.raises(ValueError, match="uint8.*float"):
        model_input(torch.zeros(8, 8, 3, dtype=torch.int16), 64, "cpu")


def test_torch_bicubic_equals_pil_on_noise():
    # Measured difference to PIL: 0 levels on every shape tried (up, down, mixed, both
    # pass orders, tiny and large factors).
    rng = np.random.default_rng(0)
    shapes = [(int(h), int(w), int(s)) for h, w, s in rng.integers(3, 260, (40, 3))]
    shapes += [(72, 96, 128), (300, 20, 64), (20, 300, 64), (2000, 30, 100), (129, 127, 128)]
    for h, w, s in shapes:
        a = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        ours = pil_bicubic(torch.from_numpy(a).permute(2, 0, 1), s).permute(1, 2, 0).numpy()
        assert np.array_equal(ours, pil_resize(a, s)), (h, w, s)


def test_torch_bicubic_equals_pil_on_a_real_720p_frame():
    _, frame = next(open_frames(MEDIA / "cups.mp4").frames([0]))
    ours = pil_bicubic(torch.from_numpy(frame).permute(2, 0, 1), 1024).permute(1, 2, 0)
    assert np.array_equal(ours.numpy(), pil_resize(frame, 1024))


def test_device_path_equals_host_path():
    # What model_input does for frames on an accelerator, run here on the CPU.
    x = torch.from_numpy(np.stack(bedroom_frames(1)))[0].float() / 255
    on_device = normalise(pil_bicubic(quantise(x).permute(2, 0, 1), 128).permute(1, 2, 0))
    assert torch.equal(on_device, model_input(x, 128, "cpu"))
