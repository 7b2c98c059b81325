"""Number widgets checked by the nodes themselves.

A workflow's JSON may carry any value: NaN, Infinity, 1e400, a float where a whole number
belongs. ComfyUI's min/max check lets NaN through and is skipped for inputs a node
validates itself, so each node checks its numbers here and a bad one is a one-line node
error instead of an OverflowError traceback.
"""

from __future__ import annotations

import math
import numbers

MAX_FRAMES = 10_000_000  # frame positions and counts the INT widgets take


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def whole(value, name: str, lo: int, hi: int) -> int:
    """`value` as an int in lo..hi (a float only where it is a whole number), else ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        ok = False
    elif isinstance(value, numbers.Integral):
        ok = lo <= value <= hi
    else:
        ok = math.isfinite(value) and float(value).is_integer() and lo <= value <= hi
    if not ok:
        raise ValueError(f"SAM2Long: {name} must be a whole number from {lo} to {hi}, got {_shown(value)}")
    return int(value)


def real(value, name: str, lo: float, hi: float) -> float:
    """`value` as a finite float in lo..hi, else ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        ok = False
    elif isinstance(value, numbers.Integral):
        ok = lo <= value <= hi
    else:
        ok = math.isfinite(value) and lo <= value <= hi
    if not ok:
        raise ValueError(f"SAM2Long: {name} must be a number from {lo:g} to {hi:g}, got {_shown(value)}")
    return float(value)
