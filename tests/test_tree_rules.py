"""The memory tree's rules (spec §2.4, pitfalls §5), checked with scripted numbers."""

import math
import random

import pytest
import torch

from sam2long.engine.memory import MemoryEntry, Node, drop_unreachable, extend, plan_memory, spatial_reach
from sam2long.engine.tree import LOG_EPS, Choice, TreeConfig, candidate_score, rank_weights, select_candidates

# ---- scoring and pruning -------------------------------------------------------------------


def test_score_is_parent_score_plus_log_iou():
    assert candidate_score(-0.5, 0.8) == pytest.approx(-0.5 + math.log(0.8 + 1e-5))
    assert LOG_EPS == 1e-5
    # An IoU of 0 stays finite thanks to the epsilon.
    assert candidate_score(0.0, 0.0) == pytest.approx(math.log(1e-5))


def test_certain_frame_keeps_top_p_by_score():
    out = select_candidates([0.0, -1.0], [[0.9, 0.5, 0.8], [0.95, 0.2, 0.1]], [5.0, 5.0], 3, 2.0)
    assert [(c.parent, c.index) for c in out] == [(0, 0), (0, 2), (0, 1)]
    assert out[0].score == pytest.approx(math.log(0.9 + 1e-5))


def test_identical_parents_give_copies_of_the_best_candidate():
    # Spec §2.6: while frames stay certain, the stable sort picks (0,j*), (1,j*), (2,j*).
    row = [0.7, 0.9, 0.8]
    out = select_candidates([0.0] * 3, [row] * 3, [3.0] * 3, 3, 2.0)
    assert [(c.parent, c.index) for c in out] == [(0, 1), (1, 1), (2, 1)]


def test_stable_ties_keep_parent_then_candidate_order():
    out = select_candidates([0.0, 0.0], [[0.5, 0.5, 0.1], [0.5, 0.9, 0.5]], [9.0, 9.0], 4, 2.0)
    assert [(c.parent, c.index) for c in out] == [(1, 1), (0, 0), (0, 1), (1, 0)]


def test_one_confident_pathway_switches_diversity_off_for_all():
    # |logit| 2.5 > 2 on one pathway: plain top-P even though the keys repeat.
    out = select_candidates([0.0, 0.0], [[0.9, 0.9, 0.9], [0.9, 0.9, 0.9]], [0.5, 2.5], 3, 2.0)
    assert [(c.parent, c.index) for c in out] == [(0, 0), (0, 1), (0, 2)]


def test_threshold_is_inclusive_for_uncertain():
    # max |logit| == dconf counts as uncertain: diversity applies.
    out = select_candidates([0.0], [[0.9, 0.9, 0.5]], [2.0], 2, 2.0)
    assert [(c.parent, c.index) for c in out] == [(0, 0), (0, 2)]


def test_uncertain_frame_picks_distinct_rounded_iou():
    out = select_candidates([0.0], [[0.901, 0.899, 0.5]], [1.0], 3, 2.0)
    # 0.901 and 0.899 both round to 0.90: the second is skipped; fill-up has no other parent.
    assert [(c.parent, c.index) for c in out] == [(0, 0), (0, 2)]


def test_uncertain_keys_are_signed_by_object_presence():
    # Same IoU, one parent sees the object (+0.8), the other not (-0.8): distinct keys.
    out = select_candidates([0.0, -0.01], [[0.8, 0.1, 0.1], [0.8, 0.1, 0.1]], [0.5, -0.5], 2, 2.0)
    assert [(c.parent, c.index) for c in out] == [(0, 0), (1, 0)]


def test_uncertain_diversity_can_drop_a_good_parent():
    # Spec §2.6 replica: parents at 0, -0.1, -0.2; every candidate of parent 1 rounds to
    # 0.90 like parent 0's best, so parent 1 vanishes and no fill-up runs.
    out = select_candidates(
        [0.0, -0.1, -0.2],
        [[0.90, 0.60, 0.50], [0.902, 0.898, 0.901], [0.85, 0.40, 0.30]],
        [1.0, 1.0, 1.0],
        3,
        2.0,
    )
    assert [(c.parent, c.index) for c in out] == [(0, 0), (2, 0), (0, 1)]
    assert 1 not in {c.parent for c in out}


def test_fill_up_favours_unrepresented_parents_even_with_duplicate_keys():
    # Only two distinct keys exist; the fill-up re-admits parent 2's best (key 0.50 again).
    out = select_candidates(
        [0.0, -0.1, -0.2], [[0.9, 0.5, 0.5], [0.9, 0.9, 0.9], [0.5, 0.5, 0.5]], [1.0, 1.0, 1.0], 3, 2.0
    )
    assert [(c.parent, c.index) for c in out] == [(0, 0), (0, 1), (1, 0)]
    out = select_candidates(
        [0.0, -0.1, -0.2], [[0.9, 0.9, 0.9], [0.9, 0.9, 0.9], [0.5, 0.5, 0.5]], [1.0, 1.0, 1.0], 4, 2.0
    )
    assert [(c.parent, c.index) for c in out] == [(0, 0), (2, 0), (1, 0)]


