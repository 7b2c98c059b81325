"""Building SAM 3's tracker network from the `sam3` package's classes.

`build_tracker_net` builds the tracker as ``sam3.model_builder.build_tracker(...,
with_backbone=True)`` does (same classes, same arguments), but on any device: the
builder precomputes position-encoding caches on "cuda" at sizes the tracker never
uses at stride 14, so they are left to be filled on first use. By default the
detector's own neck (``convs``) is dropped: the tracker reads only the ViT trunk and
the ``sam2_convs`` neck. `Sam3TrackerConfig` holds the sizes it varies; SAM 3's own
are `SAM3_SIZES`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ..model import DYNAMIC_MULTIMASK
from .shims import sam3_modules

PATCH = 14  # the ViT's patch size: SAM 3's input size is a multiple of it


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


SAM3_SIZES = Sam3TrackerConfig()  # SAM 3's own tracker, as in Meta's sam3.pt


def build_tracker_net(
    config: Sam3TrackerConfig = SAM3_SIZES,
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
    without the detector neck, which the engine uses (`family.encode_image`).
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
        sam_mask_decoder_extra_args=dict(DYNAMIC_MULTIMASK),
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
