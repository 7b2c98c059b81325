"""The object selection of a node's `object_ids` text ("" = all, "0,2", "1-3")."""

from __future__ import annotations

import bisect


def _clip(text: str, limit: int = 40) -> str:
    """A user's text, cut short for a one-line message."""
    return text if len(text) <= limit else text[:limit] + "..."


def _listed(items, limit: int = 10) -> str:
    """ "1, 2, 3" for at most `limit` items, then how many more: messages stay one short line."""
    items = list(items)
    text = ", ".join(str(i) for i in items[:limit])
    return text + (f" and {len(items) - limit} more" if len(items) > limit else "")


def select_objects(track, spec: str | None) -> list[int]:
    """Parse an object selection: "" / "all" / "*" = every object, else ids and ranges such as
    "0,2" or "1-3", in the order given. A range picks the track's ids inside it (found by
    bisection, never expanded: "0-999999999" costs what the track's ids cost); a single id,
    or a range holding none of them, that is not in the track is an error."""
    if spec is None or not str(spec).strip() or str(spec).strip().lower() in ("all", "*"):
        return list(track.obj_ids)
    known = sorted(track.obj_ids)
    chosen: dict[int, None] = {}  # ordered, and never longer than the track's ids
    missing: list[str] = []
    for part in str(spec).replace(";", ",").replace(" ", ",").split(","):
        part = part.strip()
        if not part:
            continue
        try:
            low, high = (int(v) for v in part.split("-", 1)) if "-" in part else (int(part),) * 2
        except ValueError:
            raise ValueError(f"SAM2Long: cannot read object ids {_clip(str(spec))!r}; "
                             f"use e.g. \"0,2\" or \"1-3\"") from None
        if low > high:
            raise ValueError(f"SAM2Long: object id range {_clip(part)} runs backwards; write it low-high, "
                             f"e.g. \"{high}-{low}\"")
        inside = known[bisect.bisect_left(known, low):bisect.bisect_right(known, high)]
        if not inside:
            missing.append(_clip(part))
        chosen.update(dict.fromkeys(inside))
    if missing:
        raise ValueError(f"SAM2Long: object id(s) {_listed(missing)} are not in this track "
                         f"(it has {_listed(known)})")
    return list(chosen)
