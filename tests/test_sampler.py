"""generate(): exactness against a masked full-sequence reference, memory, callbacks, schedules."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fademem_core import FadeMem, FullCache, SinkWindow, SlidingWindow, generate, tiny_model
from fademem_core.memory.policies import PRESETS, policy_from_name
from fademem_core.rollout.sampler import (
    WAN_LATENT_MEAN,
    WAN_LATENT_STD,
    RolloutInterrupted,
    context_sigma,
    StepInfo,
    even_timesteps,
    from_raw,
    timestep_schedule,
    to_raw,
)

from fademem_core.rollout.switching import SWITCH_MODES
from tests.support.policy_spy import Spy
from tests.support.rollout_reference import diffusers_rollout, full_visible, peer_context_sigma, window_visible

H = W = 64  # pixels -> 8x8 latents -> 16 tokens per frame on the tiny model
TOL = 1e-5


@pytest.fixture(scope="module")
def text():
    return torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(11))


# ---------------------------------------------------------------------------- schedule + latents
def test_warped_schedule_values():
    got = timestep_schedule((1000, 750, 500, 250), 5.0)
    assert got == pytest.approx([1000.0, 937.5, 2500 / 3, 625.0], abs=1e-9)
    assert timestep_schedule((1000, 500), 1.0) == pytest.approx([1000.0, 500.0])


def test_to_raw_from_raw():
    z = torch.zeros(1, 16, 2, 3, 3)
    assert torch.allclose(to_raw(z)[0, :, 0, 0, 0], torch.tensor(WAN_LATENT_MEAN))
    one = to_raw(torch.ones(1, 16, 1, 1, 1)).flatten()
    assert torch.allclose(one, torch.tensor(WAN_LATENT_MEAN) + torch.tensor(WAN_LATENT_STD))
    x = torch.randn(2, 16, 3, 4, 4)
    assert torch.allclose(from_raw(to_raw(x)), x, atol=1e-6)
    with pytest.raises(ValueError, match="16"):
        to_raw(torch.zeros(1, 4, 1, 1, 1))


# ---------------------------------------------------------------------------- exactness
@pytest.mark.parametrize("num_frames", [9, 10])
def test_full_cache_equals_masked_reference(model, text, num_frames):
    out = generate(model, text, FullCache(), num_frames, H, W, seed=3)
    ref = diffusers_rollout(model.transformer, text, num_frames, 8, 8, 3, full_visible())
    assert out.shape == (2, 16, num_frames, 8, 8) and out.dtype == torch.float32
    assert (out - ref).abs().max() <= TOL
    assert ref.abs().max() > 0.5


@pytest.mark.parametrize("policy,visible", [(FullCache(), full_visible()),
                                            (SlidingWindow(window=6), window_visible(3, 6))])
def test_euler_equals_a_written_out_euler_reference(model, text, policy, visible):
    # diffusers' own forward under a frame mask, and the ODE step written out in the reference
    steps = even_timesteps(5)
    out = generate(model, text, policy, 12, H, W, seed=6, steps=steps, sampler="euler")
    ref = diffusers_rollout(model.transformer, text, 12, 8, 8, 6, visible, steps=steps, euler=True)
    assert (out - ref).abs().max() <= TOL
    # and it is not the few-step schedule (no fresh noise between steps)
    few = generate(model, text, policy, 12, H, W, seed=6, steps=steps)
    assert (out - few).abs().max() > 1e-2


def test_one_level_euler_is_one_x0_prediction(model, text):
    # from sigma 1 straight to 0: x + (0 - 1) v == x - v, the few-step schedule with one step
    a = generate(model, text, FullCache(), 6, H, W, seed=2, steps=(1000,), sampler="euler")
    b = generate(model, text, FullCache(), 6, H, W, seed=2, steps=(1000,))
    assert torch.equal(a, b)


def test_even_timesteps_before_the_shift():
    assert even_timesteps(4) == [1000.0, 750.0, 500.0, 250.0]
    assert even_timesteps(1) == [1000.0]
    with pytest.raises(ValueError, match="steps"):
        even_timesteps(0)


@pytest.mark.parametrize("context_input", ["clean", "noised"])
def test_context_noise_equals_masked_reference(model, text, context_input):
    """clean (default): Self-Forcing's inference pipeline, the context pass sees the clean x0
    labelled t; noised: its training rollout, x0 noised to t's grid sigma first."""
    out = generate(model, text, FullCache(), 6, H, W, seed=4, context_noise=100.0,
                   context_input=context_input)
    ref = diffusers_rollout(model.transformer, text, 6, 8, 8, 4, full_visible(), context_noise=100.0,
                            context_input=context_input)
    assert (out - ref).abs().max() <= TOL
    other = diffusers_rollout(model.transformer, text, 6, 8, 8, 4, full_visible(), context_noise=100.0,
                              context_input="noised" if context_input == "clean" else "clean")
    assert (out - other).abs().max() > 1e-3  # the two inputs really differ
    if context_input == "clean":  # the label matters too: not the same as context_noise=0
        assert (out - generate(model, text, FullCache(), 6, H, W, seed=4)).abs().max() > 1e-4