def test_rounding_is_pythons():
    # round() on binary floats: 0.125 -> 0.12, 0.135 -> 0.14 (0.135 is stored above it).
    out = select_candidates([0.0], [[0.125, 0.12, 0.135]], [0.1], 3, 2.0)
    assert [(c.parent, c.index) for c in out] == [(0, 2), (0, 0)]


def test_first_choice_is_always_the_top_scoring_candidate():
    for logits in ([0.1, 0.2], [5.0, 5.0]):
        out = select_candidates([-3.0, 0.0], [[0.99, 0.1, 0.2], [0.5, 0.6, 0.7]], logits, 3, 2.0)
        assert (out[0].parent, out[0].index) == (1, 2)


# ---- modulation ranks ----------------------------------------------------------------------


def test_rank_weights():
    assert rank_weights([10.0], 0.95, 1.05) == pytest.approx([0.95])  # a lone entry gets the low end
    assert rank_weights([3.0, -1.0, 10.0], 0.95, 1.05) == pytest.approx([1.0, 0.95, 1.05])
    # Only the rank matters; ties keep list order.
    assert rank_weights([2.0, 2.0, 1.0], 0.9, 1.1) == pytest.approx([1.0, 1.1, 0.9])


def test_rank_weights_are_float32_linspace_bit_for_bit():
    # The reference computes the steps with float32 torch.linspace; a float64 formula
    # rounded to float32 is one ulp off from 4 entries on (e.g. the 2nd of 4).
    import torch

    for n in range(1, 17):
        weights = rank_weights(list(range(n)), 0.95, 1.05)  # scores ascending: weights in order
        assert torch.equal(torch.tensor(weights, dtype=torch.float32), torch.linspace(0.95, 1.05, n)), n


# ---- memory selection ----------------------------------------------------------------------


def entry(frame, iou=0.9, score=3.0):
    return MemoryEntry(frame, torch.full((8,), float(frame)), score, iou, torch.full((1, 1, 1), float(frame)))


def path_of(entries, cfg):
    """A leaf node whose history contributed `entries` (oldest first)."""
    node = Node(0, None, 0.0, 10.0, None, None)
    for e in entries:
        reliable, recent = extend(node, e, cfg)
        node = Node(e.frame, node, 0.0, e.object_score, None, e, reliable, recent)
    return node


PROMPT = MemoryEntry(0, torch.zeros(8), 10.0, 1.0, torch.zeros(1, 1, 1))
CFG = TreeConfig()


def frames_of(plan):
    return [int(m.flatten()[0]) for m, _, _ in plan.spatial]


def test_reliability_is_strict_on_iou_and_object_score():
    cfg = TreeConfig(iou_threshold=0.3)
    leaf = path_of([entry(1, iou=0.3), entry(2, score=0.0), entry(3, iou=0.31, score=0.01), entry(4, iou=0.2)], cfg)
    assert [e.frame for e in leaf.reliable] == [3]
    plan = plan_memory(leaf, 5, [PROMPT], cfg, 7, 16)
    # Frame 4 is unreliable but is the previous frame: always in memory.
    assert frames_of(plan) == [0, 3, 4]


def test_spatial_memory_is_last_six_of_v_with_rank_encodings():
    leaf = path_of([entry(f, iou=0.9 if f % 2 else 0.1) for f in range(1, 21)], CFG)
    plan = plan_memory(leaf, 21, [PROMPT], CFG, 7, 16)
    # Reliable: odd frames; previous frame 20 appended; last 6 entries of V.
    assert frames_of(plan) == [0, 11, 13, 15, 17, 19, 20]
    # Prompt gets temporal index 6; the newest selected frame 0, then 1, 2 ... by rank.
    assert [idx for _, idx, _ in plan.spatial] == [6, 5, 4, 3, 2, 1, 0]


def test_v_is_capped_at_15_reliable_plus_previous_frame():
    leaf = path_of([entry(f) for f in range(1, 30)] + [entry(30, iou=0.0)], CFG)
    assert len(leaf.reliable) == 15
    plan = plan_memory(leaf, 31, [PROMPT], CFG, 7, 16)
    # V = frames 15..29 (15 reliable) + 30: 16 entries, so 15 non-prompt pointers.
    ptr_frames = [int(p[0]) for p, _, _ in plan.pointers[1:]]
    assert ptr_frames == list(range(30, 15, -1))


