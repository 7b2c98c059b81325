"""A minimal stand-in for the ComfyUI modules the SAM2Long nodes import.

`install(models_dir)` puts fake `comfy_api.latest` (io, ui, ComfyExtension),
`folder_paths` (models, input, output and temp folders beside `models_dir`, as in a
ComfyUI checkout), `comfy.utils`, `comfy.model_management` and `comfy.model_patcher`
into sys.modules; `uninstall()` removes them again. The fakes follow the V3
behaviour the nodes rely on (schema id rules, optional inputs absent, classmethod
execution, ProgressBar hook, interrupt exception) and record what the nodes did in
`STATE` so tests can assert on it.
"""

from __future__ import annotations

import os
import sys
import types

import torch

MODULES = ("comfy_api", "comfy_api.latest", "comfy_api.latest._io", "comfy_api.latest._ui",
           "folder_paths", "comfy", "comfy.utils", "comfy.model_management", "comfy.model_patcher", "server")


class State:
    def __init__(self):
        self.progress: list[tuple[int, int]] = []
        self.loaded: list = []
        self.interrupt_after: int | None = None  # raise on the n-th interrupt check
        self.interrupt_checks = 0


STATE = State()


# ----------------------------------------------------------------------------- io

def _io_module():
    io = types.ModuleType("comfy_api.latest._io")

    class Input:
        def __init__(self, id, display_name=None, optional=False, tooltip=None, lazy=None, default=None,
                     **extra):
            self.id, self.display_name, self.optional, self.tooltip = id, display_name, optional, tooltip
            self.lazy, self.default, self.extra = lazy, default, extra

    class Output:
        def __init__(self, id=None, display_name=None, tooltip=None, is_output_list=False):
            self.id, self.display_name, self.tooltip = id, display_name, tooltip

    def comfytype(io_type):
        def make(name, base_input=Input):
            in_cls = type("Input", (base_input,), {"io_type": io_type})
            out_cls = type("Output", (Output,), {"io_type": io_type})
            return type(name, (), {"io_type": io_type, "Input": in_cls, "Output": out_cls})
        return make

    for name, t in [("Boolean", "BOOLEAN"), ("Int", "INT"), ("Float", "FLOAT"), ("String", "STRING"),
                    ("Image", "IMAGE"), ("Mask", "MASK"), ("Video", "VIDEO"), ("BBOX", "BBOX")]:
        setattr(io, name, comfytype(t)(name))

    class ComboInput(Input):
        def __init__(self, id, options=None, **kw):
            super().__init__(id, **kw)
            self.options = list(options or [])

    Combo = comfytype("COMBO")("Combo", ComboInput)
    io.Combo = Combo

    class UploadType:  # the values are ComfyUI's
        image, audio, video, model = "image_upload", "audio_upload", "video_upload", "file_upload"

    io.UploadType = UploadType

    def Custom(io_type):
        return comfytype(io_type)(f"Custom_{io_type}")

    io.Custom = Custom

    class MultiTypeInput(Input):
        def __init__(self, id, types, **kw):
            super().__init__(id, **kw)
            self.types = types
            self.io_type = ",".join(t.io_type for t in types)

    io.MultiType = type("MultiType", (), {"Input": MultiTypeInput})

    class Hidden:
        unique_id, prompt, extra_pnginfo = "UNIQUE_ID", "PROMPT", "EXTRA_PNGINFO"

    io.Hidden = Hidden

    class Schema:
        _FIELDS = {"node_id", "display_name", "category", "inputs", "outputs", "hidden", "description",
                   "is_input_list", "is_output_node", "is_deprecated", "is_experimental", "is_api_node",
                   "not_idempotent", "enable_expand"}  # as in ComfyUI 0.3.64: no search_aliases

        def __init__(self, **kw):
            unknown = set(kw) - self._FIELDS
            if unknown:
                raise TypeError(f"Schema() got unexpected keyword arguments {sorted(unknown)} "
                                "(not in ComfyUI 0.3.64)")
            self.node_id = kw["node_id"]
            self.display_name = kw.get("display_name")
            self.category = kw.get("category", "sd")
            self.inputs = kw.get("inputs") or []
            self.outputs = kw.get("outputs") or []
            self.hidden = kw.get("hidden") or []
            self.description = kw.get("description", "")
            self.is_output_node = kw.get("is_output_node", False)
            self.not_idempotent = kw.get("not_idempotent", False)

        def validate(self):
            ins = [i.id for i in self.inputs]
            outs = [o.id for o in self.outputs]
            if len(set(ins)) != len(ins) or len(set(outs)) != len(outs):
                raise ValueError("Ids must be unique")
            if set(ins) & set(outs):
                raise ValueError("Ids must be unique between inputs and outputs")

    io.Schema = Schema

    class NodeOutput:
        def __init__(self, *args, ui=None, expand=None, block_execution=None):
            self.args, self.ui = args, ui

        @property
        def result(self):
            return self.args

    io.NodeOutput = NodeOutput

    class ComfyNode:
        def __init__(self):  # V3 nodes have no instance state
            raise TypeError("V3 nodes are used as classes, never instantiated")

        @classmethod
        def define_schema(cls):
            raise NotImplementedError

        @classmethod
        def execute(cls, **kwargs):
            raise NotImplementedError

    io.ComfyNode = ComfyNode
    return io