def test_context_sigma_is_rounded_to_the_peers_grid():
    # shift 5: the table entry nearest t=100 is u=0.022 -> 5*0.022/(1+4*0.022) = 0.11/1.088
    assert context_sigma(100, 5.0) == pytest.approx(0.11 / 1.088, abs=1e-12)
    assert context_sigma(100, 5.0) == pytest.approx(0.10110, abs=5e-6)
    for t, shift in [(100, 5.0), (37, 5.0), (250, 3.0), (999, 1.0), (1, 5.0)]:
        assert context_sigma(t, shift) == pytest.approx(peer_context_sigma(t, shift), abs=1e-9)
    assert context_sigma(0, 5.0) == 0.0


def test_other_steps_and_chunk_equal_reference(model, text):
    out = generate(model, text[:1], FullCache(), 8, H, W, seed=1, steps=(1000, 500), shift=3.0, chunk=2)
    ref = diffusers_rollout(model.transformer, text[:1], 8, 8, 8, 1, full_visible(), steps=(1000, 500),
                            shift=3.0, chunk=2)
    assert (out - ref).abs().max() <= TOL


def test_sliding_window_equals_window_reference(model, text):
    out = generate(model, text, SlidingWindow(window=6), 15, H, W, seed=5)
    ref = diffusers_rollout(model.transformer, text, 15, 8, 8, 5, window_visible(3, 6))
    assert (out - ref).abs().max() <= TOL
    full = generate(model, text, FullCache(), 15, H, W, seed=5)
    assert (out - full).abs().max() > 1e-3  # the window really cut something


def test_sink_window_equals_window_reference(model, text):
    out = generate(model, text, SinkWindow(sink=3, window=6), 15, H, W, seed=6)
    ref = diffusers_rollout(model.transformer, text, 15, 8, 8, 6, window_visible(3, 6, sink=3))
    assert (out - ref).abs().max() <= TOL


def test_fademem_with_room_for_everything_equals_full(model, text):
    a = generate(model, text, FadeMem(budget=15), 15, H, W, seed=7)
    b = generate(model, text, FullCache(), 15, H, W, seed=7)
    assert (a - b).abs().max() <= TOL


def test_fademem_bounded_runs_and_differs(model, text):
    a = generate(model, text, FadeMem(budget=4), 18, H, W, seed=7)
    b = generate(model, text, FullCache(), 18, H, W, seed=7)
    assert torch.isfinite(a).all()
    assert torch.equal(a[:, :, :6], b[:, :, :6])  # identical until the memory first consolidates
    assert (a - b).abs().max() > 1e-3


def test_policy_by_name(model, text):
    assert torch.equal(generate(model, text, "full", 6, H, W, seed=2),
                       generate(model, text, FullCache(), 6, H, W, seed=2))


def test_deterministic_for_a_seed(model, text):
    a = generate(model, text, SinkWindow(sink=3, window=6), 9, H, W, seed=9)
    b = generate(model, text, SinkWindow(sink=3, window=6), 9, H, W, seed=9)
    c = generate(model, text, SinkWindow(sink=3, window=6), 9, H, W, seed=10)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_batch_one_text_broadcasts(model, text):
    out = generate(model, text[:1], FullCache(), 3, H, W, seed=0)
    assert out.shape[0] == 1


