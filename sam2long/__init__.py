"""SAM2Long: training-free memory-tree tracking on top of SAM 2 (Apache-2.0).

The public API is small; see docs/API.md. Names are imported lazily so that
`import sam2long` stays cheap (no torch or sam2 import until needed).
"""

__version__ = "0.1.0"

_EXPORTS = {
    "load_model": "sam2long.models.loading",
    "LoadedModel": "sam2long.models.model",
    "build_net": "sam2long.models.model",
    "VARIANTS": "sam2long.models.model",
    "Tracker": "sam2long.engine.tracker",
    "FrameResult": "sam2long.engine.tracker",
    "TreeConfig": "sam2long.engine.tree",
    "TensorFrames": "sam2long.media.frames",
    "open_frames": "sam2long.media.frames",
    "PromptError": "sam2long.errors",
    "CheckpointError": "sam2long.errors",
    "FrameError": "sam2long.errors",
}

__all__ = sorted(_EXPORTS)

from . import moved as _moved  # noqa: E402  (the old flat module paths, deprecated)

_moved.install()


def __getattr__(name):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'sam2long' has no attribute {name!r}")
