"""The SAM 2 network (its input-size default and bound) and the handle the engine works with.

`build_net` builds one of the eight official SAM 2 / SAM 2.1 variants from the
configs shipped in the `sam2` package. It reads the YAML with OmegaConf and
instantiates it with Hydra's `instantiate`, which needs no global Hydra state, so
it works whether or not other code in the process has initialised Hydra, and
from any working directory.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from importlib import resources

import torch

from ..options import PRECISIONS
from .family import SAM2_FAMILY, Family
from .sam3.shims import is_tracker_net

# variant name -> config path inside the sam2 package
VARIANT_CONFIGS = {
    "sam2_hiera_tiny": "configs/sam2/sam2_hiera_t.yaml",
    "sam2_hiera_small": "configs/sam2/sam2_hiera_s.yaml",
    "sam2_hiera_base_plus": "configs/sam2/sam2_hiera_b+.yaml",
    "sam2_hiera_large": "configs/sam2/sam2_hiera_l.yaml",
    "sam2.1_hiera_tiny": "configs/sam2.1/sam2.1_hiera_t.yaml",
    "sam2.1_hiera_small": "configs/sam2.1/sam2.1_hiera_s.yaml",
    "sam2.1_hiera_base_plus": "configs/sam2.1/sam2.1_hiera_b+.yaml",
    "sam2.1_hiera_large": "configs/sam2.1/sam2.1_hiera_l.yaml",
}
VARIANTS = tuple(VARIANT_CONFIGS)

DEFAULT_IMAGE_SIZE = 1024  # SAM 2's input size
IMAGE_SIZE_MULTIPLE = 32  # SAM 2's input size is a multiple of it, so the backbone's strides divide it
# As SAM 2's video predictor (and SAM 3's builder): when a prompt yields a single mask
# (a box, several clicks), fall back to the best of the three if that mask is unstable.
DYNAMIC_MULTIMASK = {
    "dynamic_multimask_via_stability": True,
    "dynamic_multimask_stability_delta": 0.05,
    "dynamic_multimask_stability_thresh": 0.98,
}

_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def fits_sam2(image_size: int) -> bool:
    """Whether SAM 2 takes `image_size` as its input size."""
    return image_size > 0 and image_size % IMAGE_SIZE_MULTIPLE == 0


def check_image_size(image_size: int, where: str = "") -> None:
    if not fits_sam2(image_size):
        raise ValueError(
            f"image_size must be a positive multiple of {IMAGE_SIZE_MULTIPLE}{where}, got {image_size}"
        )


def build_net(variant: str, image_size: int = DEFAULT_IMAGE_SIZE, target: str | None = None) -> torch.nn.Module:
    """Build an untrained SAM2Base for `variant` (eval mode, on the CPU).

    `image_size` other than the default is for tests and small experiments
    (`check_image_size`). `target` swaps the class (e.g.
    "sam2.sam2_video_predictor.SAM2VideoPredictor", to compare with SAM 2).
    """
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    if variant not in VARIANT_CONFIGS:
        raise ValueError(f"unknown SAM 2 variant {variant!r}; known: {', '.join(VARIANTS)}")
    check_image_size(image_size)
    text = resources.files("sam2").joinpath(VARIANT_CONFIGS[variant]).read_text()
    cfg = OmegaConf.create(text)
    model_cfg = cfg.model
    model_cfg.image_size = image_size
    feat = image_size // 16
    for attn in ("self_attention", "cross_attention"):
        model_cfg.memory_attention.layer[attn].feat_sizes = [feat, feat]
    model_cfg.sam_mask_decoder_extra_args = dict(DYNAMIC_MULTIMASK)
    if target is not None:
        model_cfg._target_ = target
    net = instantiate(model_cfg, _recursive_=True)
    return net.eval()


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(device)


def resolve_precision(precision: str, device: torch.device) -> str:
    """CPU and MPS compute in fp32; CUDA uses bf16 where supported for `auto`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if device.type != "cuda":
        return "fp32"
    if precision == "auto":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return precision


@dataclass
class LoadedModel:
    """A SAM 2 network (or SAM 3's tracker) ready for inference, with where and how it
    computes and the family the engine drives it as.

    Weights stay in fp32; reduced precision is applied with autocast (as SAM 2 and
    SAM2Long run on CUDA), which keeps the memory encoder and the mask logits stable.
    """

    net: torch.nn.Module
    variant: str
    device: torch.device
    precision: str = "fp32"  # compute precision: fp32 | bf16 | fp16
    family: Family | None = None  # None: the net's own (`family_for_net`)

    def __post_init__(self):
        if self.family is None:
            self.family = family_for_net(self.net)

    @property
    def image_size(self) -> int:
        return int(self.net.image_size)

    def autocast(self):
        if self.precision == "fp32" or self.device.type != "cuda":
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=_DTYPES[self.precision])

    @classmethod
    def from_net(
        cls, net, variant: str, device="auto", precision: str = "auto", family: Family | None = None
    ) -> "LoadedModel":
        device = resolve_device(device)
        net = net.to(device).eval()
        precision = resolve_precision(precision, device)
        return cls(net=net, variant=variant, device=device, precision=precision, family=family)


def family_for_net(net) -> Family:
    """The family of a network, by its class: SAM 3's for SAM 3's tracker, else SAM 2's."""
    if is_tracker_net(net):
        from .sam3.family import Sam3Family

        return Sam3Family()
    return SAM2_FAMILY


def family_of(model: LoadedModel) -> Family:
    """The family the engine drives `model` as (set when the model is made)."""
    return model.family