# ---------------------------------------------------------------------------- memory
@pytest.mark.parametrize("policy", [FadeMem(budget=4), SinkWindow(sink=3, window=6), SlidingWindow(window=6)])
def test_bounded_memory_is_constant_and_matches_the_bound(model, text, policy):
    infos: list[StepInfo] = []
    generate(model, text, policy, 21, H, W, seed=0, callback=infos.append)
    per_chunk = [i.kv_bytes for i in infos if i.step == 0]
    bound = policy.memory_bytes(model.geometry(2, H, W), 3)
    assert len(per_chunk) == 7
    assert set(per_chunk) == {bound}
    entries = [i.memory_entries for i in infos if i.step == 0]
    assert max(entries) == policy.history_frames(3)


def test_full_cache_grows_linearly(model, text):
    infos: list[StepInfo] = []
    generate(model, text, FullCache(), 15, H, W, seed=0, callback=infos.append)
    entries = [i.memory_entries for i in infos if i.step == 0]
    assert entries == [0, 3, 6, 9, 12]
    held = [i.held_bytes for i in infos if i.step == 0]
    g = model.geometry(2, H, W)
    # the full cache keeps K and V only (no raw temporal channels): 2 tensors per layer
    per_frame = 2 * g.num_layers * g.batch * g.tokens_per_frame * g.num_heads * g.head_dim * 4
    assert held == [e * per_frame for e in entries]


# ---------------------------------------------------------------------------- callback
def test_callback_contract(model, text):
    infos: list[StepInfo] = []
    out = generate(model, text, FullCache(), 7, H, W, seed=0, callback=infos.append)
    assert [(i.chunk, i.step) for i in infos] == [(c, s) for c in range(3) for s in range(4)]
    assert all(i.num_chunks == 3 and i.num_steps == 4 for i in infos)
    assert [i.frame_start for i in infos if i.step == 0] == [0, 3, 6]
    assert infos[-1].x0.shape == (2, 16, 1, 8, 8)
    assert infos[-1].progress == 1.0
    assert [round(i.timestep, 2) for i in infos[:4]] == [1000.0, 937.5, 833.33, 625.0]
    for i in infos:
        if i.step == 3:  # the last step's x0 is the chunk's output
            assert torch.equal(i.x0, out[:, :, i.frame_start:i.frame_start + i.x0.shape[2]])


@pytest.mark.parametrize("exc", [RolloutInterrupted("stop"), KeyError("boom")])
def test_callback_exception_stops_and_frees_memory(model, text, exc):
    spy = Spy(FullCache())
    seen = []

    def cb(info):
        seen.append(info.chunk)
        if info.chunk == 1 and info.step == 2:
            raise exc

    with pytest.raises(type(exc)):
        generate(model, text, spy, 12, H, W, seed=0, callback=cb)
    assert seen[-1] == 1 and len(seen) == 4 + 3
    (cache,) = spy.made
    assert cache.nbytes() == 0  # closed: buffers released
    with pytest.raises(RuntimeError):
        cache.begin_chunk(6, 3)


# ---------------------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"height": 60}, "multiples of 16"),
        ({"width": 100}, "multiples of 16"),
        ({"num_frames": 2}, "at least one chunk"),
        ({"num_frames": 0}, "num_frames"),
        ({"text": torch.randn(1, 4, 31)}, "text_dim"),
        ({"text": torch.full((1, 4, 32), float("nan"))}, "NaN"),
        ({"text": "a cat"}, "text must be"),
        ({"policy": "nope"}, "unknown cache policy"),
        ({"policy": 42}, "unknown policy"),
        ({"steps": (500, 750)}, "decreasing"),
        ({"steps": (1500,)}, "steps"),
        ({"shift": 0}, "shift"),
        ({"chunk": 0}, "chunk"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**64}, "seed"),  # past torch.Generator's 64 bits
        ({"context_noise": -1}, "context_noise"),
        ({"switch": "bogus"}, "switch"),
        ({"context_input": "noisy"}, "context_input"),
        ({"sampler": "ddim"}, "sampler"),
        ({"callback": 3}, "callback"),
        ({"text": [(3, torch.randn(1, 4, 32))]}, "frame 0"),
        ({"text": [(0, torch.randn(1, 4, 32)), (0, torch.randn(1, 4, 32))]}, "increasing"),
        ({"text": [(0, torch.randn(1, 4, 32)), (99, torch.randn(1, 4, 32))]}, "past the video"),
        ({"text": [(0, torch.randn(1, 4, 32)), (3, torch.randn(2, 4, 32))]}, "same batch"),
    ],
)
def test_bad_input_fails_before_compute(model, kwargs, match):
    spy = Spy(FullCache())
    args = dict(text=torch.randn(1, 4, 32), policy=spy, num_frames=6, height=H, width=W)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        generate(model, **args)
    assert spy.made == []  # nothing allocated, nothing computed


