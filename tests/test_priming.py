"""generate(prefix=...): priming the memory with given frames, against independent references."""
from __future__ import annotations

import pytest
import torch

from fademem_core import FadeMem, FullCache, SinkWindow, SlidingWindow, generate
from fademem_core.memory.policies import POLICIES
from fademem_core.rollout.priming import chunk_spans
from fademem_core.rollout.sampler import StepInfo, to_raw

from tests.support.policy_spy import Spy
from tests.support.rollout_reference import full_visible, diffusers_rollout, window_visible

H = W = 64  # 8x8 latents, 16 tokens per frame
TOL = 1e-5
# every registered policy in each of its position strategies (a new policy is covered automatically)
ALL_POLICIES = [cls(positions=p) for cls in POLICIES.values() for p in cls.POSITIONS]
IDS = [repr(p) for p in ALL_POLICIES]


@pytest.fixture(scope="module")
def text():
    return torch.randn(1, 5, 32, generator=torch.Generator().manual_seed(11))


def memory_at(model, text, policy, frame: int, **kw):
    """Run generate and read the memory a chunk starting at ``frame`` attends to."""
    spy = Spy(policy)
    seen = {}

    def cb(info: StepInfo) -> None:
        if info.frame_start == frame and info.step == 0 and not info.primed:
            cache = spy.made[0]
            layers = len(cache.layers)
            seen["entries"] = cache.entries()
            seen["positions"] = cache.encoded_positions()
            seen["held"] = cache.held()
            seen["kv"] = [[tuple(t.clone() for t in cache.entry_kv(layer, i) if t is not None)
                           for i in range(len(cache.entries()))] for layer in range(layers)]

    out = generate(model, text, spy, callback=cb, **kw)
    assert seen, f"no chunk started at frame {frame}"
    return out, seen


def test_chunk_spans():
    assert chunk_spans(6, 3) == [(0, 3), (3, 3)]
    assert chunk_spans(4, 3, prefix_frames=5) == [(0, 2), (2, 3), (5, 3), (8, 1)]
    assert chunk_spans(3, 3, prefix_frames=1) == [(0, 1), (1, 3)]
    assert chunk_spans(3, 3, prefix_frames=7) == [(0, 1), (1, 3), (4, 3), (7, 3)]
    assert chunk_spans(3, 3, prefix_frames=6) == [(0, 3), (3, 3), (6, 3)]


# ---------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("context_noise,context_input", [(0.0, "clean"), (100.0, "clean"), (100.0, "noised")])
def test_full_cache_primed_with_a_rollout_continues_it(model, text, context_noise, context_input):
    """The independent reference rollout's first 6 frames as prefix -> its last 6 frames."""
    ref = diffusers_rollout(model.transformer, text, 12, 8, 8, 3, full_visible(),
                            context_noise=context_noise, context_input=context_input)
    out = generate(model, text, FullCache(), 6, H, W, seed=3, prefix=ref[:, :, :6],
                   context_noise=context_noise, context_input=context_input)
    assert out.shape == (1, 16, 6, 8, 8)
    assert (out - ref[:, :, 6:]).abs().max() <= TOL
    # the prefix mattered: a fresh rollout of the same seed is something else
    assert (generate(model, text, FullCache(), 6, H, W, seed=3) - out).abs().max() > 1e-2


@pytest.mark.parametrize("primed", [1, 5, 7])  # an image, and prefixes cut in partial chunks
def test_any_prefix_length_equals_masked_reference(model, text, primed):
    prefix = torch.randn(1, 16, primed, 8, 8, generator=torch.Generator().manual_seed(primed))
    out = generate(model, text, FullCache(), 6, H, W, seed=4, prefix=prefix)
    ref = diffusers_rollout(model.transformer, text, 6, 8, 8, 4, full_visible(), prefix=prefix)
    assert (out - ref).abs().max() <= TOL


