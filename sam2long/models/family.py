"""What differs between network families: SAM 2 / 2.1 here, SAM 3's tracker in `sam3.family`.

The engine's `InferenceCore` drives every family the same way (encode a frame,
prompt, memory attention, decoder, memory encoder); a `Family` answers the few
questions whose answer depends on the network: how a frame is normalised and
encoded, which modules hold memory attention and the memory encoder, how a mask
prompt enters, how object pointers of absent objects are made, how many prompt
frames memory reads, and which tracker is the family's own (`own_tracker`, turned
into tree settings by the engine's `TreeConfig.plain`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# ImageNet's mean and std: what SAM 2's frame loader normalises with (and SAM 3's
# predictor's own loader; SAM 3's video model uses 0.5, see `sam3.family`)
IMG_MEAN = (0.485, 0.456, 0.406)
IMG_STD = (0.229, 0.224, 0.225)


class Family:
    """SAM 2 / SAM 2.1 (the `sam2` package's SAM2Base); other families override what differs."""

    mean, std = IMG_MEAN, IMG_STD  # what the predictor's frame loader normalises with
    track_step_extra: dict = {}  # extra arguments of the network's track_step
    max_prompt_frames: int | None = None  # prompt frames memory reads (None: all)
    max_prompt_points: int | None = None  # points the prompt encoder takes (None: all)
    non_overlap_prompt_memories = False  # objects prompted on one frame share no pixel in memory
    own_tracker = "sam2"  # the tree settings of the family's own tracker: TreeConfig.sam2()

    def check(self, net) -> None:
        if not (net.pred_obj_scores and net.use_obj_ptrs_in_encoder and net.multimask_output_for_tracking):
            raise ValueError("the network must predict object scores, use object pointers and multimask tracking")

    def backbone_out(self, net, image: torch.Tensor) -> dict:
        return net.forward_image(image)

    def memory_attention(self, net):
        return net.memory_attention

    def memory_encoder(self, net):
        return net.memory_encoder

    def pointer_rules(self, net) -> tuple[bool, bool]:
        """(soft: pointer visibility is sigmoid(logit), fixed: a visible pointer is scaled by it)."""
        return net.soft_no_obj_ptr, net.fixed_no_obj_ptr

    def pointer_encoding(self, net) -> tuple[bool, bool]:
        """(pointers get a temporal encoding, it is projected from hidden_dim)."""
        return net.add_tpos_enc_to_obj_ptrs, net.proj_tpos_enc_in_obj_ptrs

    def mask_prompt(self, core, frame_idx: int, features, mask: torch.Tensor):
        """A mask prompt (bool/float [H, W] at source size) as SAM 2's predictor takes it:
        resized to the input size, thresholded, used as the output. `core` is the
        engine's InferenceCore, `features` the frame's features from it.
        -> (lowres [1, 1, h, w] logits, pointer [1, C], object logit [1, 1])"""
        m = mask.to(core.device, torch.float32)[None, None]
        size = (core.image_size,) * 2
        if m.shape[-2:] != size:
            m = F.interpolate(m, size=size, mode="bilinear", align_corners=False, antialias=True)
            m = (m >= 0.5).float()
        out = core.prompt_step(frame_idx, features, mask_inputs=m)
        return out["pred_masks"].float(), out["obj_ptr"], out["object_score_logits"].float()


SAM2_FAMILY = Family()
