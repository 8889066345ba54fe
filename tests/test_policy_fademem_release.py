"""FadeMem as released (span**0.5 merges, integer mu, unprotected anchor, window layout) against
the written-out reference of official-release.md."""
from __future__ import annotations

import pytest
import torch

from fademem_core import policy_from_name
from tests.support.policy_harness import assert_allocates, assert_entries_hold, geometry, roll_to
from tests.support.policy_reference import (RELEASE_60S_ENTRIES, RELEASE_60S_POSITIONS, released_bank,
                              released_positions)


def _reference(start, **kw):
    bank = released_bank(start, budget=kw.get("budget", 12), beta=kw.get("beta", 0.3),
                         gamma=kw.get("span_gamma", 0.5), anchor=kw.get("anchor", True))
    if kw.get("positions", "release") == "release":
        pos, chunk_at = released_positions(bank, start, kw.get("budget", 12), kw.get("beta", 0.3))
    else:
        pos, chunk_at = [e.mu for e in bank], float(start)
    for e, p in zip(bank, pos):
        e.pos = p
    return bank, [chunk_at + j for j in range(3)]


def test_the_documented_60_second_layout():
    """official-release.md: after 237 evicted frames, (mu, span) and positions [0, 1..8, 15..17]."""
    cache, chunk_positions = roll_to(policy_from_name("fademem_release"), 237)
    assert cache.entries() == [(float(m), s) for m, s in RELEASE_60S_ENTRIES]
    assert cache.encoded_positions() == [float(p) for p in RELEASE_60S_POSITIONS]
    assert chunk_positions == [18.0, 19.0, 20.0]


@pytest.mark.parametrize("kw", [
    {},
    {"beta": 1.0, "span_gamma": 1.0},
    {"anchor": False, "beta": 0.5},
    {"budget": 6, "positions": "absolute"},
    {"budget": 8, "span_gamma": 0.25},
], ids=["release", "linear", "no-anchor", "small-absolute", "gamma-0.25"])
def test_every_chunk_matches_the_reference(kw):
    """Which frames each entry holds (with which weights), its mu/span and its position."""
    policy = policy_from_name("fademem_release", **kw)
    for start in (3, 12, 15, 18, 21, 27, 36, 45, 60, 75):
        cache, chunk_positions = roll_to(policy, start)
        bank, want_chunk = _reference(start, **kw)
        assert cache.entries() == [(e.mu, e.span) for e in bank], start
        assert chunk_positions == want_chunk, start
        assert_entries_hold(cache, bank)
        cache.close()


def test_the_anchor_keeps_its_own_content_when_it_absorbs_a_neighbour():
    bank = released_bank(90)
    assert bank[0].anchor and bank[0].mu == 0.0 and bank[0].span > 1
    assert bank[0].content == {0: 1.0}  # the reference agrees: frame 0 only
    cache, _ = roll_to(policy_from_name("fademem_release"), 90)
    assert cache.entries()[0] == (0.0, bank[0].span)
    assert_entries_hold(cache, _reference(90)[0])


def test_bf16_storage_stays_close_to_the_reference():
    cache, _ = roll_to(policy_from_name("fademem_release"), 45, geo=geometry(torch.bfloat16))
    assert_entries_hold(cache, _reference(45)[0], tol=0.1)


@pytest.mark.parametrize("kw,word", [
    ({"span_gamma": 0.0}, "span_gamma"), ({"span_gamma": -1}, "span_gamma"),
    ({"span_gamma": float("nan")}, "span_gamma"), ({"beta": 0}, "beta"),
    ({"budget": 1}, "budget"), ({"budget": 19}, "budget"), ({"anchor": 1}, "anchor"),
    ({"positions": "packed"}, "positions"),
])
def test_bad_parameters_are_refused(kw, word):
    with pytest.raises(ValueError, match=word):
        policy_from_name("fademem_release", **kw)


def test_the_window_layout_needs_chunks_of_three():
    policy = policy_from_name("fademem_release")
    with pytest.raises(ValueError, match="chunk"):
        policy.make_cache(geometry(), 2)
    policy_from_name("fademem_release", positions="absolute").make_cache(geometry(), 2).close()



def test_memory_bytes_is_the_formula_and_what_is_allocated():
    assert_allocates(policy_from_name("fademem_release", budget=7), 7 + 3, start=60)
