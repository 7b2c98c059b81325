"""SAM2Long for ComfyUI: the ComfyUI entry point of this node pack.

ComfyUI imports this folder as a package and calls `comfy_entrypoint()` (V3 API,
ComfyUI >= 0.3.48). The tracking library lives in `sam2long/` next to this file
and never imports ComfyUI; the nodes in `nodes/` are a thin layer over it.
Importing this file installs nothing, downloads nothing and prints nothing.
"""

import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
WEB_DIRECTORY = "./web"  # the Prompt Editor's canvas (ES modules the frontend loads)


def _ensure_library_importable() -> None:
    # `sam2long` imports itself by its absolute name; when the pack is used from a
    # ComfyUI custom_nodes folder (not pip-installed), make the bundled copy
    # importable. Appended, so ComfyUI's own top-level modules are never shadowed.
    if importlib.util.find_spec("sam2long") is None and _HERE not in sys.path:
        sys.path.append(_HERE)


try:
    from comfy_api.latest import ComfyExtension
except ImportError:
    if importlib.util.find_spec("folder_paths") is not None:  # inside an old ComfyUI
        raise ImportError("SAM2Long needs ComfyUI 0.3.48 or newer (the V3 node API, comfy_api.latest); "
                          "update ComfyUI") from None
    ComfyExtension = None  # imported outside ComfyUI (e.g. by a test runner): define nothing

if ComfyExtension is not None:
    _ensure_library_importable()

    from .nodes import NODES
    from .nodes.paths import register_model_folder
    from .nodes.routes import register as register_routes

    register_model_folder()
    register_routes()

    class SAM2LongExtension(ComfyExtension):
        async def get_node_list(self):
            return list(NODES)

    async def comfy_entrypoint() -> "SAM2LongExtension":
        return SAM2LongExtension()
