"""SAM2Long Model Loader: a SAM 2 or SAM 3 checkpoint from models/sam2, models/sam3
(or core ComfyUI's SAM 3 file in models/checkpoints), handed to ComfyUI's model
management so it is offloaded when another model needs the VRAM. A catalogue file
chosen as "<name> (download)" is downloaded into models/sam2 on first use."""

from __future__ import annotations

import dataclasses
import os

import torch

from comfy_api.latest import io

from sam2long.options import PRECISIONS

from . import paths
from .sockets import CATEGORY, ModelType

DEVICES = ["auto", "cpu"]
@dataclasses.dataclass(frozen=True, eq=False)
class SAM2LongModelHandle:
    """What flows through a SAM2LONG_MODEL socket.

    `loaded` is the library's LoadedModel (weights in fp32, on the offload device
    while idle); `patcher` is ComfyUI's ModelPatcher around its network, or None
    when model management is not available (then `loaded` is used as it is)."""

    loaded: object
    patcher: object
    precision: str
    name: str

    def acquire(self):
        """The LoadedModel on its compute device, loaded through ComfyUI's manager."""
        from sam2long.models.model import resolve_precision

        if self.patcher is None:
            return self.loaded
        import comfy.model_management as mm

        mm.load_models_gpu([self.patcher], force_full_load=True)
        device = self.patcher.load_device
        return dataclasses.replace(self.loaded, device=device,
                                   precision=resolve_precision(self.precision, device))


class _ManagedNet(torch.nn.Module):
    """What ModelPatcher manages: a plain container around the SAM 2 / SAM 3 network.

    ModelPatcher writes bookkeeping attributes onto the module it manages (among them
    `device`, which SAM2Base and SAM 3's tracker expose as a read-only property), so it gets this
    wrapper; moving the wrapper moves the network."""

    def __init__(self, net: torch.nn.Module, device):
        super().__init__()
        self.net = net
        self.device = device


def _devices(device: str):
    try:
        import comfy.model_management as mm
    except ImportError:  # pragma: no cover - ComfyUI always has it
        return torch.device("cpu"), torch.device("cpu")
    if device == "cpu":
        return torch.device("cpu"), torch.device("cpu")
    return mm.get_torch_device(), mm.unet_offload_device()


def load_handle(path: str, precision: str = "auto", device: str = "auto",
                image_size: int | None = None, sam3_sizes=None) -> SAM2LongModelHandle:
    """`image_size` and `sam3_sizes` as in `load_model_file` (the node keeps the defaults)."""
    from sam2long.models.loading import load_model_file

    load_device, offload_device = _devices(device)
    loaded = load_model_file(path, device=offload_device, precision="fp32", image_size=image_size,
                             sam3_sizes=sam3_sizes)
    patcher = None
    try:
        import comfy.model_management as mm
        import comfy.model_patcher
    except ImportError:  # pragma: no cover
        mm = None
    if mm is not None:
        patcher = comfy.model_patcher.ModelPatcher(_ManagedNet(loaded.net, offload_device),
                                                   load_device=load_device, offload_device=offload_device,
                                                   size=mm.module_size(loaded.net))
    return SAM2LongModelHandle(loaded=loaded, patcher=patcher, precision=precision,
                               name=os.path.basename(path))


def download(name: str) -> str:
    """Download a catalogue file into the first sam2 folder, with ComfyUI's progress bar
    and Cancel; the library's one download checks it and leaves nothing on failure."""
    import comfy.model_management as mm
    import comfy.utils
    from sam2long.models.checkpoints import download_checkpoint

    bar = None

    def progress(done, total):
        nonlocal bar
        mm.throw_exception_if_processing_interrupted()  # Cancel: the partial file is removed
        if total:
            bar = bar or comfy.utils.ProgressBar(total)
            bar.update_absolute(done, total)

    return str(download_checkpoint(name, paths.download_folder(), progress=progress))


class SAM2LongModelLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls):
        return io.Schema(
            node_id="SAM2LongModelLoader",
            display_name="SAM2Long Model Loader",
            category=CATEGORY,
            description=(
                "Loads a SAM 2 / SAM 2.1 checkpoint (.pt or .safetensors) from ComfyUI's models/sam2 "
                "folder, or SAM 3's sam3.pt from models/sam3 or models/checkpoints (where core ComfyUI's "
                "SAM 3 nodes read it); more folders with 'sam2:' / 'sam3:' in extra_model_paths.yaml. "
                "The model is read from the weights, not the file name. Only SAM 3's tracker is kept. "
                "Entries marked (download) are Meta's and kijai's SAM 2 / 2.1 files not there yet: "
                "chosen, one is downloaded once into models/sam2 and checked (size, SHA-256 where "
                "the hub states one, tensors)."),
            inputs=[
                io.Combo.Input("ckpt_name", options=paths.checkpoint_choices(),
                               tooltip="Checkpoint in models/sam2 or models/sam3, e.g. sam2.1_hiera_large.pt "
                                       "or sam3.pt (SAM 3.1 files are not listed: another tracker). "
                                       "'(download)': downloaded into models/sam2 on first use."),
                io.Combo.Input("precision", options=list(PRECISIONS), default="auto",
                               tooltip="Compute precision on CUDA; auto = bf16 where supported, else fp16. "
                                       "CPU and MPS always compute in fp32."),
                io.Combo.Input("device", options=DEVICES, default="auto",
                               tooltip="auto = ComfyUI's device, with offloading managed by ComfyUI."),
            ],
            outputs=[ModelType.Output("model", display_name="model")],
        )

    @classmethod
    def validate_inputs(cls, ckpt_name):
        # Replaces the plain "value not in list" error with one that says where the file goes.
        if paths.find(ckpt_name) is None and paths.to_download(ckpt_name) is None:
            return paths.missing_checkpoint_message(ckpt_name or None)
        return True

    @classmethod
    def execute(cls, ckpt_name, precision="auto", device="auto") -> io.NodeOutput:
        wanted = paths.to_download(ckpt_name)
        path = paths.find(ckpt_name) or (download(wanted) if wanted else paths.full_path(ckpt_name))
        return io.NodeOutput(load_handle(path, precision=precision, device=device))
