"""Memory attention with key modulation and padding (spec §2.4c, pitfall 9)."""

import torch

from sam2long.attention import memory_attention

from conftest import small_net

HW, C, CM = 16, 256, 64  # a 64 px input: 4x4 tokens per frame


def inputs(batch, frames, ptr_tokens, seed=0):
    g = torch.Generator().manual_seed(seed)
    curr = torch.randn(HW, batch, C, generator=g)
    curr_pos = torch.randn(HW, batch, C, generator=g)
    n = frames * HW + ptr_tokens
    return curr, curr_pos, torch.randn(batch, n, CM, generator=g), torch.randn(batch, n, CM, generator=g)


def test_weights_scale_the_key_input_not_the_values():
    module = small_net(image_size=64).memory_attention
    curr, curr_pos, mem, pos = inputs(1, 2, 8)
    w = torch.ones(1, mem.shape[1])
    w[:, :HW] = 1.05
    w[:, HW : 2 * HW] = 0.95
    w[:, 2 * HW :] = 0.97
    with torch.inference_mode():
        weighted = memory_attention(module, curr, curr_pos, mem, pos, 8, key_weight=w)
        # Same keys (memory + pos) * w with unscaled values, written as a different pos:
        manual = memory_attention(module, curr, curr_pos, mem, (mem + pos) * w[..., None] - mem, 8)
        plain = memory_attention(module, curr, curr_pos, mem, pos, 8)
        ones = memory_attention(module, curr, curr_pos, mem, pos, 8, key_weight=torch.ones_like(w))
    torch.testing.assert_close(weighted, manual, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(weighted, plain, atol=1e-4)
    torch.testing.assert_close(ones, plain, atol=1e-6, rtol=1e-6)


def test_padded_slots_do_not_leak():
    module = small_net(image_size=64).memory_attention
    curr, curr_pos, mem, pos = inputs(1, 2, 4)  # 2 frames, 1 pointer (4 tokens)
    with torch.inference_mode():
        alone = memory_attention(module, curr, curr_pos, mem, pos, 4)
        # In a batch padded to 3 frames and 2 pointers, with garbage in the padding.
        g = torch.Generator().manual_seed(9)
        big_mem = torch.randn(2, 3 * HW + 8, CM, generator=g) * 50
        big_pos = torch.randn(2, 3 * HW + 8, CM, generator=g) * 50
        big_mem[0, : 2 * HW], big_pos[0, : 2 * HW] = mem[0, : 2 * HW], pos[0, : 2 * HW]
        big_mem[0, 3 * HW : 3 * HW + 4], big_pos[0, 3 * HW : 3 * HW + 4] = mem[0, 2 * HW :], pos[0, 2 * HW :]
        valid = torch.ones(2, 3 * HW + 8, dtype=torch.bool)
        valid[0, 2 * HW : 3 * HW] = False
        valid[0, 3 * HW + 4 :] = False
        batched = memory_attention(
            module, curr.expand(-1, 2, -1), curr_pos.expand(-1, 2, -1), big_mem, big_pos, 8, key_valid=valid
        )
    torch.testing.assert_close(batched[:, :1], alone, atol=1e-4, rtol=1e-4)
