"""Disk per 1080p frame and object: the track store's soft mattes (8/16-bit, zlib 1) beside
its hard masks, and the Cryptomatte EXR. No model: the probability is built as SAM 2 gives
it, a 256x256 logit map upsampled bilinearly to the source size, from a signed distance
(logit slope per low-res pixel `--slope`, a trained model's edge) with mild noise.

    python bench/soft_disk.py [--frames 20]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sam2long.media.cryptomatte import CryptomatteWriter  # noqa: E402
from sam2long.media.trackstore import pack, pack_soft  # noqa: E402

H, W, LOW = 1080, 1920, 256


def logits_for(frame: int, radius: float, slope: float, rng) -> torch.Tensor:
    """[H, W] logits of a blob moving right, as the tracker upsamples them."""
    yy, xx = torch.meshgrid(torch.arange(LOW, dtype=torch.float32), torch.arange(LOW, dtype=torch.float32),
                            indexing="ij")
    cx, cy = 60 + 2 * frame, 128
    wobble = 4 * torch.sin(torch.atan2(yy - cy, xx - cx) * 5 + frame * 0.3)
    low = slope * (radius + wobble - torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2))
    low += torch.from_numpy(rng.normal(0, 0.5, (LOW, LOW)).astype(np.float32))
    return F.interpolate(low[None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--slope", type=float, default=6.0, help="logit change per low-res pixel at the edge")
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(f"1080p, {args.frames} frames, logit slope {args.slope}/low-res px; KiB per frame and object (ms)")
    for label, radius in (("small object (~3% of the frame)", 25.0), ("large object (~30%)", 80.0)):
        sizes = {"hard": [], "soft8": [], "soft16": [], "crypto": []}
        times = {k: [] for k in sizes}
        with tempfile.TemporaryDirectory() as tmp:
            writer = CryptomatteWriter(Path(tmp), [1])
            for f in range(args.frames):
                lg = logits_for(f, radius, args.slope, rng)
                t = time.perf_counter()
                sizes["hard"].append(len(zlib.compress(pack(lg > 0).tobytes(), 1)))
                times["hard"].append(time.perf_counter() - t)
                for bits in (8, 16):
                    t = time.perf_counter()
                    sizes[f"soft{bits}"].append(len(pack_soft(lg, bits)))
                    times[f"soft{bits}"].append(time.perf_counter() - t)
                soft = np.frombuffer(zlib.decompress(pack_soft(lg, 8)), np.uint8).reshape(H, W)
                t = time.perf_counter()
                path = writer.write_frame(f, {1: soft}, (H, W))
                times["crypto"].append(time.perf_counter() - t)
                sizes["crypto"].append(path.stat().st_size)
        row = ", ".join(f"{k} {np.mean(v) / 1024:.1f} KiB ({1000 * np.mean(times[k]):.0f} ms)"
                        for k, v in sizes.items())
        print(f"- {label}: {row}")


if __name__ == "__main__":
    main()
