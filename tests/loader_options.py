"""Test-only settings of the pack's Model Loader, kept out of the product code.

Real use loads SAM 2 at its 1024 input and SAM 3's tracker at its own sizes. Tests use
random-weight models: SAM 2 at a smaller input (a tiny model at 1024 is slow on a CPU)
and a reduced SAM 3 tracker (whose checkpoint would be refused as not SAM 3's own trunk).
In-process tests call `use_small_models`; a real server gets the same settings from the
test pack `tests/server_hooks`, which reads them from the environment variables below.
"""

from __future__ import annotations

import dataclasses
import functools
import json

IMAGE_SIZE_ENV = "SAM2LONG_TEST_IMAGE_SIZE"  # SAM 2's input size, a multiple of 32
SAM3_SIZES_ENV = "SAM2LONG_TEST_SAM3_CONFIG"  # JSON of Sam3TrackerConfig fields


def patch(loader_module, image_size: int | None = None, sam3_sizes=None):
    """Make the loader module's `load_handle` load with these settings; returns the original."""
    original = getattr(loader_module, "_original_load_handle", loader_module.load_handle)
    loader_module._original_load_handle = original
    loader_module.load_handle = functools.partial(original, image_size=image_size, sam3_sizes=sam3_sizes)
    return original


def use_small_models(monkeypatch, image_size: int | None = None, sam3_sizes=None) -> None:
    """For this test, the already imported `nodes.loader` loads with these settings."""
    import nodes.loader as loader

    monkeypatch.setattr(loader, "load_handle",
                        functools.partial(loader.load_handle, image_size=image_size, sam3_sizes=sam3_sizes))


def sam3_sizes_json(sizes) -> str:
    return json.dumps(dataclasses.asdict(sizes))


def sam3_sizes_from_json(text: str):
    from sam2long.models.sam3.network import Sam3TrackerConfig

    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(text).items()}
    return Sam3TrackerConfig(**fields)