def test_model_must_be_causal_wan(text):
    with pytest.raises(ValueError, match="CausalWan"):
        generate(object(), text, FullCache(), 3, H, W)


# ---------------------------------------------------------------------------- prompt schedules
@pytest.fixture(scope="module")
def prompts():
    g = torch.Generator().manual_seed(21)
    return torch.randn(1, 5, 32, generator=g), torch.randn(1, 5, 32, generator=g)


def test_single_entry_schedule_equals_plain_text(model, prompts):
    a, _ = prompts
    assert torch.equal(generate(model, [(0, a)], FullCache(), 6, H, W), generate(model, a, FullCache(), 6, H, W))


@pytest.mark.parametrize("switch", SWITCH_MODES)
def test_switch_changes_only_later_frames(model, prompts, switch):
    a, b = prompts
    base = generate(model, a, SinkWindow(sink=3, window=6), 12, H, W, seed=1)
    sw = generate(model, [(0, a), (6, b)], SinkWindow(sink=3, window=6), 12, H, W, seed=1, switch=switch)
    assert torch.equal(sw[:, :, :6], base[:, :, :6])
    assert (sw[:, :, 6:] - base[:, :, 6:]).abs().max() > 1e-3


def test_keep_equals_masked_reference_with_per_chunk_text(model, prompts):
    """With switch="keep" the memory is untouched: chunks 0-1 see prompt a, chunk 2 prompt b."""
    a, b = prompts
    sw = generate(model, [(0, a), (6, b)], FullCache(), 9, H, W, seed=2, switch="keep")
    first = diffusers_rollout(model.transformer, a, 6, 8, 8, 2, full_visible())
    assert (sw[:, :, :6] - first).abs().max() <= TOL
    plain_b = generate(model, b, FullCache(), 9, H, W, seed=2)
    assert (sw[:, :, 6:] - plain_b[:, :, 6:]).abs().max() > 1e-3  # history under a mattered


def test_recache_differs_from_keep(model, prompts):
    a, b = prompts
    keep = generate(model, [(0, a), (6, b)], FullCache(), 9, H, W, seed=2, switch="keep")
    re = generate(model, [(0, a), (6, b)], FullCache(), 9, H, W, seed=2, switch="recache")
    assert torch.equal(keep[:, :, :6], re[:, :, :6])
    assert (keep[:, :, 6:] - re[:, :, 6:]).abs().max() > 1e-4


def test_switch_mid_chunk_takes_effect_at_next_chunk(model, prompts):
    a, b = prompts
    at4 = generate(model, [(0, a), (4, b)], FadeMem(budget=4), 12, H, W, seed=3)
    at6 = generate(model, [(0, a), (6, b)], FadeMem(budget=4), 12, H, W, seed=3)
    assert torch.equal(at4, at6)


def test_callback_reports_prompt_index(model, prompts):
    a, b = prompts
    infos: list[StepInfo] = []
    generate(model, [(0, a), (3, b)], FullCache(), 6, H, W, callback=infos.append)
    assert [i.prompt for i in infos if i.step == 0] == [0, 1]


