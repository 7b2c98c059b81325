"""SAM 3's video tracker, built from the `sam3` package: groundwork for a second family.

What is here (docs/SAM3.md has the design):

* `sam3_modules`: the `sam3` classes the tracker needs. `import sam3` runs its whole
  detector stack (torchvision, triton, Hugging Face hub, the BPE tokenizer); the
  tracker needs none of them. The tracker's own modules are imported without the
  package's ``__init__``; where torchvision, triton or timm's ``__init__`` do not
  import, four import-time-only names get stand-ins that raise if ever used (see
  `_isolated_import`). SAM 3's arithmetic is untouched: every module that computes
  is the package's (or timm's) own file.
* `build_tracker_net`: the tracker as ``sam3.model_builder.build_tracker(...,
  with_backbone=True)`` builds it (same classes, same arguments), but on any device:
  the builder precomputes position-encoding caches on "cuda" at sizes the tracker
  never uses at stride 14, so they are left to be filled on first use. By default
  the detector's own neck (``convs``) is dropped: the tracker reads only the ViT
  trunk and the ``sam2_convs`` neck.
* `encode_image`: the tracker's image features from the trunk and ``sam2_convs``,
  the same operations as the package's ``forward_image`` minus the detector neck.
* Checkpoints: `tracker_tensors` picks the tracker's tensors out of Meta's
  ``sam3.pt`` (``detector.*`` + ``tracker.*``; the tracker reads the detector's
  trunk and ``sam2_convs``) or a tracker-only state dict; `tracker_from_tensors`
  checks every tensor by name and shape and fills the net. `load_model` uses both
  on a file it has read once; `load_sam3_tracker` reads a file with the project's
  safe reader (no pickled code) and does the same.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import torch

from ...engine.tree import TreeConfig
from ...errors import CheckpointError
from ..family import Family
from ..weights import read_checkpoint

NO_OBJ_SCORE = -1024.0  # SAM 3's (and SAM 2's) logit for "no object here"

INSTALL_HINT = "install it with: pip install 'sam2long[sam3]' (or pip install sam3)"

# Meta's sam3.pt: the detector and the tracker in one flat dict. The tracker's
# image features come from the detector's ViT trunk through the `sam2_convs` neck.
DETECTOR_PREFIX = "detector."
TRACKER_PREFIX = "tracker."
VISION_PREFIX = "backbone.vision_backbone."  # inside the tracker (and the detector)
TRACKER_VISION_PARTS = ("trunk.", "sam2_convs.")
PATCH_EMBED = VISION_PREFIX + "trunk.patch_embed.proj.weight"
BLOCKS = VISION_PREFIX + "trunk.blocks."
ROPE_TABLE = ".attn.freqs_cis"
SAM31_MARK = "interactive_sam_mask_decoder."  # a name only SAM 3.1's tracker has


@dataclass(frozen=True)
class Sam3TrackerConfig:
    """The sizes `build_tracker_net` varies; the defaults are SAM 3's (model_builder)."""

    image_size: int = 1008
    embed_dim: int = 1024
    depth: int = 32
    num_heads: int = 16
    global_att_blocks: tuple = (7, 15, 23, 31)
    window_size: int = 24
    pretrain_img_size: int = 336
    mlp_ratio: float = 4.625

    @property
    def feat_size(self) -> int:
        return self.image_size // PATCH


PATCH = 14
SAM3 = Sam3TrackerConfig()


# --------------------------------------------------------------------------- importing


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except Exception:  # a missing or broken optional dependency (e.g. torchvision's ops)
        return False


class _Unavailable:
    """Stands in for a name that SAM 3 imports but the tracker never calls."""

    def __init__(self, what: str, needs: str):
        self._what, self._needs = what, needs

    def __call__(self, *args, **kwargs):
        raise RuntimeError(
            f"{self._what} needs {self._needs}, which is not installed; SAM2Long's SAM 3 tracker "
            f"does not use it. Fix: install {self._needs} to use this part of sam3"
        )


