"""Shared fixtures: small random-weight SAM 2 models and synthetic clips.

Models are built from the `sam2` configs with seeded random weights at a small
input size, so the whole suite runs on a CPU in minutes.
"""

import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from sam2long.models.model import LoadedModel, build_net  # noqa: E402

# One intra-op thread: on a small, possibly busy CI box, torch's spinning worker threads
# can make each step 20-30x slower when another process holds a core (measured here).
torch.set_num_threads(1)

SMALL = 128  # model input size for tests
# The real clips (bedroom.mp4, cups.mp4) beside the checkout, as the team's machines have them;
# SAM2LONG_MEDIA names another folder.
MEDIA = Path(os.environ.get("SAM2LONG_MEDIA") or ROOT.parent / "shared" / "media")


def small_net(variant="sam2.1_hiera_tiny", seed=0, image_size=SMALL, target=None):
    torch.manual_seed(seed)
    return build_net(variant, image_size=image_size, target=target)


@pytest.fixture(scope="session")
def tiny_model():
    return LoadedModel.from_net(small_net(), "sam2.1_hiera_tiny", device="cpu")


@pytest.fixture(scope="session")
def tiny_v1_model():
    return LoadedModel.from_net(small_net("sam2_hiera_tiny"), "sam2_hiera_tiny", device="cpu")


def moving_square_clip(n=24, h=72, w=96, size=20, seed=0):
    """A bright square moving over textured noise: [n, h, w, 3] uint8."""
    g = torch.Generator().manual_seed(seed)
    frames = (torch.rand(n, h, w, 3, generator=g) * 90).to(torch.uint8)
    for i in range(n):
        x = 5 + (i * 2) % (w - size - 5)
        y = 10 + (i % 8)
        frames[i, y : y + size, x : x + size] = torch.tensor([230, 60, 40], dtype=torch.uint8)
    return frames


@pytest.fixture(scope="session")
def clip():
    return moving_square_clip()


@pytest.fixture(scope="session")
def micro_model():
    """The smallest input the Hiera backbone takes (64 px): for long or many runs."""
    return LoadedModel.from_net(small_net(image_size=64), "sam2.1_hiera_tiny", device="cpu")


def write_mp4(path, frames, rate=24, codec="libx264"):
    """Encode [h, w, 3] uint8 frames as H.264 (what a user's plate usually is), or `codec`."""
    import av

    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=rate)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        for f in frames:
            for p in s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    return path


def save_checkpoint(net, path):
    """A checkpoint file laid out like Meta's (.pt with a "model" state dict)."""
    torch.save({"model": net.state_dict()}, path)
    return path
