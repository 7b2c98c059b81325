"""CPU cost of SAM 3's tracker, part by part (random weights, the package's modules).

    PYTHONPATH=. python bench/sam3_cpu.py [--size 1008] [--threads 1] [--pathways 1 3]

Builds the tracker (`sam2long.sam3_family.build_tracker_net`), encodes one frame
(ViT trunk + sam2_convs, `encode_image`), then times one tracked step per batch of
pathways the way the engine will run it: memory attention over a full memory
(7 spatial memories and 16 object pointers), the mask decoder with 3 candidates
and the object pointer (the package's `_forward_sam_heads`),
and the memory encoder for the chosen masks. Prints one JSON object; times are
CPU seconds of the process (see `timed`).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from sam2long import sam3_family as fam  # noqa: E402


def timed(fn):
    """(result, CPU seconds of this process): with one thread, the compute cost,
    little affected by other processes on a shared machine (wall time is)."""
    t = time.process_time()
    out = fn()
    return out, time.process_time() - t


def tracked_step(net, ff, batch: int, frames: int = 7, pointers: int = 16):
    """Memory attention, decoder and memory encoder for `batch` pathways (random memory)."""
    side = ff["backbone_fpn"][-1].shape[-1]
    hw, feats = side * side, [x.expand(batch, -1, -1, -1) for x in ff["backbone_fpn"]]
    curr = feats[-1].flatten(2).permute(2, 0, 1)
    curr_pos = ff["vision_pos_enc"][-1].expand(batch, -1, -1, -1).flatten(2).permute(2, 0, 1)
    n_ptr = pointers * (net.hidden_dim // net.mem_dim)
    memory = torch.randn(frames * hw + n_ptr, batch, net.mem_dim)
    memory_pos = torch.randn_like(memory)
    t = {}
    pix, t["memory_attention"] = timed(
        lambda: net.transformer.encoder(
            src=[curr], src_key_padding_mask=[None], src_pos=[curr_pos], prompt=memory, prompt_pos=memory_pos,
            feat_sizes=[(side, side)], num_obj_ptr_tokens=n_ptr,
        )["memory"]
    )
    pix = pix.permute(1, 2, 0).reshape(batch, net.hidden_dim, side, side)
    # the package's own prompt encoder + decoder + pointer step, 3 candidates, no prompt
    heads, t["decoder_and_pointer"] = timed(
        lambda: net._forward_sam_heads(backbone_features=pix, high_res_features=feats[:-1], multimask_output=True)
    )
    high_res, obj = heads[4], heads[6]  # the best candidate upsampled to the input size, object logits
    _, t["memory_encoder"] = timed(
        lambda: net._encode_new_memory(
            image=None, current_vision_feats=[curr], feat_sizes=[(side, side)], pred_masks_high_res=high_res,
            object_score_logits=obj, is_mask_from_pts=False,
        )
    )
    t["total"] = sum(t.values())
    return {k: round(v, 2) for k, v in t.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=1008, help="input size (a multiple of 14; SAM 3 uses 1008)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pathways", type=int, nargs="+", default=[1, 3])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = replace(fam.SAM3, image_size=args.size)
    net, build_s = timed(lambda: fam.build_tracker_net(config))
    image = torch.randn(1, 3, args.size, args.size)
    with torch.inference_mode():
        ff, encode_s = timed(lambda: fam.encode_image(net, image))
        steps = {str(b): tracked_step(net, ff, b) for b in args.pathways}
    print(json.dumps({
        "torch": torch.__version__, "threads": args.threads, "size": args.size,
        "params": sum(p.numel() for p in net.parameters()), "build_cpu_s": round(build_s, 2),
        "encode_image_cpu_s": round(encode_s, 2),
        "tracked_step_cpu_s_by_pathways": steps,
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    }, indent=1))


if __name__ == "__main__":
    main()
