"""The module paths of sam2long 0.1's flat layout, kept working for one release.

`import sam2long.tracker` (and every other module that moved into engine/, models/,
media/ or app/) still imports, with a DeprecationWarning naming the new path, and gives
the very module object of that path, so patching or reading either name is the same.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

MOVED = {
    **{f"sam2long.{m}": f"sam2long.engine.{m}"
       for m in ("tree", "memory", "step", "tracker", "core", "attention", "resize")},
    **{f"sam2long.{m}": f"sam2long.models.{m}"
       for m in ("model", "family", "loading", "weights", "catalog", "checkpoints")},
    **{f"sam2long.{m}": f"sam2long.media.{m}"
       for m in ("frames", "plates", "shot", "writers", "overlay", "trackstore")},
    **{f"sam2long.{m}": f"sam2long.app.{m}" for m in ("cli", "jobs", "batch")},
}


class _OldPath(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def __init__(self):
        self.own_specs = {}  # new name -> the module's own spec

    def find_spec(self, name, path=None, target=None):
        if name not in MOVED:
            return None
        return importlib.util.spec_from_loader(name, self)

    def create_module(self, spec):
        new = MOVED[spec.name]
        warnings.warn(f"{spec.name} moved to {new}; the old path goes in the next release",
                      DeprecationWarning, stacklevel=3)
        module = importlib.import_module(new)
        self.own_specs.setdefault(new, module.__spec__)
        return module

    def exec_module(self, module):
        # Already executed under its new name. The import system has just stamped the old
        # name's spec on it: give it back its own, or its relative imports would resolve
        # from the old package.
        own = self.own_specs[module.__name__]
        module.__spec__, module.__loader__, module.__package__ = own, own.loader, own.parent


def install() -> None:
    if not any(isinstance(f, _OldPath) for f in sys.meta_path):
        sys.meta_path.append(_OldPath())