def test_a_huge_video_is_refused_with_the_bytes_it_asks_for_before_any_compute(monkeypatch):
    model = tiny_model(seed=0)
    calls = []
    monkeypatch.setattr(model, "forward_chunk", lambda *a, **k: calls.append(1))
    for policy in (FullCache(), FadeMem()):
        with pytest.raises(ValueError, match=r"needs \d+ bytes"):
            generate(model, torch.zeros(1, 4, model.text_dim), policy, 10**9, 64, 64)
    assert calls == []


def test_a_large_budget_on_a_short_video_allocates_the_video_only():
    model = tiny_model(seed=0)
    seen = []
    text = torch.randn(1, 4, model.text_dim, generator=torch.Generator().manual_seed(0))
    out = generate(model, text, FadeMem(budget=10**9), 3, 32, 32, callback=lambda i: seen.append(i.kv_bytes))
    ref = generate(model, text, FullCache(), 3, 32, 32)
    assert torch.equal(out, ref)  # nothing merged: the same memory as keeping every frame
    slot = FadeMem().slot_bytes(model.geometry(1, 32, 32))
    assert set(seen) == {3 * slot}


@pytest.mark.parametrize("starts,match", [
    ((0, 1, 2), r"entry 1 \(start frame 1\) and prompt schedule entry 2 \(start frame 2\) take over in the same "
                r"chunk, chunk 1 \(latent frames 3-5\)"),
    ((0, 7), r"entry 1 \(start frame 7\) would take over at chunk 3"),
])
def test_a_schedule_that_would_drop_a_prompt_is_refused_before_any_compute(monkeypatch, starts, match):
    model = tiny_model(seed=0)
    calls = []
    monkeypatch.setattr(model, "forward_chunk", lambda *a, **k: calls.append(1))
    text = [(s, torch.randn(1, 4, model.text_dim)) for s in starts]
    with pytest.raises(ValueError, match=match):
        generate(model, text, FullCache(), 8, 32, 32, chunk=3)
    assert calls == []


@pytest.mark.parametrize("shift", [1e-17, 1e-300, 5e-324])
def test_a_tiny_positive_shift_warps_without_dividing_by_zero(shift):
    times = timestep_schedule((1000, 750, 500, 250), shift)
    # the formula's limit as the shift goes to 0: the first step stays at 1000, the rest go to 0
    assert times[0] == 1000.0 and all(0.0 <= t < 1e-12 for t in times[1:])
    model = tiny_model(seed=0)
    out = generate(model, torch.randn(1, 4, model.text_dim), FadeMem(), 3, 32, 32, shift=shift, steps=(1000, 500))
    assert torch.isfinite(out).all()


def test_shift_warp_is_the_written_out_formula():
    for shift in (0.1, 1.0, 3.0, 5.0, 17.0):
        for t in (1000.0, 937.0, 500.0, 1.0):
            s = t / 1000
            assert timestep_schedule((t,), shift)[0] == pytest.approx(1000 * shift * s / (1 + (shift - 1) * s),
                                                                      rel=1e-15)


@pytest.mark.parametrize("bad,needle", [(np.zeros((1, 16, 2, 2, 2), dtype=np.float32), "torch.Tensor"),
                                        ([[0.0] * 16], "torch.Tensor"),
                                        (torch.zeros(1, 16, 2, dtype=torch.int64), "floating")])
def test_to_raw_and_from_raw_refuse_what_is_not_a_latent_tensor(bad, needle):

    for convert in (to_raw, from_raw):
        with pytest.raises(ValueError, match=needle):
            convert(bad)


# ---------------------------------------------------------------------------- every policy, long
PEERS = ["fademem_release", "infinity_rope", "memrope", "deep_forcing", "memflow"] + sorted(PRESETS)


@pytest.mark.parametrize("name", PEERS)
def test_a_480_frame_rollout_stays_finite_and_bounded(name):
    """Every peer memory (and preset) at its defaults, 480 latent frames (2 minutes)."""
    model = tiny_model(seed=1)
    text = torch.randn(1, 3, 32, generator=torch.Generator().manual_seed(5))
    policy = policy_from_name(name)
    infos: list[StepInfo] = []
    out = generate(model, text, policy, 480, 32, 32, seed=0, steps=(1000,),
                   callback=infos.append)
    assert out.shape == (1, 16, 480, 4, 4)
    assert torch.isfinite(out).all()
    assert out[:, :, -3:].abs().max() > 0  # the last chunk was generated, not left empty
    bound = policy.memory_bytes(model.geometry(1, 32, 32), 3, max_frames=480)
    assert {i.kv_bytes for i in infos} == {bound}