def test_pointer_off_by_one_oldest_entry_gives_no_pointer():
    leaf = path_of([entry(1), entry(2), entry(3)], CFG)
    plan = plan_memory(leaf, 4, [PROMPT], CFG, 7, 16)
    ptr_frames = [int(p[0]) for p, _, _ in plan.pointers]
    positions = [pos for _, pos, _ in plan.pointers]
    assert ptr_frames == [0, 3, 2]  # frame 1 (V[0]) never supplies a pointer
    assert positions == [4, 1, 2]  # prompt at true distance |t - s|, the rest by rank


def test_single_entry_v_gives_only_the_prompt_pointer_at_weight_095():
    leaf = path_of([entry(1)], CFG)  # frame s+2: V = [s+1]
    plan = plan_memory(leaf, 2, [PROMPT], CFG, 7, 16)
    assert len(plan.pointers) == 1
    assert plan.pointers[0][2] == pytest.approx(0.95)
    # Frames are modulated: prompt (10) vs frame 1 (3.0).
    assert [w for _, _, w in plan.spatial] == pytest.approx([1.05, 0.95])


def test_no_modulation_with_only_the_prompt_in_memory():
    root = Node(0, None, 0.0, 10.0, None, None)
    plan = plan_memory(root, 1, [PROMPT], CFG, 7, 16)
    assert [w for _, _, w in plan.spatial] == [1.0]
    assert [w for _, _, w in plan.pointers] == [1.0]


def test_modulation_ranks_frames_and_pointers_separately_and_prompt_is_10():
    leaf = path_of([entry(1, score=12.0), entry(2, score=-1.0), entry(3, score=0.5, iou=0.1)], CFG)
    plan = plan_memory(leaf, 4, [PROMPT], CFG, 7, 16)
    # Frames: prompt 10, frame 1 (12), frame 3 (0.5, unreliable but previous); frame 2 is
    # not reliable (score -1). 12 outranks the prompt.
    assert frames_of(plan) == [0, 1, 3]
    assert [w for _, _, w in plan.spatial] == pytest.approx([1.0, 1.05, 0.95])
    # Pointers: prompt (10), then frame 3 (0.5) only (V[0] = frame 1 gives none).
    assert [w for _, _, w in plan.pointers] == pytest.approx([1.05, 0.95])


def test_modulation_off_gives_unit_weights():
    cfg = TreeConfig(key_modulation=False)
    leaf = path_of([entry(1), entry(2)], cfg)
    plan = plan_memory(leaf, 3, [PROMPT], cfg, 7, 16)
    assert all(w == 1.0 for _, _, w in plan.spatial + plan.pointers)


def test_sam2_mode_uses_true_distance():
    cfg = TreeConfig.sam2()
    leaf = path_of([entry(f, iou=0.0, score=-5.0) for f in range(1, 21)], cfg)
    plan = plan_memory(leaf, 21, [PROMPT], cfg, 7, 16)
    assert frames_of(plan) == [0, 15, 16, 17, 18, 19, 20]  # unreliable frames count in SAM 2
    assert [idx for _, idx, _ in plan.spatial] == [6, 5, 4, 3, 2, 1, 0]
    assert [pos for _, pos, _ in plan.pointers] == [21] + list(range(1, 16))


def test_unreachable_spatial_memory_is_dropped_and_pointers_kept():
    leaf = path_of([entry(f) for f in range(1, 12)], CFG)
    drop_unreachable([leaf], 12, CFG, 7)
    kept = [e.frame for e in leaf.reliable if e.mem is not None]
    assert kept == [6, 7, 8, 9, 10, 11]
    assert all(e.ptr is not None for e in leaf.reliable)  # pointers reach 15 back


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("cfg", [CFG, TreeConfig.sam2(), TreeConfig(max_memory_frames=4, iou_threshold=0.5)],
                         ids=["sam2long", "sam2", "short-memory"])
