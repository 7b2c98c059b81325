"""Results of a run that the Prompt Editor's routes may show: a Track node's track and the
IMAGE batch an editor was given, each under an id that goes to the browser in the node's UI
output.

Only weak references are kept: a result lives as long as ComfyUI's output cache holds it
(a superseded spilled track still removes its folder when collected), and an id never
reaches anything else on the server. Ids are random, so one client cannot guess another's.
"""

from __future__ import annotations

import secrets
import weakref

_BY_ID: "weakref.WeakValueDictionary[str, object]" = weakref.WeakValueDictionary()


def remember(value) -> str:
    """The id under which `value` (a track result, an IMAGE tensor) is served; the same
    object always gets the same id."""
    for key, held in list(_BY_ID.items()):  # by identity: a tensor's == is elementwise
        if held is value:
            return key
    key = secrets.token_hex(8)
    _BY_ID[key] = value
    return key


def lookup(key: str):
    """The value served under `key`, or None (unknown, or dropped from the cache)."""
    return _BY_ID.get(str(key))
