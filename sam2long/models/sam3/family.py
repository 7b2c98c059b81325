"""SAM 3's tracker as a network family of the engine (`models.family.Family`).

What the engine asks of SAM 3's tracker that differs from SAM 2: its frame
normalisation and image features (`encode_image`: the trunk and ``sam2_convs``, no
detector neck), where its memory attention and memory encoder live, its pointer
rules, its prompt limits, how a mask prompt enters, and its own tracker's tree
settings. docs/SAM3.md compares both families step by step.
"""

from __future__ import annotations

import torch
from sam2.modeling.sam2_base import NO_OBJ_SCORE  # -1024, SAM 3's value too (sam3_tracker_base)

from ..family import Family

SAM3_MEAN = SAM3_STD = (0.5, 0.5, 0.5)  # what SAM 3's video pipeline feeds the shared trunk


class Sam3Family(Family):
    """SAM 3's tracker (`Sam3TrackerBase`) under the engine.

    Normalisation: `mean` / `std` default to 0.5 / 0.5, as SAM 3's video model loads
    frames for the tracker; the package's `Sam3TrackerPredictor.init_state(video_path=)`
    loader uses ImageNet's (`models.family.IMG_MEAN` / `IMG_STD`), which a family made with
    those reproduces (docs/SAM3.md, "Normalisation")."""

    track_step_extra = {"image": None}  # SAM 3's track_step and memory encoder take it; the tracker ignores it
    max_prompt_frames = 4  # the builder's max_cond_frames_in_attn
    max_prompt_points = 16  # the predictor's max_point_num_in_prompt_enc
    non_overlap_prompt_memories = True  # the predictor's consolidation before propagating
    own_tracker = "sam3"  # TreeConfig.sam3()

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

    def mask_prompt(self, core, frame_idx, features, mask):
        """The predictor's add_new_mask then consolidation: the pointer from the mask at
        `input_mask_size` (1152, antialiased); the output and memory from the mask at
        source size, thresholded to +-1024 and antialiased down to the low-res size."""
        net = core.net
        m = mask.to(core.device, torch.float32)[None, None]
        side = net.input_mask_size
        resized = m if m.shape[-2:] == (side, side) else _antialiased(m, (side, side))
        out = core.prompt_step(frame_idx, features, mask_inputs=resized)
        scores = torch.where(m > 0.5, -NO_OBJ_SCORE, NO_OBJ_SCORE)
        lowres = _antialiased(scores, (net.low_res_mask_size,) * 2)
        return lowres, out["obj_ptr"], out["object_score_logits"].float()


def _antialiased(x, size):
    return torch.nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)


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
