"""A test-only custom node pack for the real-server tests (no nodes of its own).

It gives the SAM2Long pack's Model Loader the tests' small-model settings
(tests/loader_options.py) from the environment the test server was started with. Custom
nodes load in no fixed order, so the loader module is patched when the first prompt
arrives, when every pack has been imported."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))  # tests/ (the pack is linked in)

import loader_options  # noqa: E402
from server import PromptServer  # noqa: E402

NODE_CLASS_MAPPINGS = {}


def _settings():
    size = os.environ.get(loader_options.IMAGE_SIZE_ENV)
    sam3 = os.environ.get(loader_options.SAM3_SIZES_ENV)
    return (int(size) if size else None), (loader_options.sam3_sizes_from_json(sam3) if sam3 else None)


def _patch_pack_loader(json_data):
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None) or ""
        if path.endswith(os.path.join("nodes", "loader.py")) and hasattr(module, "SAM2LongModelLoader"):
            if not hasattr(module, "_original_load_handle"):
                image_size, sam3_sizes = _settings()
                loader_options.patch(module, image_size, sam3_sizes)
    return json_data


PromptServer.instance.add_on_prompt_handler(_patch_pack_loader)
