"""Memory attention over a batch of pathways whose memories differ.

SAM 2's `MemoryAttention` takes one memory layout for the whole batch and has no
key mask. Here each batch item (an object's pathway) brings its own number of
memory frames and pointers: the frames are padded to the longest and masked, and
SAM2Long's key modulation multiplies each key input (memory + positional
encoding) by its entry's weight, before the key projection and RoPE. The weights
are the `sam2` module's own; with one item, no padding and no weights, the
arithmetic is exactly SAM 2's.

Attention kernel: we call `scaled_dot_product_attention` as SAM 2's own attention
does, leaving the kernel to torch's default selection, so on every device our
tree-off path runs the kernel that SAM 2 runs in the same process. On CPU that is
torch's flash kernel, with or without our padding mask (the math kernel differs in
the last bits, ~6e-7); tests pin it around both runs and check it is the default.
On CUDA a padding mask can move a padded batch to another kernel; one unpadded
pathway, SAM 2's case, never has one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from sam2.modeling.sam.transformer import apply_rotary_enc


def _rope_attention(attn, q, k, v, num_k_exclude_rope: int, attn_mask):
    q = attn._separate_heads(attn.q_proj(q), attn.num_heads)
    k = attn._separate_heads(attn.k_proj(k), attn.num_heads)
    v = attn._separate_heads(attn.v_proj(v), attn.num_heads)
    side = math.sqrt(q.shape[-2])
    attn.freqs_cis = attn.freqs_cis.to(q.device)
    if attn.freqs_cis.shape[0] != q.shape[-2]:
        attn.freqs_cis = attn.compute_cis(end_x=side, end_y=side).to(q.device)
    num_k_rope = k.size(-2) - num_k_exclude_rope
    q, k[:, :, :num_k_rope] = apply_rotary_enc(
        q, k[:, :, :num_k_rope], freqs_cis=attn.freqs_cis, repeat_freqs_k=attn.rope_k_repeat
    )
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
    return attn.out_proj(attn._recombine_heads(out))


def memory_attention(
    module,
    curr: torch.Tensor,  # [HW, B, C] current frame features
    curr_pos: torch.Tensor,  # [HW, B, C]
    memory: torch.Tensor,  # [B, Nk, Cm]: frames (padded to a common count), then pointer tokens
    memory_pos: torch.Tensor,  # [B, Nk, Cm]
    num_ptr_tokens: int,
    key_weight: torch.Tensor | None = None,  # [B, Nk] or None
    key_valid: torch.Tensor | None = None,  # [B, Nk] bool or None (all valid)
) -> torch.Tensor:
    """`MemoryAttention.forward` with per-item key weights and key padding. -> [HW, B, C]"""
    assert module.batch_first
    output = curr
    if module.pos_enc_at_input and curr_pos is not None:
        output = output + 0.1 * curr_pos
    output = output.transpose(0, 1)
    curr_pos = curr_pos.transpose(0, 1)
    attn_mask = None if key_valid is None else key_valid[:, None, None, :]

    for layer in module.layers:
        # self-attention
        tgt2 = layer.norm1(output)
        q = k = tgt2 + curr_pos if layer.pos_enc_at_attn else tgt2
        output = output + layer.dropout1(layer.self_attn(q, k, v=tgt2))
        # cross-attention to memory
        tgt2 = layer.norm2(output)
        q = tgt2 + curr_pos if layer.pos_enc_at_cross_attn_queries else tgt2
        k = memory + memory_pos if layer.pos_enc_at_cross_attn_keys else memory
        if key_weight is not None:
            k = k * key_weight[..., None].to(k.dtype)
        tgt2 = _rope_attention(layer.cross_attn_image, q, k, memory, num_ptr_tokens, attn_mask)
        output = output + layer.dropout2(tgt2)
        # MLP
        tgt2 = layer.norm3(output)
        tgt2 = layer.linear2(layer.dropout(layer.activation(layer.linear1(tgt2))))
        output = output + layer.dropout3(tgt2)
    return module.norm(output).transpose(0, 1)
