"""Shared SAM 3 test material: a reduced random-weight tracker's sizes, Meta's sam3.pt
layout built from a net, and `load_reduced`, the project's loading of a checkpoint of
that tracker (imported by the SAM 3 test modules).

Import this only after checking that `sam3` is importable (the tests skip otherwise).
"""

from dataclasses import replace

import torch

from sam2long.models.checkpoints import resolve_checkpoint
from sam2long.models.loading import load_model_file
from sam2long.models.sam3.checkpoint import DETECTOR_PREFIX, TRACKER_PREFIX, VISION_PREFIX
from sam2long.models.sam3.network import SAM3_SIZES

# 224 px = a 16x16 token grid; a 2-block, 64-wide ViT; everything after the trunk
# (necks, memory attention, memory encoder, decoder) keeps SAM 3's real sizes.
REDUCED = replace(
    SAM3_SIZES, image_size=224, embed_dim=64, depth=2, num_heads=2, global_att_blocks=(1,), window_size=8,
    pretrain_img_size=112,
)
FAKE_DETECTOR = {  # stand-ins for what sam3.pt holds besides the tracker
    "detector.backbone.language_backbone.encoder.token_embedding.weight": torch.zeros(4, 8),
    "detector.transformer.decoder.query_embed.weight": torch.zeros(3, 8),
    "detector.segmentation_head.pixel_decoder.conv.weight": torch.zeros(2, 2),
}


def official_layout(net) -> dict:
    """`net`'s tensors as Meta's sam3.pt names them (plus detector-only tensors)."""
    sd = {}
    for name, tensor in net.state_dict().items():
        prefix = DETECTOR_PREFIX if name.startswith(VISION_PREFIX) else TRACKER_PREFIX
        sd[prefix + name] = tensor.clone()
    return {**sd, **FAKE_DETECTOR}


def load_reduced(checkpoint, device="auto", precision="auto", image_size=None, *, search_dirs=(), download=True,
                 progress=True):
    """`load_model` for a checkpoint of the reduced tracker (which `load_model` refuses as
    not SAM 3's own trunk): the same name resolution, then the same file loading, given
    REDUCED's sizes."""
    path = resolve_checkpoint(checkpoint, search_dirs=search_dirs, download=download, progress=progress)
    return load_model_file(path, device, precision, image_size, sam3_sizes=REDUCED)
