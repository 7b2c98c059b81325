"""Frames to model input, pixel for pixel as SAM 2's own frame loader makes it.

SAM 2 (`sam2.utils.misc.load_video_frames` on a folder of JPEGs, its default
synchronous path) opens each frame as 8-bit RGB, resizes it to S x S with PIL's
default filter (bicubic), divides the 8-bit values by 255 in float64, stores them
as float32, then subtracts the ImageNet mean and divides by the std in float32.

Here every frame becomes 8-bit first and is resized as PIL resizes it:
- 8-bit frames on the host (files, uint8 arrays, CPU tensors) go through PIL itself,
  so the model input is bit-equal to SAM 2's loader on the same pixels.
- Float frames (ComfyUI IMAGE, 0..1) are quantised as an 8-bit file of them would
  hold: clamped to 0..1, times 255, rounded to nearest (ties to even). An IMAGE made
  from 8-bit pixels (v / 255 in float32 or float64) gives back exactly v, so it
  gets the same input as the file it came from.
- Frames already on an accelerator are resized by `pil_bicubic`, a torch copy of
  PIL's fixed-point resampler (same coefficients, same 22-bit integer sums, same
  rounding and clamping to 8 bits after each pass), so they never go back to the
  host. Measured against PIL on noise, real frames, up- and downscales: 0 levels
  apart (tests/test_resize.py).
Normalisation is one 3 x 256 table computed with SAM 2's operations, so it is
exact on every device.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from ..models.family import IMG_MEAN, IMG_STD

_A = -0.5  # PIL's bicubic parameter (torch's bicubic uses -0.75)
_SUPPORT = 2.0
_PRECISION_BITS = 22  # PIL's fixed point for 8-bit resampling: 32 - 8 - 2 bits


def _pillow_major() -> int:
    import PIL

    return int(PIL.__version__.split(".")[0])


_PIL_VERTICAL_FIRST = _pillow_major() >= 13  # the pass order follows the Pillow that SAM 2 would use here


def model_input(frame, size: int, device, mean=IMG_MEAN, std=IMG_STD) -> torch.Tensor:
    """[H, W, 3] uint8 (0..255) or float (0..1) frame -> [1, 3, size, size] float32 on `device`,
    normalised by the network family's `mean` / `std` (SAM 2's are ImageNet's)."""
    x = torch.as_tensor(frame)
    if x.dtype != torch.uint8 and not torch.is_floating_point(x):
        raise ValueError(f"frames must be uint8 (0..255) or float (0..1), got {x.dtype}; convert them first")
    if x.device.type == "cpu":
        pixels = torch.from_numpy(pil_resize(quantise(x).numpy(), size))
    else:
        pixels = pil_bicubic(quantise(x).permute(2, 0, 1), size).permute(1, 2, 0)
    return normalise(pixels.to(device, non_blocking=True), mean, std)


def quantise(x: torch.Tensor) -> torch.Tensor:
    """Frames as 8 bits: uint8 as they are, floats in 0..1 rounded to the nearest level."""
    if x.dtype == torch.uint8:
        return x
    return (x.float().clamp(0, 1) * 255).round().to(torch.uint8)


def pil_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """[H, W, 3] uint8 -> [size, size, 3] uint8, exactly as SAM 2's loader resizes."""
    from PIL import Image

    return np.array(Image.fromarray(np.ascontiguousarray(frame)).resize((size, size)))


def normalise(pixels: torch.Tensor, mean=IMG_MEAN, std=IMG_STD) -> torch.Tensor:
    """[S, S, 3] uint8 -> [1, 3, S, S] float32: SAM 2's (v / 255 - mean) / std, by table."""
    table = _table(pixels.device, tuple(mean), tuple(std))
    offsets = torch.arange(0, 3 * 256, 256, device=pixels.device)
    return torch.take(table, pixels.long() + offsets).permute(2, 0, 1)[None].contiguous()


@functools.lru_cache(maxsize=8)
def _table(device, mean: tuple, std: tuple) -> torch.Tensor:
    # SAM 2's operations: uint8 / 255.0 in numpy (float64), cast to float32, then
    # float32 subtract and divide; elementwise IEEE arithmetic, so a table is exact.
    levels = torch.from_numpy(np.arange(256, dtype=np.uint8) / 255.0).to(torch.float32)
    t = levels.repeat(3, 1)
    t -= torch.tensor(mean, dtype=torch.float32)[:, None]
    t /= torch.tensor(std, dtype=torch.float32)[:, None]
    return t.flatten().to(device)


# ---- PIL's bicubic resampling in torch ------------------------------------------------------


def pil_bicubic(x: torch.Tensor, size: int) -> torch.Tensor:
    """[C, H, W] uint8 -> [C, size, size] uint8 as PIL's `resize((size, size), BICUBIC)`.

    Separable, in PIL's pass order; each pass sums integer pixels times integer
    (22-bit fixed-point) weights in int32, rounds, shifts and clamps to 8 bits, as
    PIL does. Downscaling widens the kernel by the scale factor (PIL's antialias)."""
    out = x.to(torch.int32)
    _, h, w = x.shape
    passes = [(2, w), (1, h)]  # (dim, input size): horizontal, then vertical
    if _PIL_VERTICAL_FIRST and h - size > 0 and h - size > (w - size) * 2:
        passes.reverse()  # Pillow >= 13 runs the vertical pass first when height shrinks much more
    for dim, n in passes:
        if n != size:
            out = _resample(out, *_taps(n, size, x.device), dim=dim)
    return out.to(torch.uint8)


def _resample(x: torch.Tensor, index: torch.Tensor, weight: torch.Tensor, dim: int) -> torch.Tensor:
    shape = [1] * x.ndim
    shape[dim] = -1
    acc = None
    for k in range(index.size(1)):
        term = x.index_select(dim, index[:, k]) * weight[:, k].view(shape)
        acc = term if acc is None else acc + term
    return ((acc + (1 << (_PRECISION_BITS - 1))) >> _PRECISION_BITS).clamp_(0, 255)


def _bicubic(x: float) -> float:
    # PIL's kernel, written in its order of operations so the doubles are the same.
    x = abs(x)
    if x < 1.0:
        return ((_A + 2.0) * x - (_A + 3.0)) * x * x + 1
    if x < 2.0:
        return (((x - 5) * x + 8) * x - 4) * _A
    return 0.0


@functools.lru_cache(maxsize=32)
def _taps(in_size: int, out_size: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """PIL's coefficients for one axis: source indices [out, K] and fixed-point weights [out, K]
    (unused taps point at a valid pixel with weight 0)."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = _SUPPORT * filterscale
    ksize = int(np.ceil(support)) * 2 + 1
    index = np.zeros((out_size, ksize), dtype=np.int64)
    weight = np.zeros((out_size, ksize), dtype=np.int32)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        k = [_bicubic((x + xmin - center + 0.5) * (1.0 / filterscale)) for x in range(xmax)]
        total = 0.0
        for w in k:
            total += w
        if total != 0.0:
            k = [w / total for w in k]
        index[xx] = xmin
        index[xx, :xmax] = np.arange(xmin, xmin + xmax)
        weight[xx, :xmax] = [int(w * (1 << _PRECISION_BITS) + (0.5 if w >= 0 else -0.5)) for w in k]
    return torch.from_numpy(index).to(device), torch.from_numpy(weight).to(device)