def _module(name: str, path: Path | None = None, **attrs) -> types.ModuleType:
    mod = types.ModuleType(name)
    if path is not None:  # a package whose submodules import normally, without its __init__
        mod.__path__ = [str(path)]
        mod.__spec__ = importlib.util.spec_from_loader(name, loader=None, is_package=True)
        mod.__spec__.submodule_search_locations = [str(path)]
    mod.__dict__.update(attrs)
    return mod


@contextlib.contextmanager
def _stand_ins(modules: dict[str, types.ModuleType]):
    """Put `modules` in sys.modules for the imports inside, then take them out again
    (names already bound stay bound; later imports see the real state)."""
    added = [name for name in modules if name not in sys.modules]
    sys.modules.update({name: modules[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            sys.modules.pop(name, None)


def _timm_layers() -> types.ModuleType:
    """timm's DropPath, Mlp and trunc_normal_, from timm's own files, without the
    package's __init__ files (timm's __init__ imports torchvision)."""
    spec = importlib.util.find_spec("timm")
    if spec is None:
        raise ImportError(f"SAM 3 needs timm, which is not installed; {INSTALL_HINT}")
    root = Path(spec.submodule_search_locations[0])
    timm, layers = _module("timm", root), _module("timm.layers", root / "layers")
    with _stand_ins({"timm": timm, "timm.layers": layers}):
        mlp = importlib.import_module("timm.layers.mlp")
        drop = importlib.import_module("timm.layers.drop")
        init = importlib.import_module("timm.layers.weight_init")
        for name in [n for n in sys.modules if n.startswith("timm.layers.")]:
            del sys.modules[name]  # these were loaded under the stand-in packages
    return _module("timm.layers", DropPath=drop.DropPath, Mlp=mlp.Mlp, trunc_normal_=init.trunc_normal_)


def _isolated_import() -> None:
    """Import the tracker's modules without `sam3`'s __init__, also where `import sam3`
    fails (no torchvision, no triton).

    The `sam3` package is registered without running its __init__ (which imports the
    detector API). Then, only for a dependency that does not import, a stand-in, each
    for an import that the tracker's code never calls:
    * ``torchvision.ops.roi_align.RoIAlign``: the detector's box pooling, imported at
      the top of sam3/model/decoder.py, where the tracker's memory attention lives;
    * ``sam3.model.edt``: a triton kernel for training-time click sampling;
    * ``sam3.train.data.collator``: a type annotation on ``Sam3TrackerBase.forward``
      (which raises); the stand-in holds the real class from sam3.model.data_misc;
    * ``timm.layers``: timm's own DropPath, Mlp, trunc_normal_ (see `_timm_layers`).
    """
    spec = importlib.util.find_spec("sam3")
    if spec is None:
        raise ImportError(f"SAM 3 support needs the sam3 package, which is not installed; {INSTALL_HINT}")
    root = Path(spec.submodule_search_locations[0])
    sys.modules["sam3"] = _module("sam3", root)
    stand_ins = {}
    if not _importable("timm.layers"):
        stand_ins["timm.layers"] = _timm_layers()
        stand_ins["timm"] = _module("timm", layers=stand_ins["timm.layers"])
    if not _importable("torchvision.ops.roi_align"):
        roi = _module("torchvision.ops.roi_align", RoIAlign=_Unavailable("RoIAlign (SAM 3's detector)", "torchvision"))
        stand_ins.update({"torchvision": _module("torchvision"), "torchvision.ops": _module("torchvision.ops")})
        stand_ins["torchvision.ops.roi_align"] = roi
    if not _importable("triton"):
        stand_ins["sam3.model.edt"] = _module("sam3.model.edt", edt_triton=_Unavailable("sam3's EDT kernel", "triton"))
    data_misc = importlib.import_module("sam3.model.data_misc")
    if not _importable("sam3.train.data.collator"):
        stand_ins["sam3.train.data.collator"] = _module(
            "sam3.train.data.collator", BatchedDatapoint=data_misc.BatchedDatapoint
        )
    with _stand_ins(stand_ins):
        for name in _TRACKER_MODULES:
            importlib.import_module(name)


_TRACKER_MODULES = (
    "sam3.model.vitdet",
    "sam3.model.position_encoding",
    "sam3.model.necks",
    "sam3.model.vl_combiner",
    "sam3.model.memory",
    "sam3.model.decoder",
    "sam3.model.model_misc",
    "sam3.sam.transformer",
    "sam3.model.sam3_tracker_base",
    "sam3.model.sam3_tracking_predictor",
)


@functools.cache
def sam3_modules() -> types.SimpleNamespace:
    """The `sam3` modules the tracker is built from (imported once).

    The package's ``__init__`` is not run unless the application already imported
    `sam3`: it imports the detector stack and, on Ampere GPUs, switches TF32 matmuls
    on for the whole process (model_builder's ``_setup_tf32``). Raises ImportError,
    saying how to install it, when `sam3` is missing.
    """
    if "sam3" not in sys.modules:
        _isolated_import()
    mods = [importlib.import_module(name) for name in _TRACKER_MODULES]
    return types.SimpleNamespace(**{name.rsplit(".", 1)[1]: mod for name, mod in zip(_TRACKER_MODULES, mods)})


# --------------------------------------------------------------------------- building


def build_tracker_net(
    config: Sam3TrackerConfig = SAM3,
    *,
    use_memory_selection: bool = True,
    predictor: bool = False,
) -> torch.nn.Module:
    """SAM 3's tracker with its image backbone (random weights, eval mode, on the CPU).

    The classes and arguments of ``sam3.model_builder.build_tracker(with_backbone=True)``
    with the sizes of `config`. `use_memory_selection` is the builder's
    ``apply_temporal_disambiguation`` (SAM 3's video model passes True).
    `predictor=True` builds the package's ``Sam3TrackerPredictor`` with its detector
    neck, to run SAM 3's own interactive API (note: its constructor enters a bf16
    CUDA autocast for the rest of the thread); otherwise a ``Sam3TrackerBase``
    without the detector neck, which `encode_image` and the engine use.
    """
    m = sam3_modules()
    c = config
    if c.image_size % PATCH:
        raise ValueError(f"image_size must be a multiple of {PATCH}, got {c.image_size}")
    trunk = m.vitdet.ViT(
        img_size=c.image_size,
        pretrain_img_size=c.pretrain_img_size,
        patch_size=PATCH,
        embed_dim=c.embed_dim,
        depth=c.depth,
        num_heads=c.num_heads,
        mlp_ratio=c.mlp_ratio,
        norm_layer="LayerNorm",
        drop_path_rate=0.1,
        qkv_bias=True,
        use_abs_pos=True,
        tile_abs_pos=True,
        global_att_blocks=c.global_att_blocks,
        rel_pos_blocks=(),
        use_rope=True,
        use_interp_rope=True,
        window_size=c.window_size,
        pretrain_use_cls_token=True,
        retain_cls_token=False,
        ln_pre=True,
        ln_post=False,
        return_interm_layers=False,
        bias_patch_embed=False,
    )
    neck = m.necks.Sam3DualViTDetNeck(
        trunk=trunk,
        position_encoding=_position_encoding(m, 256),
        d_model=256,
        scale_factors=[4.0, 2.0, 1.0, 0.5],
        add_sam2_neck=True,
    )
    if not predictor:
        del neck.convs  # the detector's neck: the tracker reads sam2_convs only
    backbone = m.vl_combiner.SAM3VLBackbone(scalp=1, visual=neck, text=None)
    settings = dict(
        image_size=c.image_size,
        num_maskmem=7,
        backbone=backbone,
        backbone_stride=PATCH,
        transformer=_memory_attention(m, c.feat_size),
        maskmem_backbone=_memory_encoder(m, c.feat_size),
        multimask_output_in_sam=True,
        forward_backbone_per_frame_for_eval=True,
        trim_past_non_cond_mem_for_eval=False,
        multimask_output_for_tracking=True,
        multimask_min_pt_num=0,
        multimask_max_pt_num=1,
        non_overlap_masks_for_mem_enc=False,
        max_cond_frames_in_attn=4,
        offload_output_to_cpu_for_eval=False,
        sam_mask_decoder_extra_args={
            "dynamic_multimask_via_stability": True,
            "dynamic_multimask_stability_delta": 0.05,
            "dynamic_multimask_stability_thresh": 0.98,
        },
        use_memory_selection=use_memory_selection,
    )
    if predictor:
        net = m.sam3_tracking_predictor.Sam3TrackerPredictor(
            always_start_from_first_ann_frame=False,
            non_overlap_masks_for_output=False,
            clear_non_cond_mem_around_input=True,
            fill_hole_area=0,
            **settings,
        )
    else:
        net = m.sam3_tracker_base.Sam3TrackerBase(**settings)
    return net.eval()


def _position_encoding(m, channels: int):
    # The builder passes precompute_resolution=1008, which fills a cache on "cuda" for
    # feature sizes 252/126/63/31; at stride 14 the tracker's sizes are 288/144/72/36,
    # so the cache is never read. Without it each size is computed on first use by the
    # same forward (a pure function of the size).
    return m.position_encoding.PositionEmbeddingSine(
        num_pos_feats=channels, normalize=True, scale=None, temperature=10000, precompute_resolution=None
    )


def _memory_encoder(m, feat_size: int):
    mem = m.memory
    return mem.SimpleMaskEncoder(
        out_dim=64,
        position_encoding=_position_encoding(m, 64),
        mask_downsampler=mem.SimpleMaskDownSampler(
            kernel_size=3, stride=2, padding=1, interpol_size=[feat_size * 16, feat_size * 16]
        ),
        fuser=mem.SimpleFuser(
            layer=mem.CXBlock(dim=256, kernel_size=7, padding=3, layer_scale_init_value=1.0e-06, use_dwconv=True),
            num_layers=2,
        ),
    )


def _memory_attention(m, feat_size: int):
    attention = functools.partial(
        m.transformer.RoPEAttention,
        embedding_dim=256,
        num_heads=1,
        downsample_rate=1,
        dropout=0.1,
        rope_theta=10000.0,
        feat_sizes=[feat_size, feat_size],
        use_fa3=False,
        use_rope_real=False,
    )
    layer = m.decoder.TransformerDecoderLayerv2(
        cross_attention_first=False,
        activation="relu",
        dim_feedforward=2048,
        dropout=0.1,
        pos_enc_at_attn=False,
        pre_norm=True,
        self_attention=attention(),
        d_model=256,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
        cross_attention=attention(kv_in_dim=64, rope_k_repeat=True),
    )
    encoder = m.decoder.TransformerEncoderCrossAttention(
        remove_cross_attention_layers=[],
        batch_first=True,
        d_model=256,
        frozen=False,
        pos_enc_at_input=True,
        layer=layer,
        num_layers=4,
        use_act_checkpoint=False,
    )
    return m.model_misc.TransformerWrapper(encoder=encoder, decoder=None, d_model=256)


def encode_image(net, image: torch.Tensor) -> dict:
    """``net.forward_image(image)`` without the detector neck: the ViT trunk, the
    ``sam2_convs`` levels the tracker keeps (the backbone's ``scalp`` drops the
    coarsest), their position encodings, and the decoder's conv_s0 / conv_s1 on the
    two finest levels. -> {"backbone_fpn", "vision_pos_enc", "vision_features"}"""
    neck = net.backbone.vision_backbone
    x = neck.trunk(image)[-1]
    levels = len(neck.sam2_convs) - net.backbone.scalp
    feats = [neck.sam2_convs[i](x) for i in range(levels)]
    pos = [neck.position_encoding(f).to(f.dtype) for f in feats]
    feats[0] = net.sam_mask_decoder.conv_s0(feats[0])
    feats[1] = net.sam_mask_decoder.conv_s1(feats[1])
    return {"backbone_fpn": feats, "vision_pos_enc": pos, "vision_features": feats[-1]}


# --------------------------------------------------------------------------- checkpoints


def _wrapper(sd: dict) -> str:
    """What a repack put in front of Meta's names (e.g. ``model.diffusion_model.``), or ''."""
    suffix = DETECTOR_PREFIX + PATCH_EMBED
    return next((k[: -len(suffix)] for k in sd if k.endswith(suffix)), "")


def is_sam3_state_dict(sd: dict) -> bool:
    """Meta's sam3.pt layout (detector + tracker, possibly behind one wrapper prefix)
    or a tracker-only state dict."""
    tracker = _wrapper(sd) + TRACKER_PREFIX + "sam_mask_decoder."
    official = any(k.endswith(DETECTOR_PREFIX + PATCH_EMBED) for k in sd) and any(k.startswith(tracker) for k in sd)
    tracker_only = PATCH_EMBED in sd and any(k.startswith("sam_mask_decoder.") for k in sd)
    return official or tracker_only


def is_sam31_state_dict(sd: dict) -> bool:
    """SAM 3.1 (Object Multiplex): its tracker has an interactive decoder beside the
    multiplex one, in Meta's sam3.1_multiplex.pt and in ComfyUI's repack."""
    return any(SAM31_MARK in k for k in sd)


def tracker_tensors(sd: dict) -> tuple[dict, list]:
    """The tracker's tensors, named as in `build_tracker_net`'s net, and the names of
    those left out (the detector: text encoder, fusion transformer, heads, its neck).

    Meta's sam3.pt: ``tracker.<name>`` -> ``<name>``; the shared ViT trunk and the
    tracker's neck, ``detector.backbone.vision_backbone.{trunk,sam2_convs}.*`` ->
    ``backbone.vision_backbone.*``. A repack that put one wrapper prefix in front of
    Meta's names (ComfyUI-style ``model.diffusion_model.``) maps the same. A
    tracker-only state dict (e.g. of ``build_tracker(with_backbone=True)``) keeps its
    names, less the detector neck.
    """
    wrapper = _wrapper(sd)
    official = any(k.startswith(wrapper + TRACKER_PREFIX) for k in sd)
    vision = tuple(VISION_PREFIX + part for part in TRACKER_VISION_PARTS)
    kept, left_out = {}, []
    for name, tensor in sd.items():
        new = name
        if official:
            new = None
            inner = name[len(wrapper):] if name.startswith(wrapper) else ""
            if inner.startswith(TRACKER_PREFIX):
                new = inner[len(TRACKER_PREFIX):]
            elif inner.startswith(DETECTOR_PREFIX + VISION_PREFIX):
                new = inner[len(DETECTOR_PREFIX):]
        if new is None or (new.startswith("backbone.") and not new.startswith(vision)):
            left_out.append(name)
        else:
            kept[new] = tensor
    return kept, left_out


def sam3_tracker_tensors(sd: dict, source: str = "checkpoint") -> dict:
    """`tracker_tensors` of a SAM 3 checkpoint's tensors, or a CheckpointError saying
    what the file is instead (SAM 3.1, or not SAM 3 at all)."""
    if is_sam31_state_dict(sd):
        raise CheckpointError(
            f"{source} is a SAM 3.1 (Object Multiplex) checkpoint, whose tracker differs from SAM 3's "
            f"(multiplexed decoder and memory attention); sam2long runs SAM 3's tracker. Fix: use "
            f"Meta's sam3.pt from huggingface.co/facebook/sam3"
        )
    if not is_sam3_state_dict(sd):
        raise CheckpointError(
            f"{source} is not a SAM 3 checkpoint: expected '{DETECTOR_PREFIX}{PATCH_EMBED}' and "
            f"'{TRACKER_PREFIX}sam_mask_decoder.*' (Meta's sam3.pt) or a tracker-only state dict. "
            f"Fix: use sam3.pt from huggingface.co/facebook/sam3"
        )
    return tracker_tensors(sd)[0]


def trunk_config(sd: dict) -> Sam3TrackerConfig:
    """The config whose trunk these tracker tensors are: SAM 3's, or an error."""
    weight = sd.get(PATCH_EMBED)
    blocks = {k[len(BLOCKS):].split(".", 1)[0] for k in sd if k.startswith(BLOCKS)}
    found = (tuple(weight.shape) if weight is not None else None, len(blocks))
    if found == ((SAM3.embed_dim, 3, PATCH, PATCH), SAM3.depth):
        return SAM3
    raise CheckpointError(
        f"unknown SAM 3 image encoder: ViT patch embedding {found[0]} with {found[1]} blocks "
        f"('{PATCH_EMBED}', '{BLOCKS}<N>.*'), expected ({SAM3.embed_dim}, 3, {PATCH}, {PATCH}) with "
        f"{SAM3.depth} blocks (Meta's sam3.pt). Fix: use Meta's sam3.pt from huggingface.co/facebook/sam3"
    )


def _short(names: list, limit: int = 8) -> str:
    more = f", ... ({len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_tracker_tensors(sd: dict, expected: dict, source: str) -> None:
    """Raise CheckpointError naming missing, unexpected and misshapen tensors."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    misshapen = [
        f"{k} (expected {tuple(v.shape)}, found {tuple(sd[k].shape)})"
        for k, v in expected.items()
        if k in sd and sd[k].shape != v.shape
    ]
    problems = [
        f"{what} ({len(names)}): {_short(names)}"
        for what, names in (("missing tensors", missing), ("unexpected tensors", unexpected), ("tensors of the wrong shape", misshapen))
        if names
    ]
    if problems:
        raise CheckpointError(
            f"{source} does not match SAM 3's tracker: " + "; ".join(problems) + ". The file is damaged "
            "or from a different or modified model. Fix: download sam3.pt again from huggingface.co/facebook/sam3"
        )


def tracker_from_tensors(
    sd: dict,
    config: Sam3TrackerConfig | None = None,
    *,
    use_memory_selection: bool = True,
    source: str = "checkpoint",
) -> torch.nn.Module:
    """SAM 3's tracker filled from its tensors, named as `sam3_tracker_tensors` returns
    them (fp32, eval mode, on the CPU). `config` defaults to SAM 3's sizes, checked
    against the trunk's tensors; every tensor is checked by name and shape first."""
    config = trunk_config(sd) if config is None else config
    net = build_tracker_net(config, use_memory_selection=use_memory_selection)
    expected = net.state_dict()
    # The trunk's RoPE tables are buffers computed from its sizes: taken from the built
    # net when a repack left them out (complex tensors, not parameters).
    sd = {**{k: v for k, v in expected.items() if k.endswith(ROPE_TABLE)}, **sd}
    check_tracker_tensors(sd, expected, source=source)
    net.load_state_dict({k: v.to(torch.float32) if v.is_floating_point() else v for k, v in sd.items()}, strict=True)
    return net


def load_sam3_tracker(
    path: str | os.PathLike,
    config: Sam3TrackerConfig | None = None,
    *,
    use_memory_selection: bool = True,
) -> torch.nn.Module:
    """SAM 3's tracker filled from a checkpoint file (fp32, eval mode, on the CPU).

    Reads .pt / .pth (tensors only, never pickled code) and .safetensors, in Meta's
    sam3.pt layout or tracker-only; the detector's tensors are not kept.
    `sam2long.loading.load_model` does the same from a file it has already read.
    """
    sd = sam3_tracker_tensors(read_checkpoint(path), source=str(path))
    return tracker_from_tensors(sd, config, use_memory_selection=use_memory_selection, source=str(path))


def verify_sam3_checkpoint(path: str | os.PathLike) -> None:
    """A cheap check of a downloaded file: SAM 3's layout and trunk, without building
    the 1.9 GB net (`load_model` checks every tensor when it loads the file)."""
    trunk_config(sam3_tracker_tensors(read_checkpoint(path), source=str(path)))

# --------------------------------------------------------------------------- the engine's family

SAM3_MEAN = SAM3_STD = (0.5, 0.5, 0.5)  # what SAM 3's video pipeline feeds the shared trunk


class Sam3Family(Family):
    """SAM 3's tracker (`Sam3TrackerBase`) under the engine.

    Normalisation: `mean` / `std` default to 0.5 / 0.5, as SAM 3's video model loads
    frames for the tracker; the package's `Sam3TrackerPredictor.init_state(video_path=)`
    loader uses ImageNet's (`resize.IMG_MEAN` / `IMG_STD`), which a family made with
    those reproduces (docs/SAM3.md, "Normalisation")."""

    track_step_extra = {"image": None}  # SAM 3's track_step and memory encoder take it; the tracker ignores it
    max_cond_frames = 4  # the builder's max_cond_frames_in_attn
    max_prompt_points = 16  # the predictor's max_point_num_in_prompt_enc
    non_overlap_prompt_memories = True  # the predictor's consolidation before propagating

    def __init__(self, mean=SAM3_MEAN, std=SAM3_STD):
        self.mean, self.std = tuple(mean), tuple(std)

    def check(self, net) -> None:
        if not net.multimask_output_for_tracking:
            raise ValueError("SAM 3's tracker must be built with multimask tracking (build_tracker_net does)")

    def backbone_out(self, net, image):
        return encode_image(net, image)

    def memory_attention(self, net):
        # RoPEAttention keeps its rotary table in a plain attribute, which moving the
        # net does not move; SAM 3's self-attention reads it where it is.
        device = next(net.parameters()).device
        for module in net.transformer.modules():
            table = getattr(module, "freqs_cis", None)
            if isinstance(table, torch.Tensor) and table.device != device:
                module.freqs_cis = table.to(device)
        return net.transformer.encoder

    def memory_encoder(self, net):
        return net.maskmem_backbone

    def pointer_rules(self, net):
        return False, True  # _forward_sam_heads: hard presence, vis * ptr + (1 - vis) * no_obj_ptr

    def pointer_encoding(self, net):
        return True, True  # _get_tpos_enc: always, projected from hidden_dim

    def plain_tree(self):
        return TreeConfig.sam3()

    def mask_prompt(self, core, frame_idx, ff, mask):
        """The predictor's add_new_mask then consolidation: the pointer from the mask at
        `input_mask_size` (1152, antialiased); the output and memory from the mask at
        source size, thresholded to +-1024 and antialiased down to the low-res size."""
        net = core.net
        m = mask.to(core.device, torch.float32)[None, None]
        side = net.input_mask_size
        resized = m if m.shape[-2:] == (side, side) else _antialiased(m, (side, side))
        out = core.prompt_step(frame_idx, ff, mask_inputs=resized)
        scores = torch.where(m > 0.5, -NO_OBJ_SCORE, NO_OBJ_SCORE)
        lowres = _antialiased(scores, (net.low_res_mask_size,) * 2)
        return lowres, out["obj_ptr"], out["object_score_logits"].float()


def _antialiased(x, size):
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
