"""The checkers of the values `sam2long track` and `batch` take, in one place.

Each checker takes the text of a command-line argument or the value of a job-file key (a
YAML or JSON number, string, boolean or list) and returns the value, or raises `BadValue`
naming the value and what it must be. The command line turns `BadValue` into argparse's
one-line error; the job-file reader prefixes the key it came from.
"""

from __future__ import annotations

import math


class BadValue(ValueError):
    """A refused value: the message names it and what it must be."""


def argparse_type(check):
    """`check` as an argparse type: its refusal becomes argparse's one-line error."""
    import argparse  # here: a job file is read without it

    def parse(text):
        try:
            return check(text)
        except BadValue as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = check.__name__  # argparse names the type in some messages
    return parse


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)  # YAML's true is not 1


def whole_number(value) -> int:
    if isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            pass
    elif isinstance(value, int) and not isinstance(value, bool):
        return value
    raise BadValue(f"{value!r} is not a whole number")  # 2.5 and "2.0" too: nothing is rounded


def zero_or_more(value) -> int:
    v = whole_number(value)
    if v < 0:
        raise BadValue(f"{value!r} must be 0 or more")
    return v


def one_or_more(value) -> int:
    v = zero_or_more(value)
    if v < 1:
        raise BadValue(f"{value!r} must be 1 or more")
    return v


def max_lag(value) -> int:
    v = zero_or_more(value)
    if v < 1:
        raise BadValue(f"{value!r} must be 1 or more (masks at most K frames behind the tracking); "
                       f"leave --max-lag out for exact masks")
    return v


def finite_number(value) -> float:
    try:
        v = float(value) if isinstance(value, str) or _is_number(value) else None
    except ValueError:
        v = None
    if v is None:
        raise BadValue(f"{value!r} is not a number")
    if not math.isfinite(v):  # float() takes "inf", "nan" and "1e999"
        raise BadValue(f"{value!r} must be a finite number (not inf or nan)")
    return v


def _numbers(value, what: str, counts: tuple[int, ...]) -> tuple[list[float], str]:
    """The numbers of "X,Y" or [X, Y], and the value as the message shows it."""
    values: list[float] = []
    shown = repr(value)
    if isinstance(value, str):
        try:
            values = [float(v) for v in value.replace(" ", "").split(",") if v != ""]
        except ValueError:
            values = []
    elif isinstance(value, (list, tuple)) and all(_is_number(v) or isinstance(v, str) for v in value):
        try:
            values = [float(v) for v in value]
        except ValueError:
            values = []
    if len(values) not in counts:
        raise BadValue(f"{what} {shown} must be {' or '.join(str(c) for c in counts)} comma-separated numbers")
    if not all(math.isfinite(v) for v in values):
        raise BadValue(f"{what} {shown}: every value must be a finite number (not inf or nan)")
    return values, shown


def point(value) -> tuple[float, float, int]:
    """X,Y or X,Y,LABEL: a click; LABEL 1 on the object (the default), 0 not on it."""
    v, shown = _numbers(value, "--point", (2, 3))
    label = 1 if len(v) == 2 else v[2]
    if label not in (0, 1):  # 1.5 too: a label is not rounded
        raise BadValue(f"--point {shown}: the label must be 1 (positive) or 0 (negative)")
    return (v[0], v[1], int(label))


def box(value) -> tuple[float, float, float, float]:
    (x0, y0, x1, y1), shown = _numbers(value, "--box", (4,))
    if x1 <= x0 or y1 <= y0:
        raise BadValue(f"--box {shown} must be X0,Y0,X1,Y1 with X1 > X0 and Y1 > Y0")
    return (x0, y0, x1, y1)


def text(value) -> str:
    """A name or a path: a job file may write a number where a name is meant (a colour space "709")."""
    if isinstance(value, str):
        return value
    if _is_number(value):
        return str(value)
    raise BadValue(f"give one name or path, not {value!r}")


def switch(value) -> bool:
    if not isinstance(value, bool):
        raise BadValue(f"give true or false, not {value!r}")
    return value


def one_of(value, choices: tuple[str, ...]) -> str:
    if value not in choices:
        raise BadValue(f"invalid choice: {value!r} (choose from {', '.join(choices)})")
    return value
