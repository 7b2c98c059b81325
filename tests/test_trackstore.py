"""Track stores: soft mattes kept beside the hard masks, in memory and spilled."""

from __future__ import annotations

import pytest
import torch

from sam2long.media.trackstore import TrackBuilder


def track_with(ids, n=2, h=4, w=6):
    builder = TrackBuilder(n, h, w)
    builder.ensure_objects(ids)
    builder.add(0, ids, torch.ones(len(ids), h, w, dtype=torch.bool))
    return builder.build()


# --- soft mattes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("bits", [8, 16])
def test_soft_mattes_kept_in_memory_and_spilled(tmp_path, bits):
    import numpy as np

    from sam2long.media.trackstore import SpillBuilder

    rng = np.random.default_rng(2)
    n, h, w = 5, 24, 36
    mem, disk = TrackBuilder(n, h, w, soft_bits=bits), SpillBuilder(tmp_path, n, h, w, soft_bits=bits)
    plain = SpillBuilder(tmp_path, n, h, w)
    expect = {}
    for t in (3, 0, 1):
        logits = torch.from_numpy(rng.normal(0, 4, (2, h, w)).astype(np.float32))
        for b in (mem, disk, plain):
            b.add(t, [2, 6], logits > 0, [0.1, 0.2], logits=logits if b is not plain else None)
        for k, oid in enumerate((2, 6)):
            expect[oid, t] = logits[k].sigmoid().numpy()
    a, b, c = mem.build(), disk.build(), plain.build()
    top = (1 << bits) - 1
    assert a.has_soft and b.has_soft and not c.has_soft and a.soft_bits == b.soft_bits == bits
    for (oid, t), p in expect.items():
        for track in (a, b):
            got = track.soft_mask(oid, t)
            assert got.dtype == np.float32 and np.abs(got - p).max() <= 0.5 / top + 1e-6
            assert np.array_equal(got * top, np.round(got * top))  # exactly the quantised levels
        assert np.array_equal(a.soft_mask(oid, t), b.soft_mask(oid, t))
        assert np.array_equal(c.soft_mask(oid, t), c.mask(oid, t).astype(np.float32))  # no soft: the hard mask
    assert not a.soft_mask(2, 2).any() and set(b.frame_soft(1)) == {2, 6} and b.frame_soft(2) == {}
    assert torch.equal(a.object_soft(6), b.object_soft(6)) and a.object_soft(6, 1, 3).shape == (3, h, w)
    union = a.union_soft()
    assert torch.equal(union[3], torch.maximum(a.object_soft(2)[3], a.object_soft(6)[3]))
    assert torch.equal(union[2], torch.zeros(h, w))
    # spilled: nothing of the soft mattes stays in memory
    assert b.nbytes() == c.nbytes()
    assert sorted(p.name for p in (b.folder / "2").iterdir()) == \
        sorted([f"{j:07d}.z" for j in (0, 1, 3)] + [f"{j:07d}.s{bits}.z" for j in (0, 1, 3)])
    # in memory: counted in nbytes, next to the packed masks
    held = sum(x.nbytes for d in (a.packed, a.present, a.scores) for x in d.values())
    assert a.soft_nbytes() > 0 and a.nbytes() == a.soft_nbytes() + held


def test_soft_mattes_need_logits_and_known_bits():
    with pytest.raises(ValueError, match="8 or 16 bits"):
        TrackBuilder(1, 2, 2, soft_bits=12)
    b = TrackBuilder(1, 2, 2, soft_bits=8)
    with pytest.raises(ValueError, match="needs the frame's logits.*return_logits=True"):
        b.add(0, [1], torch.ones(1, 2, 2, dtype=torch.bool))