@pytest.mark.parametrize("policy,visible", [
    (SlidingWindow(window=6), window_visible(3, 6)),
    (SinkWindow(sink=3, window=6), window_visible(3, 6, sink=3)),
])
def test_windows_primed_equal_masked_reference(model, text, policy, visible):
    prefix = torch.randn(1, 16, 10, 8, 8, generator=torch.Generator().manual_seed(5))
    out = generate(model, text, policy, 6, H, W, seed=5, prefix=prefix)
    ref = diffusers_rollout(model.transformer, text, 6, 8, 8, 5, visible, prefix=prefix)
    assert (out - ref).abs().max() <= TOL


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=IDS)
def test_primed_memory_equals_the_rollouts_memory(model, text, policy):
    """Primed with a rollout's first 18 frames, the memory at frame 18 is the rollout's."""
    kw = dict(height=32, width=32, seed=8)
    full, rolled = memory_at(model, text, policy, 18, num_frames=24, **kw)
    cont, primed = memory_at(model, text, policy, 18, num_frames=6, prefix=full[:, :, :18], **kw)
    if policy.history_frames(3) is not None:
        held, history = len(rolled["entries"]), policy.history_frames(3)
        assert (held == history if policy.fills_to_visible else held <= history) and held < 18
    assert primed["entries"] == rolled["entries"]
    assert primed["positions"] == rolled["positions"]
    assert primed["held"] == rolled["held"]  # mu, span, first frame of every entry
    # a prefix runs no denoising step: a policy that scores tokens with the chunk's queries
    # (Deep Forcing) scores a primed chunk with its clean pass's queries, so only its exact
    # entries are the rollout's (the text-key scores of MemFlow are the same in every pass)
    by_queries = "queries" in policy.attention_needs
    exact = [not (by_queries and e.aggregate) for e in rolled["held"]]
    for layer_a, layer_b in zip(primed["kv"], rolled["kv"]):
        for a, b, same in zip(layer_a, layer_b, exact):
            assert all(torch.equal(x, y) for x, y in zip(a, b)) or not same
    if by_queries:
        assert not all(exact)  # it did compress tokens
    else:
        assert torch.equal(cont, full[:, :, 18:])  # and so the continuation is the rollout's


@pytest.mark.parametrize("policy", [FullCache(), FadeMem(budget=4)], ids=repr)
def test_resuming_a_primed_run_continues_it(model, text, policy):
    """Image (1 frame) + 11 new; resumed after 6 new frames: the prefix of 7 is cut 1 + 3 + 3,
    as the first run cut it, so the last 5 frames come out the same."""
    image = torch.randn(1, 16, 1, 8, 8, generator=torch.Generator().manual_seed(9))
    first = generate(model, text, policy, 11, H, W, seed=6, prefix=image, include_prefix=True)
    resumed = generate(model, text, policy, 5, H, W, seed=6, prefix=first[:, :, :7])
    assert torch.equal(resumed, first[:, :, 7:])
    # after a prefix fewer new frames than a chunk are fine (what is left of an interrupted run)
    last = generate(model, text, policy, 2, H, W, seed=6, prefix=first[:, :, :10])
    assert torch.equal(last, first[:, :, 10:])


def test_a_long_prefix_stays_in_bounded_memory(model, text):
    """1000 primed frames into FadeMem(12): 12 entries, the preallocated bound, never more."""
    policy = FadeMem(budget=12)
    prefix = torch.randn(1, 16, 1000, 2, 2, generator=torch.Generator().manual_seed(0))
    infos: list[StepInfo] = []
    generate(model, text, policy, 3, 16, 16, prefix=prefix, callback=infos.append)
    bound = policy.memory_bytes(model.geometry(1, 16, 16), 3)
    assert {i.kv_bytes for i in infos} == {bound}
    assert max(i.memory_entries for i in infos) == 12
    assert infos[-1].frame_start == 1000 and infos[-1].memory_entries == 12


# ---------------------------------------------------------------------------- schedules, switch
@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(21)
    return torch.randn(1, 5, 32, generator=g), torch.randn(1, 5, 32, generator=g)


@pytest.mark.parametrize("policy", [FullCache(), FadeMem(budget=4), SinkWindow(sink=3, window=6)],
                         ids=repr)
@pytest.mark.parametrize("switch", ["keep", "recache"])
@pytest.mark.parametrize("at", [3, 9])  # a switch inside the prefix, and one after it
def test_schedules_and_switch_with_a_prefix(model, prompts, policy, switch, at):
    """Schedule start frames count from the first prefix frame; priming follows the schedule."""
    a, b = prompts
    sched = [(0, a), (at, b)]
    full = generate(model, sched, policy, 15, H, W, seed=2, switch=switch)
    cont = generate(model, sched, policy, 9, H, W, seed=2, switch=switch, prefix=full[:, :, :6])
    assert torch.equal(cont, full[:, :, 6:])
    plain = generate(model, a, policy, 9, H, W, seed=2, prefix=full[:, :, :6])
    assert (plain - cont).abs().max() > 1e-4  # the switch did something


