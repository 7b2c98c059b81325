"""The per-frame inference core: the networks of SAM 2 (or SAM 3's tracker), one batch at a time.

`InferenceCore` knows nothing about pathways or objects. It encodes a frame once,
turns a prompt into a conditioning memory, runs memory attention and the mask
decoder for a batch of memory plans (one per distinct pathway of every object),
and encodes the chosen masks into new memories. Every network call is one batch.
What differs between network families (normalisation, encoder, module names, mask
prompts, pointer rules) is asked of the model's family (`models.family.Family`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from sam2.modeling.sam2_base import NO_OBJ_SCORE
from sam2.modeling.sam2_utils import get_1d_sine_pe

from ..models.model import LoadedModel
from .attention import memory_attention
from .memory import MemoryEntry, MemoryPlan
from .resize import model_input


@dataclass
class FrameFeatures:
    vision_feats: list  # per level [HW, 1, C]
    vision_pos: list
    feat_sizes: list

    def expand(self, batch: int):
        feats = [x.expand(-1, batch, -1) for x in self.vision_feats]
        pos = [x.expand(-1, batch, -1) for x in self.vision_pos]
        high_res = [
            x.permute(1, 2, 0).view(x.size(1), x.size(2), *s) for x, s in zip(feats[:-1], self.feat_sizes[:-1])
        ]
        return feats, pos, high_res or None


@dataclass
class Decoded:
    """Decoder outputs for a batch of pathways (B units, 3 candidates each)."""

    lowres: torch.Tensor  # [B, 3, h, w] mask logits (empty where the object is absent)
    tokens: torch.Tensor  # [B, 3, C] mask tokens, turned into pointers for chosen candidates
    object_logits: torch.Tensor  # [B, 1]
    ious_cpu: list  # [B][3] floats
    object_logits_cpu: list  # [B] floats


class InferenceCore:
    def __init__(self, model: LoadedModel, max_ptrs: int = 16):
        self.model = model
        self.net = model.net
        self.device = model.device
        self.max_ptrs = max_ptrs
        net = self.net
        self.family = fam = model.family
        fam.check(net)
        self._memory_attention = fam.memory_attention(net)
        self._memory_encoder = fam.memory_encoder(net)
        self._soft_ptr, self._fixed_ptr = fam.pointer_rules(net)
        self._ptr_tpos, self._ptr_tpos_projected = fam.pointer_encoding(net)
        self.max_prompt_frames = fam.max_prompt_frames
        self.num_maskmem = net.num_maskmem
        self.hidden_dim = net.hidden_dim
        self.mem_dim = net.mem_dim
        size = model.image_size
        self._mem_pos = self._memory_positions(size // net.backbone_stride)
        # [num_maskmem, HW, Cm]: spatial + temporal encoding of a memory frame, by temporal index
        tpos = net.maskmem_tpos_enc.detach().view(self.num_maskmem, 1, self.mem_dim).to(self.device)
        self._spatial_pos = self._mem_pos + tpos
        self.image_size = size

    # ---- frames ---------------------------------------------------------------------------
    def preprocess(self, frame) -> torch.Tensor:
        """[H, W, 3] uint8 (or float 0..1) -> [1, 3, S, S] normalised at model resolution,
        as SAM 2's frame loader makes it (`resize.py`: bit-equal for 8-bit frames)."""
        return model_input(frame, self.image_size, self.device, self.family.mean, self.family.std)

    def encode_image(self, image: torch.Tensor) -> FrameFeatures:
        backbone_out = self.family.backbone_out(self.net, image)
        _, feats, pos, sizes = self.net._prepare_backbone_features(backbone_out)
        return FrameFeatures(feats, pos, sizes)

    # ---- prompts --------------------------------------------------------------------------
    def prompt(self, frame_idx: int, features: FrameFeatures, inputs: list) -> list:
        """The family's prompt path for the objects prompted on one frame (no memory):
        each input is (points, labels, None) for clicks/box, through the SAM decoder, or
        (None, None, mask) with a bool [H, W] mask at source size, as the family's
        predictor takes it. -> [(lowres [h, w], MemoryEntry holding the object logit)]"""
        if not inputs:
            return []
        outs = [self._prompt_output(frame_idx, features, *x) for x in inputs]
        lowres = [o[0] for o in outs]
        # As the predictor before propagating: memory from the low-res logits, upsampled.
        high_res = [F.interpolate(x, size=(self.image_size,) * 2, mode="bilinear", align_corners=False) for x in lowres]
        if self.family.non_overlap_prompt_memories and len(outs) > 1:
            # SAM 3 encodes the prompt frame's objects together, each pixel kept by the
            # object of the highest logit (`_apply_non_overlapping_constraints`).
            joint = torch.cat(high_res)
            winner = joint.argmax(0, keepdim=True) == torch.arange(len(outs), device=self.device)[:, None, None, None]
            joint = torch.where(winner, joint, joint.clamp(max=-10.0))
            mems = self._encode_memory(features, joint, torch.cat([o[2] for o in outs]), from_prompt=True)
        else:
            mems = torch.cat([self._encode_memory(features, h, o[2], from_prompt=True) for h, o in zip(high_res, outs)])
        return [
            (low[0, 0], MemoryEntry(frame=frame_idx, ptr=ptr[0].float(), object_score=float(obj), iou=1.0, mem=mem))
            for (low, ptr, obj), mem in zip(outs, mems)
        ]

    def _prompt_output(self, frame_idx, features, points, labels, mask):
        """-> (lowres [1, 1, h, w], pointer [1, C], object logit [1, 1]) of one object's prompt."""
        if mask is not None:
            return self.family.mask_prompt(self, frame_idx, features, mask)
        limit = self.family.max_prompt_points
        if limit is not None and len(points) > limit:  # the predictor keeps the first and last halves
            keep = list(range(limit // 2)) + list(range(len(points) - (limit - limit // 2), len(points)))
            points, labels = points[keep], labels[keep]
        point_inputs = {
            "point_coords": points.to(self.device, torch.float32)[None],
            "point_labels": labels.to(self.device, torch.int32)[None],
        }
        out = self.prompt_step(frame_idx, features, point_inputs=point_inputs)
        return out["pred_masks"].float(), out["obj_ptr"], out["object_score_logits"].float()

    def prompt_step(self, frame_idx: int, features: FrameFeatures, point_inputs=None, mask_inputs=None) -> dict:
        """The network's own `track_step` on a prompt frame, without memory or memory encoder."""
        return self.net.track_step(
            frame_idx=frame_idx,
            is_init_cond_frame=True,
            current_vision_feats=features.vision_feats,
            current_vision_pos_embeds=features.vision_pos,
            feat_sizes=features.feat_sizes,
            point_inputs=point_inputs,
            mask_inputs=mask_inputs,
            output_dict={"cond_frame_outputs": {}, "non_cond_frame_outputs": {}},
            num_frames=self.max_ptrs,
            run_mem_encoder=False,
            **self.family.track_step_extra,
        )

    # ---- tracking -------------------------------------------------------------------------
    def track(self, features: FrameFeatures, plans: list[MemoryPlan], shot_length: int | None = None) -> Decoded:
        """`shot_length`: frames in the shot, SAM 2's `num_frames` (None: a long shot)."""
        net = self.net
        batch = len(plans)
        feats, pos, high_res = features.expand(batch)
        memory, memory_pos, n_ptr_tokens, weight, valid = self._assemble(plans, shot_length)
        pix = memory_attention(
            self._memory_attention, feats[-1], pos[-1], memory, memory_pos, n_ptr_tokens, weight, valid
        )
        h, w = features.feat_sizes[-1]
        pix = pix.permute(1, 2, 0).reshape(batch, self.hidden_dim, h, w)

        coords = torch.zeros(batch, 1, 2, device=self.device)
        labels = -torch.ones(batch, 1, dtype=torch.int32, device=self.device)
        sparse, dense = net.sam_prompt_encoder(points=(coords, labels), boxes=None, masks=None)
        lowres, ious, tokens, obj = net.sam_mask_decoder(
            image_embeddings=pix,
            image_pe=net.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=True,
            repeat_image=False,
            high_res_features=high_res,
        )
        lowres = torch.where(obj[:, None, None] > 0, lowres, NO_OBJ_SCORE).float()
        obj = obj.float()
        host = torch.cat([ious.float(), obj], dim=1).cpu()  # the one sync of the step
        return Decoded(
            lowres=lowres,
            tokens=tokens,
            object_logits=obj,
            ious_cpu=host[:, :3].tolist(),
            object_logits_cpu=host[:, 3].tolist(),
        )

    def commit(self, features: FrameFeatures, decoded: Decoded, picks: list[tuple[int, int]]):
        """Memories for the chosen (unit, candidate) pairs. -> (pointers [K, C], mem [K, Cm, h, w])"""
        net = self.net
        units = self._upload([u for u, _ in picks])
        cands = self._upload([j for _, j in picks])
        obj = decoded.object_logits[units]  # [K, 1]
        ptr = net.obj_ptr_proj(decoded.tokens[units, cands])
        visible = torch.sigmoid(obj) if self._soft_ptr else (obj > 0).float()
        if self._fixed_ptr:
            ptr = visible * ptr
        ptr = ptr + (1 - visible) * net.no_obj_ptr
        # Upsample all 3 candidates, then pick, as SAM 2 does: on CPU, bilinear
        # interpolation of 3 channels and of 1 differ in the last bits.
        lowres = decoded.lowres[units]
        high_res = F.interpolate(lowres, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)
        high_res = high_res[torch.arange(len(picks), device=self.device), cands][:, None]
        mem = self._encode_memory(features, high_res, obj, from_prompt=False)
        return ptr.float(), mem

    # ---- internals ------------------------------------------------------------------------
    def _encode_memory(self, features: FrameFeatures, high_res, object_logits, from_prompt: bool):
        feats, _, _ = features.expand(high_res.size(0))
        mem, _ = self.net._encode_new_memory(
            **self.family.track_step_extra,
            current_vision_feats=feats,
            feat_sizes=features.feat_sizes,
            pred_masks_high_res=high_res,
            object_score_logits=object_logits,
            is_mask_from_pts=from_prompt,
        )
        # Stored in bf16, as SAM 2 and SAM2Long store memories.
        return mem.to(torch.bfloat16)

    def _upload(self, values: list, dtype=None) -> torch.Tensor:
        """A host list as a device tensor without a host-device sync (pinned, non-blocking)."""
        t = torch.tensor(values, dtype=dtype)
        if self.device.type == "cuda":
            return t.pin_memory().to(self.device, non_blocking=True)
        return t.to(self.device)

    def _memory_positions(self, side: int) -> torch.Tensor:
        """[HW, Cm] positional encoding of a spatial memory: the same for every frame.
        Cast as the memory encoder casts it (to its output dtype under autocast)."""
        x = torch.zeros(1, self.hidden_dim, side, side, device=self.device)
        with torch.inference_mode(), self.model.autocast():
            x = self._memory_encoder.out_proj(x)
            pos = self._memory_encoder.position_encoding(x).to(x.dtype)
        return pos[0].flatten(1).t().float()

    def _assemble(self, plans: list[MemoryPlan], shot_length: int | None = None):
        """Pad every plan to a common layout: [frames x HW tokens | pointer tokens].

        A few batched copies per plan rather than one per memory entry: on a GPU every
        small copy is a kernel launch, and a P=3 frame has ~60 entries."""
        hw, cm = self._mem_pos.shape
        per_ptr = self.hidden_dim // cm
        n_frames = max(len(p.spatial) for p in plans)
        n_ptrs = max(len(p.pointers) for p in plans)
        base = n_frames * hw
        memory = torch.zeros(len(plans), base + n_ptrs * per_ptr, cm, device=self.device)
        memory_pos = torch.zeros_like(memory)
        ptr_pos = self._pointer_positions([position for p in plans for _, position, _ in p.pointers], shot_length)
        first_ptr = 0
        for b, plan in enumerate(plans):
            if plan.spatial:
                n = len(plan.spatial) * hw
                mems = torch.stack([mem for mem, _, _ in plan.spatial])  # [k, Cm, h, w]
                memory[b, :n] = mems.flatten(2).transpose(1, 2).reshape(n, cm)
                memory_pos[b, :n] = torch.stack([self._spatial_pos[tidx] for _, tidx, _ in plan.spatial]).view(n, cm)
            if plan.pointers:
                k = len(plan.pointers)
                sl = slice(base, base + k * per_ptr)
                memory[b, sl] = torch.stack([ptr for ptr, _, _ in plan.pointers]).view(k * per_ptr, cm)
                if ptr_pos is not None:  # each pointer is split into per_ptr tokens that share its position
                    memory_pos[b, sl] = ptr_pos[first_ptr : first_ptr + k].repeat_interleave(per_ptr, dim=0)
                first_ptr += k

        def per_key(frame_values, ptr_values, fill):  # per entry [B, frames | pointers] -> per key [B, Nk]
            rows = [_padded(f, n_frames, fill) + _padded(p, n_ptrs, fill) for f, p in zip(frame_values, ptr_values)]
            t = self._upload(rows, torch.float32 if isinstance(fill, float) else torch.bool)
            frames, ptrs = t[:, :n_frames], t[:, n_frames:]
            return torch.cat([frames.repeat_interleave(hw, 1), ptrs.repeat_interleave(per_ptr, 1)], 1)

        weight = valid = None
        frame_w = [[w for _, _, w in p.spatial] for p in plans]
        ptr_w = [[w for _, _, w in p.pointers] for p in plans]
        if any(w != 1.0 for ws in frame_w + ptr_w for w in ws):
            weight = per_key(frame_w, ptr_w, 1.0)
        if any(len(p.spatial) < n_frames or len(p.pointers) < n_ptrs for p in plans):
            valid = per_key([[True] * len(p.spatial) for p in plans], [[True] * len(p.pointers) for p in plans], False)
        return memory, memory_pos, n_ptrs * per_ptr, weight, valid

    def _pointer_positions(self, positions: list, shot_length: int | None = None):
        """[n, Cm] temporal encodings of pointers, projected (None where the network adds none):
        a sine of position / (min(shot length, max pointers) - 1), SAM 2's normaliser, so a
        shot shorter than 16 frames spreads its pointers over the whole range as in SAM 2."""
        net = self.net
        if not positions or not self._ptr_tpos:
            return None
        dim = self.hidden_dim if self._ptr_tpos_projected else self.mem_dim
        span = self.max_ptrs if shot_length is None else min(shot_length, self.max_ptrs)
        pe = get_1d_sine_pe(self._upload(positions) / (span - 1), dim=dim)
        return net.obj_ptr_tpos_proj(pe).float()


def _padded(values: list, length: int, fill) -> list:
    return values + [fill] * (length - len(values))
