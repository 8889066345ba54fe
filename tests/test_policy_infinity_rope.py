"""Infinity-RoPE (block-relativistic positions, sink 1, KV flush at a prompt switch) against the
written-out reference of its public code."""
from __future__ import annotations

import pytest

from fademem_core import policy_from_name
from tests.support.policy_harness import assert_allocates, assert_entries_hold, roll_to
from tests.support.policy_reference import RefEntry, infinity_rope_flush, infinity_rope_state


@pytest.mark.parametrize("kw", [{}, {"sink": 2, "window": 9}, {"sink": 0, "window": 6}],
                         ids=["release", "sink2-window9", "no-sink"])
def test_every_chunk_matches_the_reference(kw):
    policy = policy_from_name("infinity_rope", **kw)
    for start in range(0, 40, 3):
        cache, chunk_positions = roll_to(policy, start)
        frames, positions, want_chunk = infinity_rope_state(start, **kw)
        assert cache.exact_frames() == frames, start
        assert chunk_positions == want_chunk, start
        assert_entries_hold(cache, [RefEntry(float(f), 1, {f: 1.0}, pos=p)
                                    for f, p in zip(frames, positions)])
        cache.close()


def test_the_window_is_re_roped_every_chunk_while_the_sink_stays_at_zero():
    seen = []
    for start in (9, 12, 15):
        cache, chunk_positions = roll_to(policy_from_name("infinity_rope"), start)
        seen.append((cache.exact_frames(), cache.encoded_positions(), chunk_positions))
    assert seen == [([0, 7, 8], [0.0, 1.0, 2.0], [3.0, 4.0, 5.0]),
                    ([0, 10, 11], [0.0, 1.0, 2.0], [3.0, 4.0, 5.0]),
                    ([0, 13, 14], [0.0, 1.0, 2.0], [3.0, 4.0, 5.0])]


@pytest.mark.parametrize("kw", [{}, {"sink": 2, "window": 12, "flush_keep": 1}])
def test_a_prompt_switch_flushes_to_the_sink_and_the_newest_frames(kw):
    policy = policy_from_name("infinity_rope", **kw)
    cache, _ = roll_to(policy, 24, begin=False)
    held = cache.exact_frames()
    assert cache.prompt_switch() == []  # nothing re-cached under the new prompt
    want = infinity_rope_flush(held, kw.get("sink", 1), kw.get("flush_keep", 2))
    assert cache.exact_frames() == want
    positions = cache.begin_chunk(24, 3)  # the rollout goes on from the flushed memory
    assert cache.encoded_positions() == [float(i) for i in range(len(want))]
    assert positions == [float(len(want) + j) for j in range(3)]


@pytest.mark.parametrize("kw,word", [
    ({"sink": -1}, "sink"), ({"window": 1}, "window"), ({"window": 2.0}, "window"),
    ({"flush_keep": -1}, "flush_keep"), ({"positions": "absolute"}, "positions"),
])
def test_bad_parameters_are_refused(kw, word):
    with pytest.raises(ValueError, match=word):
        policy_from_name("infinity_rope", **kw)



def test_memory_bytes_is_the_formula_and_what_is_allocated():
    assert_allocates(policy_from_name("infinity_rope"), 6)  # keys move: raw channels kept