def _ui_module():
    ui = types.ModuleType("comfy_api.latest._ui")

    class PreviewImage:
        def __init__(self, image, animated=False, cls=None, **kw):
            assert image.ndim == 4 and image.shape[-1] in (3, 4), image.shape
            self.image, self.cls = image, cls

        def as_dict(self):
            return {"images": [{"filename": f"fake_{i}.png", "type": "temp"} for i in range(len(self.image))]}

    ui.PreviewImage = PreviewImage
    return ui


# ----------------------------------------------------------------------------- folder_paths

def _folder_paths(models_dir: str):
    fp = types.ModuleType("folder_paths")
    fp.models_dir = models_dir
    base = os.path.dirname(os.path.abspath(models_dir))
    fp.input_directory, fp.output_directory, fp.temp_directory = (os.path.join(base, d)
                                                                  for d in ("input", "output", "temp"))
    fp.get_input_directory = lambda: fp.input_directory
    fp.get_output_directory = lambda: fp.output_directory
    fp.get_temp_directory = lambda: fp.temp_directory

    def get_annotated_filepath(name, default_dir=None):
        # "name [output]" / "[input]" / "[temp]" picks the folder; plain names are in the input folder
        for tag, folder in (("output", fp.output_directory), ("input", fp.input_directory),
                            ("temp", fp.temp_directory)):
            if name.endswith(f" [{tag}]"):
                return os.path.join(folder, name[:-len(tag) - 3])
        return os.path.join(default_dir or fp.input_directory, name)

    fp.get_annotated_filepath = get_annotated_filepath
    fp.exists_annotated_filepath = lambda name: os.path.exists(get_annotated_filepath(name))
    fp.supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}
    fp.folder_names_and_paths = {"checkpoints": ([os.path.join(models_dir, "checkpoints")],
                                                 fp.supported_pt_extensions)}

    def add_model_folder_path(name, path, is_default=False):
        if name in fp.folder_names_and_paths:
            paths = fp.folder_names_and_paths[name][0]
            if path not in paths:
                paths.insert(0, path) if is_default else paths.append(path)
        else:
            fp.folder_names_and_paths[name] = ([path], set())

    def get_folder_paths(name):
        return fp.folder_names_and_paths[name][0][:]

    def get_filename_list(name):
        paths, exts = fp.folder_names_and_paths[name]
        out = set()
        for p in paths:
            if not os.path.isdir(p):
                continue
            for root, _, files in os.walk(p, followlinks=True):
                for f in files:
                    if not exts or os.path.splitext(f)[1].lower() in exts:
                        out.add(os.path.relpath(os.path.join(root, f), p).replace(os.sep, "/"))
        return sorted(out)

    def get_full_path(name, filename):
        if name not in fp.folder_names_and_paths:
            return None
        for p in fp.folder_names_and_paths[name][0]:
            full = os.path.join(p, filename)
            if os.path.isfile(full):
                return full
        return None

    fp.add_model_folder_path = add_model_folder_path
    fp.get_folder_paths = get_folder_paths
    fp.get_filename_list = get_filename_list
    fp.get_full_path = get_full_path
    return fp


# ----------------------------------------------------------------------------- comfy.*