def test_schedule_past_the_whole_video_is_refused(model, prompts):
    a, b = prompts
    prefix = torch.zeros(1, 16, 6, 8, 8)
    generate(model, [(0, a), (6, b)], FullCache(), 3, H, W, prefix=prefix)  # the first new chunk
    with pytest.raises(ValueError, match="never be shown"):  # no chunk starts at or after 8
        generate(model, [(0, a), (8, b)], FullCache(), 3, H, W, prefix=prefix)


# ---------------------------------------------------------------------------- results, flags
def test_include_prefix_and_raw_prefix(model, text):
    prefix = torch.randn(1, 16, 4, 8, 8, generator=torch.Generator().manual_seed(6))
    new = generate(model, text, FullCache(), 3, H, W, prefix=prefix)
    both = generate(model, text, FullCache(), 3, H, W, prefix=prefix, include_prefix=True)
    assert both.shape[2] == 7
    assert torch.equal(both[:, :, :4], prefix) and torch.equal(both[:, :, 4:], new)
    raw = generate(model, text, FullCache(), 3, H, W, prefix=to_raw(prefix), prefix_raw=True,
                   include_prefix=True)
    assert (raw - both).abs().max() <= TOL  # model space in and out, whatever came in


def test_callback_reports_primed_chunks_once(model, text):
    prefix = torch.randn(1, 16, 5, 8, 8, generator=torch.Generator().manual_seed(7))
    infos: list[StepInfo] = []
    out = generate(model, text, FullCache(), 3, H, W, prefix=prefix, callback=infos.append)
    primed = [i for i in infos if i.primed]
    assert [(i.chunk, i.frame_start, i.step) for i in primed] == [(0, 0, 3), (1, 2, 3)]
    assert torch.equal(primed[1].x0.cpu(), prefix[:, :, 2:5])
    new = [i for i in infos if not i.primed]
    assert [(i.chunk, i.step) for i in new] == [(2, s) for s in range(4)]
    assert all(i.num_chunks == 3 for i in infos)
    assert new[-1].progress == 1.0 and torch.equal(new[-1].x0, out)
    assert [i.memory_entries for i in primed] == [0, 2]


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize("kwargs,match", [
    ({"prefix": torch.zeros(1, 4, 3, 8, 8)}, "4 channels"),
    ({"prefix": torch.zeros(1, 16, 3, 8, 6)}, "8x6 but the requested size needs 8x8"),
    ({"prefix": torch.zeros(2, 16, 3, 8, 8)}, "batch 2"),
    ({"prefix": torch.zeros(1, 16, 0, 8, 8)}, "P >= 1"),
    ({"prefix": torch.zeros(16, 3, 8, 8)}, "P >= 1"),
    ({"prefix": torch.zeros(1, 16, 3, 8, 8, dtype=torch.int64)}, "floating"),
    ({"prefix": torch.full((1, 16, 3, 8, 8), float("inf"))}, "NaN or inf"),
    ({"prefix": [[0.0]]}, "latent tensor"),
    ({"prefix": torch.zeros(1, 16, 3, 8, 8), "prefix_raw": 1}, "prefix_raw"),
    ({"include_prefix": "yes"}, "include_prefix"),
])
def test_bad_prefix_fails_before_compute(model, kwargs, match):
    spy = Spy(FullCache())
    with pytest.raises(ValueError, match=match):
        generate(model, torch.randn(1, 4, 32), spy, 3, H, W, **kwargs)
    assert spy.made == []


@pytest.mark.parametrize("policy", [FullCache(), FadeMem(budget=4)], ids=repr)
def test_euler_sampler_primed_with_a_rollout_continues_it(model, text, policy):
    """The seed rule with sampler="euler" (one noise draw per chunk): the same continuation."""
    full = generate(model, text, policy, 12, H, W, seed=4, sampler="euler")
    cont = generate(model, text, policy, 6, H, W, seed=4, sampler="euler", prefix=full[:, :, :6])
    assert torch.equal(cont, full[:, :, 6:])
