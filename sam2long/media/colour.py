"""Colour: the transfer functions that take a plate's pixels to display-referred 0..1, then
to 8 bit, and the default transfer of each file type (see `plates` for the table)."""

from __future__ import annotations

import numpy as np

_CINEON_BLACK = 10.0 ** ((95.0 - 685.0) * 0.002 / 0.6)


def srgb_oetf(linear: np.ndarray) -> np.ndarray:
    """Scene-linear Rec.709 -> sRGB-encoded, clipped to 0..1."""
    x = np.clip(linear, 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055)


def srgb_to_linear(encoded: np.ndarray) -> np.ndarray:
    """sRGB-encoded 0..1 -> scene-linear (the inverse of `srgb_oetf`)."""
    v = np.asarray(encoded, np.float64)
    return np.where(v <= 0.04045, v / 12.92, np.power((v + 0.055) / 1.055, 2.4))


def cineon_to_linear(code: np.ndarray) -> np.ndarray:
    """Cineon log code value as 0..1 of 1023 -> linear (reference black 95, white 685)."""
    return (np.power(10.0, (np.asarray(code, np.float64) * 1023.0 - 685.0) * 0.002 / 0.6)
            - _CINEON_BLACK) / (1.0 - _CINEON_BLACK)


def quantise(display: np.ndarray) -> np.ndarray:
    """0..1 -> uint8, rounding half up as an 8-bit image write does."""
    return np.floor(np.clip(display, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


TRANSFERS = {
    "linear": lambda v: srgb_oetf(v),
    "cineon": lambda v: srgb_oetf(cineon_to_linear(v)),
    "srgb": lambda v: np.clip(v, 0.0, 1.0),
}
DESCRIPTIONS = {
    "linear": "scene-linear Rec.709 -> sRGB, clipped to 0..1",
    "cineon": "Cineon log -> linear -> sRGB, clipped to 0..1",
    "srgb": "taken as sRGB",
}
_LUTS: dict[tuple[str, str], np.ndarray] = {}


def transfer_lut(transfer: str, kind: str) -> np.ndarray:
    """uint8 for each of the 65536 half-float bit patterns or uint16 codes: exact and
    far cheaper than evaluating the transfer per pixel."""
    key = (transfer, kind)
    if key not in _LUTS:
        codes = np.arange(65536, dtype=np.uint16)
        values = codes.view(np.float16).astype(np.float64) if kind == "half" else codes / 65535.0
        values = np.nan_to_num(values, nan=0.0, posinf=1.0, neginf=0.0)
        _LUTS[key] = quantise(TRANSFERS[transfer](values))
    return _LUTS[key]


_DPX_VIDEO = ("unspecified video", "smpte", "itu-r", "ntsc", "pal")  # header transfers of video curves


def default_transfer(ext: str, pixel_format: str, dpx_transfer: str = "") -> tuple[str, str]:
    """(transfer name, why) applied to a file type by default."""
    if ext == ".exr":
        return "linear", "EXR"
    if ext in (".tif", ".tiff"):
        if pixel_format in ("half", "float", "double"):
            return "linear", f"{pixel_format} TIFF"
        return "srgb", "TIFF"
    if ext == ".dpx":
        t = dpx_transfer.strip()
        low = t.lower()
        if low == "linear":
            return "linear", "DPX (header: linear)"
        if any(low.startswith(v) for v in _DPX_VIDEO):
            return "srgb", f"DPX (header: {t})"
        return "cineon", f"DPX (header: {t or 'none'})"
    return "srgb", ext.lstrip(".").upper()
