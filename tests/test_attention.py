"""Memory attention with key modulation and padding (spec §2.4c, pitfall 9)."""

import torch

from sam2long.engine.attention import memory_attention

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


def test_memory_layout_of_a_padded_weighted_batch(micro_model):
    """`_assemble` lays each plan out as SAM 2 does ([frames x HW | pointers split in
    tokens]), pads the batch to the longest plan, and marks padding invalid."""
    from sam2.modeling.sam2_utils import get_1d_sine_pe

    from sam2long.engine.core import InferenceCore
    from sam2long.engine.memory import MemoryPlan

    core, net = InferenceCore(micro_model), micro_model.net
    hw, cm = core._mem_pos.shape
    per_ptr = core.hidden_dim // cm
    side = int(hw**0.5)
    g = torch.Generator().manual_seed(3)

    def mem():
        return torch.randn(cm, side, side, generator=g).to(torch.bfloat16)

    def ptr():
        return torch.randn(core.hidden_dim, generator=g)

    long_plan = MemoryPlan(
        spatial=[(mem(), 6, 10.0), (mem(), 2, 0.9), (mem(), 5, 1.0)],
        pointers=[(ptr(), 0, 10.0), (ptr(), 1, 0.95), (ptr(), 7, 1.0)],
    )
    short_plan = MemoryPlan(spatial=[(mem(), 6, 1.0)], pointers=[(ptr(), 2, 1.0)])
    with torch.inference_mode():
        memory, memory_pos, n_ptr_tokens, weight, valid = core._assemble([long_plan, short_plan])

    assert n_ptr_tokens == 3 * per_ptr and memory.shape == (2, 3 * hw + 3 * per_ptr, cm)
    tpos = net.maskmem_tpos_enc.detach().view(-1, cm)
    for b, plan in enumerate([long_plan, short_plan]):
        for i, (m, tidx, w) in enumerate(plan.spatial):
            rows = slice(i * hw, (i + 1) * hw)
            assert torch.equal(memory[b, rows], m.float().flatten(1).t())
            assert torch.equal(memory_pos[b, rows], core._mem_pos + tpos[tidx])
            assert (weight[b, rows] == w).all() and valid[b, rows].all()
        for i, (p, position, w) in enumerate(plan.pointers):
            rows = slice(3 * hw + i * per_ptr, 3 * hw + (i + 1) * per_ptr)
            assert torch.equal(memory[b, rows], p.view(per_ptr, cm))
            with torch.inference_mode():
                pe = net.obj_ptr_tpos_proj(get_1d_sine_pe(torch.tensor([position / 15]), dim=core.hidden_dim))
            torch.testing.assert_close(memory_pos[b, rows], pe.float().expand(per_ptr, cm))
            assert (weight[b, rows] == w).all() and valid[b, rows].all()
    # The short plan's missing frames and pointers are padding: masked, zero, weight 1.
    pad = torch.cat([torch.arange(hw, 3 * hw), torch.arange(3 * hw + per_ptr, 3 * hw + 3 * per_ptr)])
    assert not valid[1, pad].any() and (memory[1, pad] == 0).all() and (weight[1, pad] == 1).all()
    assert valid[0].all()

    # One plan, unweighted: no weights and no mask, so attention runs exactly as SAM 2's.
    plain = MemoryPlan(spatial=[(mem(), 6, 1.0)], pointers=[(ptr(), 0, 1.0)])
    with torch.inference_mode():
        *_, weight, valid = core._assemble([plain])
    assert weight is None and valid is None


def test_default_cpu_kernel_is_the_pinned_one():
    # The equivalence tests pin SDPA to the flash kernel around both SAM 2 and us;
    # that is what torch picks by default on CPU, with and without a key mask.
    from torch.nn.attention import SDPBackend, sdpa_kernel

    module = small_net(image_size=64).memory_attention
    curr, curr_pos, mem, pos = inputs(2, 2, 8)
    valid = torch.ones(2, mem.shape[1], dtype=torch.bool)
    valid[1, HW : 2 * HW] = False
    with torch.inference_mode():
        default = [memory_attention(module, curr, curr_pos, mem, pos, 8, key_valid=v) for v in (None, valid)]
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            pinned = [memory_attention(module, curr, curr_pos, mem, pos, 8, key_valid=v) for v in (None, valid)]
    for a, b in zip(default, pinned):
        assert torch.equal(a, b)