def _comfy_modules():
    comfy = types.ModuleType("comfy")
    comfy.__path__ = []

    utils = types.ModuleType("comfy.utils")

    class ProgressBar:
        def __init__(self, total, node_id=None):
            self.total, self.current = total, 0

        def update_absolute(self, value, total=None, preview=None):
            if total is not None:
                self.total = total
            self.current = min(value, self.total)
            STATE.progress.append((self.current, self.total))

        def update(self, value):
            self.update_absolute(self.current + value)

    utils.ProgressBar = ProgressBar

    mm = types.ModuleType("comfy.model_management")

    class InterruptProcessingException(Exception):
        pass

    def throw_exception_if_processing_interrupted():
        STATE.interrupt_checks += 1
        if STATE.interrupt_after is not None and STATE.interrupt_checks >= STATE.interrupt_after:
            raise InterruptProcessingException()

    def load_models_gpu(models, memory_required=0, force_patch_weights=False, minimum_memory_required=None,
                        force_full_load=False):
        for m in models:
            m.model.to(m.load_device)
            m.model.device = m.load_device  # as ComfyUI's ModelPatcher.load does
            STATE.loaded.append(m)

    mm.InterruptProcessingException = InterruptProcessingException
    mm.throw_exception_if_processing_interrupted = throw_exception_if_processing_interrupted
    mm.load_models_gpu = load_models_gpu
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.unet_offload_device = lambda: torch.device("cpu")
    mm.intermediate_device = lambda: torch.device("cpu")
    mm.module_size = lambda module: sum(t.nelement() * t.element_size() for t in module.state_dict().values())

    mp = types.ModuleType("comfy.model_patcher")

    class ModelPatcher:
        def __init__(self, model, load_device, offload_device, size=0, weight_inplace_update=False):
            self.model, self.load_device, self.offload_device, self.size = model, load_device, offload_device, size

    mp.ModelPatcher = ModelPatcher
    comfy.utils, comfy.model_management, comfy.model_patcher = utils, mm, mp
    return comfy, utils, mm, mp


# ----------------------------------------------------------------------------- VIDEO

class VideoFromFile:
    """Core's VIDEO value for a file (comfy_api.latest.InputImpl.VideoFromFile): the file
    is reachable through get_stream_source(); get_components() would decode every frame
    into memory, which a streaming node must never call."""

    def __init__(self, file):
        self.__file = file

    def get_stream_source(self):
        return self.__file

    def get_components(self):
        raise AssertionError("get_components() decodes the whole video into memory")


# ----------------------------------------------------------------------------- server

def _server_module():
    """ComfyUI's `server.PromptServer.instance.routes` (an aiohttp RouteTableDef): here it
    only records the GET handlers added, as {path: handler} in `routes.added`."""
    server = types.ModuleType("server")

    class Routes:
        def __init__(self):
            self.added = {}

        def get(self, path):
            def add(handler):
                self.added[path] = handler
                return handler
            return add

    server.PromptServer = type("PromptServer", (), {"instance": types.SimpleNamespace(routes=Routes())})
    return server


# ----------------------------------------------------------------------------- install

def install(models_dir: str) -> None:
    global STATE
    STATE = State()
    io, ui = _io_module(), _ui_module()
    latest = types.ModuleType("comfy_api.latest")
    latest.__path__ = []
    latest.io, latest.ui, latest._io, latest._ui = io, ui, io, ui

    class ComfyExtension:
        async def on_load(self):
            return None

        async def get_node_list(self):
            raise NotImplementedError

    latest.ComfyExtension = ComfyExtension
    latest.InputImpl = types.SimpleNamespace(VideoFromFile=VideoFromFile)
    api = types.ModuleType("comfy_api")
    api.__path__ = []
    api.latest = latest
    comfy, utils, mm, mp = _comfy_modules()
    sys.modules.update({
        "comfy_api": api, "comfy_api.latest": latest, "comfy_api.latest._io": io, "comfy_api.latest._ui": ui,
        "folder_paths": _folder_paths(models_dir), "comfy": comfy, "comfy.utils": utils,
        "comfy.model_management": mm, "comfy.model_patcher": mp, "server": _server_module(),
    })


def uninstall() -> None:
    for name in MODULES:
        sys.modules.pop(name, None)


def state() -> State:
    return STATE


# ----------------------------------------------------------------------------- calling nodes

def run_node(node_cls, **inputs):
    """Call a V3 node as ComfyUI's executor does: build and validate the schema, pass
    required widget values (the prompt always carries them) and the given inputs;
    optional inputs not given are simply absent. Returns (outputs tuple, ui)."""
    schema = node_cls.define_schema()
    schema.validate()
    kwargs = {}
    for inp in schema.inputs:
        if inp.id in inputs:
            kwargs[inp.id] = inputs[inp.id]
        elif not inp.optional:
            if inp.default is None and not getattr(inp, "options", None):
                raise TypeError(f"{schema.node_id}: required input {inp.id!r} missing")
            kwargs[inp.id] = inp.default if inp.default is not None else inp.options[0]
    unknown = set(inputs) - {i.id for i in schema.inputs}
    if unknown:
        raise TypeError(f"{schema.node_id}: unknown inputs {sorted(unknown)}")
    out = node_cls.execute(**kwargs)
    assert len(out.args) == len(schema.outputs), (schema.node_id, len(out.args), len(schema.outputs))
    return out.args, out.ui