def test_dropped_spatial_memory_is_never_read_again(cfg, seed):
    # Random trees as the tracker grows them: P pathways whose children share parents,
    # random IoUs and object scores (some frames unreliable), corrections (nodes without
    # an entry) and both directions; memory is dropped after every frame.
    rng = random.Random(seed)
    step, pathways, num_maskmem = rng.choice([1, -1]), 3, 7
    t = 0 if step > 0 else 500
    prompt = entry(t, iou=1.0, score=10.0)
    leaves = [Node(t, None, 0.0, 10.0, None, None)] * pathways
    for _ in range(80):
        t += step
        distinct = list({id(leaf): leaf for leaf in leaves}.values())
        if rng.random() < 0.1:  # a correction: every pathway takes the prompt's mask
            fixed = {id(p): Node(t, p, p.score, 10.0, None, None, p.reliable, p.recent) for p in distinct}
            leaves = [fixed[id(leaf)] for leaf in leaves]
        else:
            for leaf in distinct:
                plan = plan_memory(leaf, t, [prompt], cfg, num_maskmem, 16)
                assert all(mem is not None for mem, _, _ in plan.spatial), f"a dropped memory is read at {t}"
            children = {}
            for k in range(pathways):
                parent, j = rng.choice(distinct), rng.randrange(3)
                if (id(parent), j) not in children:
                    e = entry(t, iou=rng.random(), score=rng.uniform(-3.0, 3.0))
                    children[id(parent), j] = Node(t, parent, 0.0, e.object_score, None, e, *extend(parent, e, cfg))
            leaves = list(children.values()) + [rng.choice(list(children.values()))] * (pathways - len(children))
        drop_unreachable(list({id(leaf): leaf for leaf in leaves}.values()), t + step, cfg, num_maskmem)
    # What the surviving pathways still hold is what they can read, and memory really is freed.
    held = [e for leaf in leaves for e in leaf.reliable + leaf.recent]
    reach = {id(e) for leaf in leaves for e in spatial_reach(leaf, t + step, cfg, num_maskmem)}
    assert {id(e) for e in held if e.mem is not None} <= reach
    assert any(e.mem is None for e in held)


def test_tree_config_validation():
    with pytest.raises(ValueError, match="pathways"):
        TreeConfig(pathways=0)
    with pytest.raises(ValueError, match="iou_threshold"):
        TreeConfig(iou_threshold=1.5)
    for bad in (float("nan"), float("inf"), -1.0):  # a node's float widget lets nan through its min/max
        with pytest.raises(ValueError, match="uncertainty"):
            TreeConfig(uncertainty=bad)
    with pytest.raises(ValueError, match="iou_threshold"):
        TreeConfig(iou_threshold=float("nan"))
    assert TreeConfig.sam2() == TreeConfig(pathways=1, memory_selection=False, key_modulation=False)
    assert Choice(0, 1, 0.0).index == 1


# ---- SAM 3's memory-frame filter and prompt-frame limit --------------------------------------


def test_sam3_memory_score_is_cal_mem_scores_arithmetic():
    import math

    from sam2long.engine.tree import SAM3_MEMORY_THRESHOLD, is_reliable, sam3_memory_score

    presence = 2 / (1 + math.exp(-0.02)) - 1  # logit 0.02 (float32: a few ulps of cancellation)
    assert sam3_memory_score([0.02], [0.6]) == pytest.approx(presence * 0.6, rel=1e-4)
    assert sam3_memory_score([-3.0], [0.99]) == 0.0  # absent: no score, whatever the IoU
    # two objects: presence [2, 1] times IoU [2] broadcast to [2, 2], then the mean
    p1, p2 = (2 / (1 + math.exp(-x)) - 1 for x in (0.5, 1.0))
    assert sam3_memory_score([0.5, 1.0], [0.2, 0.8]) == pytest.approx((p1 + p2) / 2 * (0.2 + 0.8) / 2, rel=1e-5)
    sam3 = TreeConfig.sam3()
    assert sam3.reliability == "sam3-joint" and sam3.pathways == 1 and not sam3.key_modulation
    per_object = TreeConfig(reliability="sam3")
    # a frame SAM2Long keeps (IoU 0.6 > 0.3, visible) that SAM 3's filter drops (score 0.006 < 0.01)
    assert is_reliable(0.6, 0.02, TreeConfig()) and not is_reliable(0.6, 0.02, per_object)
    assert presence * 0.6 < SAM3_MEMORY_THRESHOLD
    # and the other way round: a low IoU with a confident object
    assert not is_reliable(0.2, 5.0, TreeConfig()) and is_reliable(0.2, 5.0, per_object)
    with pytest.raises(ValueError, match="reliability"):
        TreeConfig(reliability="best")


def test_closest_prompts_follows_sam3s_selection():
    from sam2long.engine.memory import MemoryEntry, closest_prompts

    cond = [MemoryEntry(f, None, 10.0, 1.0, None) for f in (0, 50, 20, 90, 40, 60)]
    frames = lambda es: [e.frame for e in es]  # noqa: E731
    assert closest_prompts(cond, 45, None) == cond
    assert closest_prompts(cond[:4], 45, 4) == cond[:4]
    # closest before (40), closest at or after (50), then the nearest others (60, 20 tie-free)
    assert frames(closest_prompts(cond, 45, 4)) == [40, 50, 60, 20]
    assert frames(closest_prompts(cond, 50, 2)) == [40, 50]  # "after" includes the frame itself
    assert frames(closest_prompts(cond, 95, 3)) == [90, 60, 50]  # nothing after
