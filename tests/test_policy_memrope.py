"""MemRoPE (sink + long/short moving-average slots + recent, block-relative positions) against
the written-out reference of its public code."""
from __future__ import annotations

import pytest
import torch

from fademem_core import policy_from_name
from tests.support.policy_harness import assert_allocates, assert_entries_hold, geometry, roll_to
from tests.support.policy_reference import memrope_state


@pytest.mark.parametrize("kw", [{}, {"alpha_long": 0.2, "alpha_short": 0.5},
                                {"sink": 1, "recent": 2}],
                         ids=["release", "fast", "sink1-recent2"])
def test_every_chunk_matches_the_reference(kw):
    policy = policy_from_name("memrope", **kw)
    for start in range(0, 45, 3):
        cache, chunk_positions = roll_to(policy, start)
        ref = memrope_state(start, **kw)
        window = kw.get("sink", 3) + 2 + kw.get("recent", 4) + 3
        rolling = start + 3 > window
        first = float(window - 3) if rolling else float(start)
        assert chunk_positions == [first, first + 1, first + 2], start
        assert_entries_hold(cache, ref)
        cache.close()


def test_the_moving_averages_after_k_chunks_are_the_closed_form():
    """L_k = (1-a)^k M_0 + sum_j a (1-a)^(k-j) M_j, M_j the token mean of the frames evicted by
    the j-th roll (frames 5..7 at the first roll from frame 12, then 8+3(j-1)..10+3(j-1))."""
    k = 6
    start = 12 + 3 * k
    ref = memrope_state(start)
    long, short = ref[3].content, ref[4].content
    for alpha, slot in ((0.01, long), (0.1, short)):
        want = {f: (1 - alpha) ** k / 3 for f in (5, 6, 7)}
        for j in range(1, k + 1):
            for f in range(8 + 3 * (j - 1), 11 + 3 * (j - 1)):
                want[f] = alpha * (1 - alpha) ** (k - j) / 3
        assert slot.keys() == want.keys()
        assert all(abs(slot[f] - want[f]) < 1e-12 for f in want)
    cache, _ = roll_to(policy_from_name("memrope"), start)
    assert cache.exact_frames() == [0, 1, 2] + list(range(start - 4, start))
    assert_entries_hold(cache, ref)


def test_frames_three_and_four_are_dropped_at_the_first_roll():
    """As in the release: the two slots after the sink become the averages at the first roll,
    so the frames they held never enter them."""
    ref = memrope_state(12)
    assert set(ref[3].content) == {5, 6, 7}
    cache, _ = roll_to(policy_from_name("memrope"), 12)
    assert cache.exact_frames() == [0, 1, 2, 8, 9, 10, 11]


def test_bf16_storage_stays_close_to_the_reference():
    cache, _ = roll_to(policy_from_name("memrope"), 30, geo=geometry(torch.bfloat16))
    assert_entries_hold(cache, memrope_state(30), tol=0.1)


@pytest.mark.parametrize("kw,word", [
    ({"alpha_long": 0.0}, "alpha_long"), ({"alpha_long": 1.5}, "alpha_long"),
    ({"alpha_short": float("nan")}, "alpha_short"), ({"sink": -1}, "sink"),
    ({"recent": -1}, "recent"), ({"positions": "absolute"}, "positions"),
])
def test_bad_parameters_are_refused(kw, word):
    with pytest.raises(ValueError, match=word):
        policy_from_name("memrope", **kw)


def test_the_averages_need_the_token_grid():
    from fademem_core import KVGeometry

    no_grid = KVGeometry(num_layers=1, batch=1, tokens_per_frame=4, num_heads=2, head_dim=24)
    with pytest.raises(ValueError, match="grid"):
        policy_from_name("memrope").make_cache(no_grid, 3)



def test_memory_bytes_is_the_formula_and_what_is_allocated():
    assert_allocates(policy_from_name("memrope"), 3 + 2 + 4 + 3)
