"""Prompt-switch modes: the re-cache plans and whole rollouts against LongLive's written-out behaviour."""
from __future__ import annotations

import pytest
import torch

from fademem_core import FadeMem, FullCache, SinkWindow, SlidingWindow, generate
from fademem_core.rollout.switching import SWITCH_MODES, RecachePlan, recache_plan, resolve_switch

from tests.support.longlive_reference import longlive_rollout

H = W = 64  # 8x8 latents
TOL = 1e-5
LONGLIVE = SinkWindow(sink=3, window=9)  # LongLive v1.0: local_attn_size 12, sink_size 3


# ---------------------------------------------------------------------------- plans
# LongLive (chunk 3, sink 3, local window 12), switching before frame S.  Written out by hand:
# LongLive re-runs frames max(0, S-12)..S-1.  Up to S = 12 it starts at frame 0 and rewrites
# everything, the sink included.  Past that, global_sink keeps the sink (the 3 oldest re-run
# frames are neither stored nor attended to) and global_sink false stores all 12, the oldest 3
# becoming the sink, its next roll evicting the 3 after them.
@pytest.mark.parametrize("start,longlive,resink_keep", [
    (3, range(0, 3), None),
    (9, range(0, 9), None),
    (12, range(0, 12), None),
    (15, range(6, 15), [3, 4, 5, 9, 10, 11, 12, 13, 14]),
    (30, range(21, 30), [18, 19, 20, 24, 25, 26, 27, 28, 29]),
])
def test_longlive_plans(start, longlive, resink_keep):
    assert recache_plan("longlive", LONGLIVE, 3, start, []) == RecachePlan(tuple(longlive))
    resink = recache_plan("longlive_resink", LONGLIVE, 3, start, [])
    if resink_keep is None:
        assert resink == RecachePlan(tuple(longlive))
    else:
        assert resink == RecachePlan(tuple(range(start - 12, start)), tuple(resink_keep))


def test_other_plans():
    held = [0, 1, 2, 9, 10, 11, 12, 13, 14]
    assert recache_plan("recache", LONGLIVE, 3, 15, held) == RecachePlan(tuple(held))
    assert recache_plan("recache", LONGLIVE, 3, 15, []) is None
    assert recache_plan("keep", LONGLIVE, 3, 15, held) is None
    # no sink: both LongLive modes re-run the last `window` frames and keep what is held
    slide = SlidingWindow(window=6)
    assert recache_plan("longlive", slide, 3, 12, []) == RecachePlan((6, 7, 8, 9, 10, 11))
    assert recache_plan("longlive_resink", slide, 3, 12, []) == RecachePlan(
        (6, 7, 8, 9, 10, 11), (9, 10, 11))
    # global attention: everything is re-run
    assert recache_plan("longlive", FullCache(), 3, 9, []) == RecachePlan(tuple(range(9)))


def test_resolve_switch():
    assert resolve_switch("auto", LONGLIVE) == "longlive"
    assert resolve_switch("auto", SinkWindow(positions="packed")) == "recache"
    for policy in (FadeMem(), SlidingWindow(), FullCache()):
        assert resolve_switch("auto", policy) == "recache"
    for mode in SWITCH_MODES[1:]:
        assert resolve_switch(mode, LONGLIVE) == mode
    with pytest.raises(ValueError, match="FadeMem"):
        resolve_switch("longlive", FadeMem())
    with pytest.raises(ValueError, match="packed"):
        resolve_switch("longlive_resink", SlidingWindow(positions="packed"))
    with pytest.raises(ValueError, match="switch must be one of"):
        resolve_switch("global_sink", LONGLIVE)


# ---------------------------------------------------------------------------- rollouts
@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(5)
    return [torch.randn(1, 5, 32, generator=g) for _ in range(3)]


def _diff(a, b) -> float:
    return float((a - b).abs().max())


@pytest.mark.parametrize("start", [9, 12, 15, 18])
def test_longlive_switch_equals_longlive(model, prompts, start):
    sched = [(0, prompts[0]), (start, prompts[1])]
    ref = longlive_rollout(model, sched, 24, 8, 8, seed=3, sink=3, local=12)
    out = generate(model, sched, LONGLIVE, 24, H, W, seed=3, switch="longlive")
    assert _diff(out, ref) <= TOL
    assert torch.equal(generate(model, sched, LONGLIVE, 24, H, W, seed=3), out)  # auto = longlive
    # the pack's own re-cache agrees while its memory holds LongLive's whole window (S = 9)
    # and not once LongLive re-runs frames the pack has evicted (S = 12) or keeps the sink
    own = generate(model, sched, LONGLIVE, 24, H, W, seed=3, switch="recache")
    assert (_diff(own, ref) <= TOL) == (start == 9)


@pytest.mark.parametrize("starts", [(12,), (15,), (15, 21)])
def test_longlive_resink_equals_longlive_without_global_sink(model, prompts, starts):
    sched = [(0, prompts[0])] + [(s, prompts[i + 1]) for i, s in enumerate(starts)]
    ref = longlive_rollout(model, sched, 27, 8, 8, seed=4, sink=3, local=12, global_sink=False)
    out = generate(model, sched, LONGLIVE, 27, H, W, seed=4, switch="longlive_resink")
    assert _diff(out, ref) <= TOL
    with_sink = generate(model, sched, LONGLIVE, 27, H, W, seed=4, switch="longlive")
    assert (_diff(out, with_sink) <= TOL) == (starts == (12,))  # the modes part past the window


@pytest.mark.parametrize("global_sink", [True, False])
def test_longlive_modes_with_six_frame_chunks(model, prompts, global_sink):
    """LongLive's later configs generate 6 frames per block (v1.0 shipped 3)."""
    sched = [(0, prompts[0]), (18, prompts[1])]
    ref = longlive_rollout(model, sched, 30, 8, 8, seed=6, sink=3, local=12, global_sink=global_sink,
                           chunk=6)
    mode = "longlive" if global_sink else "longlive_resink"
    out = generate(model, sched, LONGLIVE, 30, H, W, seed=6, chunk=6, switch=mode)
    assert _diff(out, ref) <= TOL
    own = generate(model, sched, LONGLIVE, 30, H, W, seed=6, chunk=6, switch="recache")
    assert _diff(own, ref) > 1e-4


def test_longlive_sliding_window(model, prompts):
    sched = [(0, prompts[0]), (12, prompts[1])]
    ref = longlive_rollout(model, sched, 18, 8, 8, seed=5, sink=0, local=6)
    for mode in ("longlive", "longlive_resink"):
        out = generate(model, sched, SlidingWindow(window=6), 18, H, W, seed=5, switch=mode)
        assert _diff(out, ref) <= TOL
    own = generate(model, sched, SlidingWindow(window=6), 18, H, W, seed=5, switch="recache")
    assert _diff(own, ref) > 1e-4  # it re-runs 3 frames fewer


def test_bad_switch_is_refused_before_any_work(model, prompts):
    calls = []
    with pytest.raises(ValueError, match="FadeMem"):
        generate(model, prompts[0], FadeMem(), 6, H, W, switch="longlive", callback=calls.append)
    assert calls == []