def test_infinity_rope_flushes_instead_of_re_caching_at_a_prompt_switch(model, prompts):
    """Its flush keeps the sink and the 2 newest frames, which is all its window holds between
    chunks: so "recache" (which asks the policy) equals "keep" exactly, unlike LongLive."""
    a, b = prompts
    schedule = [(0, a), (9, b)]
    policy = policy_from_name("infinity_rope")
    re = generate(model, schedule, policy, 15, H, W, seed=3, switch="recache")
    keep = generate(model, schedule, policy, 15, H, W, seed=3, switch="keep")
    assert torch.equal(re, keep)
    sink = SinkWindow(sink=1, window=5, positions="packed")  # the same window, LongLive's switch
    assert not torch.equal(generate(model, schedule, sink, 15, H, W, seed=3, switch="recache"),
                           generate(model, schedule, sink, 15, H, W, seed=3, switch="keep"))


# ----------------------------------------------------------------------------- long runs
class _Enough(Exception):
    pass


@pytest.mark.parametrize("policy", [FadeMem(budget=4, beta=0.3), SinkWindow(sink=1, window=5)],
                         ids=["fademem", "sink_window"])
def test_keep_latents_false_gives_the_same_chunks_through_prompt_switches(model, policy):
    """Holding only the frames the memory may re-run changes nothing, re-caches included."""
    g = torch.Generator().manual_seed(5)
    sched = [(0, torch.randn(1, 5, 32, generator=g)), (7, torch.randn(1, 5, 32, generator=g)),
             (13, torch.randn(1, 5, 32, generator=g))]
    full = generate(model, sched, policy, 20, 32, 32, seed=4, steps=[1000, 500], chunk=3,
                    context_noise=50.0)
    chunks = []

    def keep(info):
        if info.step + 1 == info.num_steps:
            chunks.append(info.x0.clone())

    assert generate(model, sched, policy, 20, 32, 32, seed=4, steps=[1000, 500], chunk=3,
                    context_noise=50.0, keep_latents=False, callback=keep) is None
    assert torch.equal(torch.cat(chunks, dim=2), full)


@pytest.fixture
def one_thread():
    """Tiny ops on many threads spend their time synchronising (minutes on a loaded 2-core box)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_until_stopped_runs_2000_latent_frames_in_flat_memory(model, one_thread):
    """num_frames=None: positions far past 1024, and the held KV bytes never grow."""
    seen = []

    def stop_after_2000(info):
        seen.append((info.frame_start, info.kv_bytes, info.held_bytes, info.num_chunks))
        assert torch.isfinite(info.x0).all()
        if info.frame_start + info.x0.shape[2] >= 2000:
            raise _Enough

    policy = FadeMem(budget=4, beta=0.3)
    with pytest.raises(_Enough):
        # 16x16 pixels: one token per latent frame, so 500 chunks take a few seconds
        generate(model, torch.randn(1, 3, 32), policy, None, 16, 16, steps=[1000], chunk=4,
                 keep_latents=False, callback=stop_after_2000)
    assert seen[-1][0] == 1996 and len(seen) == 500 and seen[-1][3] is None
    allocated = {kv for _, kv, _, _ in seen}
    assert allocated == {policy.memory_bytes(model.geometry(1, 16, 16), 4)}  # preallocated once
    held = [h for _, _, h, _ in seen]
    full_at = held.index(max(held))
    assert full_at <= 3 and all(h == held[full_at] for h in held[full_at:])  # flat after filling


def test_until_stopped_refuses_unbounded_policies_and_kept_latents(model):
    with pytest.raises(ValueError, match="bounded cache policy"):
        generate(model, torch.randn(1, 3, 32), FullCache(), None, 16, 16, keep_latents=False)
    with pytest.raises(ValueError, match="keep_latents=False"):
        generate(model, torch.randn(1, 3, 32), FadeMem(), None, 16, 16)
