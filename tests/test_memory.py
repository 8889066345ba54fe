"""The tensor memory: merge operators, slot views, agreement with the planner, exactness."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from fademem_core.memory.cache import OPERATORS, SlotStorage
from fademem_core.memory.policies import FadeMem, FullCache, KVGeometry, SinkWindow, SlidingWindow
from fademem_core.memory.planner import Layout, plan_layout
from tests.support.kv_reference import attention_ref, rope_ref

B, H, D, HH, WW = 1, 2, 24, 2, 3
N, TC = HH * WW, 8
LAYERS = 2


def geometry(batch: int = B) -> KVGeometry:
    return KVGeometry(num_layers=LAYERS, batch=batch, tokens_per_frame=N, num_heads=H, head_dim=D)


def frame_kv(frame: int, layer: int, batch: int = B) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic un-roped key and value ``[batch, N, H, D]`` of one frame in one layer."""
    gen = torch.Generator().manual_seed(7919 * frame + 31 * layer + 1)
    k = torch.randn(batch, N, H, D, generator=gen)
    v = torch.randn(batch, N, H, D, generator=gen)
    return k, v


def chunk_kv(frames: range, layer: int, batch: int = B):
    parts = [frame_kv(f, layer, batch) for f in frames]
    return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1)


def run_chunk(cache, start: int, num: int, batch: int = B, query_seed: int = 0):
    """One chunk through every layer (write pass); returns positions and per-layer outputs."""
    positions = cache.begin_chunk(start, num)
    outputs = []
    for layer, lkv in enumerate(cache.layers):
        k_raw, v = chunk_kv(range(start, start + num), layer, batch)
        k = rope_ref(k_raw, positions, HH, WW)
        k_ctx, v_ctx = lkv.attend(k, v, k_raw[..., :TC].clone(), write=True)
        q = rope_ref(torch.randn(k.shape, generator=torch.Generator().manual_seed(query_seed)),
                     positions, HH, WW)
        outputs.append((q, k_ctx.clone(), v_ctx.clone(), attention_ref(q, k_ctx, v_ctx)))
    cache.commit()
    return positions, outputs


def merge_ref(a, b, span_a, span_b, operator):
    if operator == "weighted_average":
        return (span_a * a + span_b * b) / (span_a + span_b)
    if operator == "average":
        return (a + b) / 2
    if operator == "select_nearest":
        return b.clone()
    return torch.maximum(a, b)


@pytest.mark.parametrize("operator", OPERATORS)
def test_storage_merge_applies_the_operator(operator):
    storage = SlotStorage(geometry(), 4)
    for t in (storage.k, storage.v, storage.kt):
        t.copy_(torch.randn(t.shape))
    before = [t.clone() for t in (storage.k, storage.v, storage.kt)]
    slot = storage.merge(1, 3, 2, 5, operator)
    assert slot == (3 if operator == "select_nearest" else 1)
    for old, new in zip(before, (storage.k, storage.v, storage.kt)):
        want = merge_ref(old[:, :, 1], old[:, :, 3], 2, 5, operator)
        torch.testing.assert_close(new[:, :, slot], want, rtol=0, atol=1e-6)
        torch.testing.assert_close(new[:, :, 0], old[:, :, 0], rtol=0, atol=0)  # untouched


def test_context_is_a_view_of_the_preallocated_buffer():
    cache = FadeMem(budget=4).make_cache(geometry(), chunk=3)
    ptrs = None
    for start in range(0, 12, 3):
        positions = cache.begin_chunk(start, 3)
        k_raw, v = chunk_kv(range(start, start + 3), 0)
        k = rope_ref(k_raw, positions, HH, WW)
        k_ctx, v_ctx = cache.layers[0].attend(k, v, k_raw[..., :TC], write=True)
        assert k_ctx.shape == (B, (min(start, 4) + 3) * N, H, D)
        storage = cache.buffers()
        assert k_ctx.data_ptr() == storage.k[0].data_ptr()
        assert v_ctx.data_ptr() == storage.v[0].data_ptr()
        current = (storage.k.data_ptr(), storage.v.data_ptr(), storage.kt.data_ptr())
        assert ptrs in (None, current)  # never reallocated
        ptrs = current
        for other in cache.layers[1:]:
            other.attend(k, v, k_raw[..., :TC], write=True)
        cache.commit()


def reference_memory(num_frames, budget, beta, operator, layer):
    """Replay the planner on independent tensors: (mu, span, stored key, value) per entry."""
    layout = Layout(budget, beta)
    mem = []
    for t in range(num_frames):
        k_raw, v = frame_kv(t, layer)
        stored = rope_ref(k_raw, [0.0], HH, WW, axes=("h", "w"))  # temporal left un-roped
        mem.append([float(t), 1, stored, v])
        pair = layout.insert()
        if pair is not None:
            (ma, sa, ka, va), (mb, sb, kb, vb) = mem[pair], mem[pair + 1]
            mem[pair : pair + 2] = [[(sa * ma + sb * mb) / (sa + sb), sa + sb,
                                     merge_ref(ka, kb, sa, sb, operator),
                                     merge_ref(va, vb, sa, sb, operator)]]
    return mem


@pytest.mark.parametrize("positions", ["absolute", "packed"])
@pytest.mark.parametrize("operator", OPERATORS)
def test_memory_follows_planner_and_operator(operator, positions):
    budget, beta, chunk, frames = 5, 0.3, 3, 20  # last chunk has 2 frames
    cache = FadeMem(budget=budget, beta=beta, operator=operator,
                    positions=positions).make_cache(geometry(), chunk)
    for start in range(0, frames, chunk):
        num = min(chunk, frames - start)
        got_pos, outputs = run_chunk(cache, start, num, query_seed=start)
        seen = start + num
        assert cache.entries() == plan_layout(seen, budget, beta)
        for layer, (q, k_ctx, v_ctx, out) in enumerate(outputs):
            ref = reference_memory(start, budget, beta, operator, layer)
            ks = [rope_ref(k, [m if positions == "absolute" else float(i)], HH, WW, axes=("t",))
                  for i, (m, _, k, _) in enumerate(ref)]
            k_raw, v = chunk_kv(range(start, start + num), layer)
            want_pos = ([float(start + j) for j in range(num)] if positions == "absolute"
                        else [float(len(ref) + j) for j in range(num)])
            assert got_pos == want_pos
            k_all = torch.cat(ks + [rope_ref(k_raw, want_pos, HH, WW)], 1)
            v_all = torch.cat([e[3] for e in ref] + [v], 1)
            assert k_ctx.shape == k_all.shape
            want = attention_ref(q, k_all, v_all)
            assert (out - want).abs().max() <= 1e-5
        # entry contents after the commit, compared one by one
        ref = reference_memory(seen, budget, beta, operator, 0)
        for i, (mu, span, k_stored, v) in enumerate(ref):
            k_e, v_e, kt_e = cache.entry_kv(0, i)
            pos = mu if positions == "absolute" else float(i)
            torch.testing.assert_close(k_e, rope_ref(k_stored, [pos], HH, WW, axes=("t",)),
                                       rtol=0, atol=2e-5)
            torch.testing.assert_close(v_e, v, rtol=0, atol=2e-6)
            torch.testing.assert_close(kt_e, k_stored[..., :TC], rtol=0, atol=2e-6)
        assert cache.encoded_positions() == [mu if positions == "absolute" else float(i)
                                     for i, (mu, *_) in enumerate(ref)]


@pytest.mark.parametrize("policy", [FadeMem(budget=15), FadeMem(budget=15, positions="packed"),
                                    FullCache()], ids=repr)
@pytest.mark.parametrize("batch", [1, 2])
def test_attention_exact_when_budget_covers_the_video(policy, batch):
    """Budget >= frames: attention over the memory == attention over the full history."""
    frames, chunk = 15, 3
    cache = policy.make_cache(geometry(batch), chunk)
    for start in range(0, frames, chunk):
        _, outputs = run_chunk(cache, start, chunk, batch=batch, query_seed=start + 1)
        for layer, (q, _, _, out) in enumerate(outputs):
            k_raw, v = chunk_kv(range(0, start + chunk), layer, batch)
            k_full = rope_ref(k_raw, [float(t) for t in range(start + chunk)], HH, WW)
            want = attention_ref(q, k_full, v)
            assert (out - want).abs().max() <= 1e-6
    assert cache.entries() == [(float(t), 1) for t in range(frames)]


def test_bounded_memory_never_grows():
    policy = FadeMem(budget=4)
    cache = policy.make_cache(geometry(batch=2), chunk=3)
    sizes = set()
    for start in range(0, 60, 3):
        run_chunk(cache, start, 3, batch=2)
        sizes.add(cache.nbytes())
        assert len(cache.entries()) == min(start + 3, 4)
    assert sizes == {policy.memory_bytes(geometry(batch=2), 3)}
    entries = cache.entries()
    assert all(type(m) is float and type(s) is int for m, s in entries)
    assert sum(s for _, s in entries) == 60


def test_bfloat16_storage_roundtrip():
    geo = KVGeometry(num_layers=1, batch=1, tokens_per_frame=N, num_heads=H, head_dim=D,
                     dtype=torch.bfloat16)
    cache = FadeMem(budget=3).make_cache(geo, chunk=2)
    for start in range(0, 8, 2):
        positions = cache.begin_chunk(start, 2)
        k_raw, v = chunk_kv(range(start, start + 2), 0)
        k = rope_ref(k_raw, positions, HH, WW)
        k_ctx, v_ctx = cache.layers[0].attend(k.bfloat16(), v.bfloat16(),
                                              k_raw[..., :TC].bfloat16(), write=True)
        assert k_ctx.dtype == torch.bfloat16
        cache.commit()
    ref = reference_memory(8, 3, 0.3, "weighted_average", 0)
    for i, (mu, _, k_stored, v) in enumerate(ref):
        k_e, v_e, _ = cache.entry_kv(0, i)
        want = rope_ref(k_stored, [mu], HH, WW, axes=("t",))
        assert (k_e.float() - want).abs().max() < 0.1
        assert (v_e.float() - v).abs().max() < 0.05


@dataclass(frozen=True)
class _KeepingRawChannels(SinkWindow):
    """A sink window that keeps (raw=True) or drops the un-roped temporal channels at will.

    No validation on purpose: it lets the cache's own checks be exercised."""

    raw: bool = False

    def __post_init__(self) -> None:
        pass

    @property
    def needs_raw_temporal(self) -> bool:
        return self.raw


@pytest.mark.parametrize("sink", [0, 2])
def test_dropping_the_raw_temporal_buffer_changes_no_output(sink):
    """Absolute windows store no kt; their contexts equal those of a cache that keeps it."""
    from fademem_core.memory.cache import SlotCache

    history = sink + 3
    lean, full = (SlotCache(geometry(), 3, _KeepingRawChannels(sink=sink, window=6, raw=raw))
                  for raw in (False, True))
    assert lean.nbytes() == (history + 3) * geometry().bytes_per_frame()
    assert full.nbytes() == (history + 3) * LAYERS * B * N * H * (2 * D + TC) * 4
    for start in range(0, 17, 3):
        num = min(3, 17 - start)
        _, out_lean = run_chunk(lean, start, num, query_seed=start)
        _, out_full = run_chunk(full, start, num, query_seed=start)
        for a, b in zip(out_lean, out_full):
            assert all(torch.equal(x, y) for x, y in zip(a, b))
        assert lean.entries() == full.entries() and lean.encoded_positions() == full.encoded_positions()
    assert lean.entry_kv(0, 0)[2] is None and full.entry_kv(0, 0)[2] is not None


def _fresh_frame(frame: int, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """New (re-cached) un-roped key and value of one frame, distinct from frame_kv's."""
    gen = torch.Generator().manual_seed(104729 * frame + 13 * layer + 5)
    return torch.randn(B, N, H, D, generator=gen), torch.randn(B, N, H, D, generator=gen)


@pytest.mark.parametrize("make,chunk,frames,order", [
    (lambda: FullCache(), 4, 4, [0, 2, 1, 3]),  # slots 0,2,1,3: spans 4 slots, not in order
    # the sampler's own order (exact_frames, oldest first) after these rollouts lands in
    # slots [0, 2, 3, 1, 4, 5, 6] and [0, 1, 2, 6, 3, 4, 5, 7]
    (lambda: SlidingWindow(window=10), 3, 27, None),
    (lambda: SinkWindow(sink=3, window=9), 4, 24, None),
], ids=["permuted", "sliding10-chunk3", "sink3-window9-chunk4"])
def test_recache_writes_every_frame_into_its_own_slot(make, chunk, frames, order):
    cache = make().make_cache(geometry(), chunk)
    for start in range(0, frames, chunk):
        run_chunk(cache, start, min(chunk, frames - start))
    order = cache.exact_frames() if order is None else order
    positions = cache.begin_recache(order)
    for layer, lkv in enumerate(cache.layers):
        parts = [_fresh_frame(f, layer) for f in order]
        k_raw = torch.cat([p[0] for p in parts], 1)
        v = torch.cat([p[1] for p in parts], 1)
        lkv.attend(rope_ref(k_raw, positions, HH, WW), v, k_raw[..., :TC].clone(), write=True)
    cache.commit()
    index = {e.frame: i for i, e in enumerate(cache.held())}
    for layer in range(LAYERS):
        for f, pos in zip(order, positions):
            k_raw, v = _fresh_frame(f, layer)
            k_e, v_e, _ = cache.entry_kv(layer, index[f])
            assert torch.equal(v_e, v), f"frame {f}'s value landed in another slot"
            assert (k_e - rope_ref(k_raw, [pos], HH, WW)).abs().max() < 1e-5


def _recache_pass(cache, frames, keep):
    """A re-cache of ``frames`` (fresh K/V); returns per layer the context's values as a set
    of frames, recognised by their values."""
    before = [{e.frame: cache.entry_kv(layer, i)[1].clone() for i, e in enumerate(cache.held())}
              for layer in range(LAYERS)]
    positions = cache.begin_recache(frames, keep)
    assert positions == [float(f) for f in frames]  # absolute: each at its own frame index
    seen = []
    for layer, lkv in enumerate(cache.layers):
        parts = [_fresh_frame(f, layer) for f in frames]
        k_raw = torch.cat([p[0] for p in parts], 1)
        v = torch.cat([p[1] for p in parts], 1)
        _, v_ctx = lkv.attend(rope_ref(k_raw, positions, HH, WW), v, k_raw[..., :TC].clone(), True)
        known = {f: _fresh_frame(f, layer)[1] for f in frames}
        known.update({f: val for f, val in before[layer].items() if f not in known})
        got = set()
        for j in range(v_ctx.shape[1] // N):
            block = v_ctx[:, j * N:(j + 1) * N]
            (f,) = [f for f, val in known.items() if torch.equal(block, val)]
            got.add(f)
        seen.append(got)
    cache.commit()
    return seen


def test_recache_reruns_evicted_frames_and_rebuilds_the_sink():
    """LongLive's switch at frame 15 with sink 3 + window 9: the memory holds 0-2 and 9-14."""
    policy = SinkWindow(sink=3, window=9)
    cache = policy.make_cache(geometry(), 3)
    for start in range(0, 15, 3):
        run_chunk(cache, start, 3)
    sink_before = [cache.entry_kv(layer, i)[1].clone() for layer in range(LAYERS) for i in range(3)]
    # global_sink: frames 6-14 re-run (6-8 only as context), the old sink visible and untouched
    seen = _recache_pass(cache, list(range(6, 15)), None)
    assert seen == [set(range(15)) - {3, 4, 5}] * LAYERS
    assert cache.exact_frames() == [0, 1, 2, 9, 10, 11, 12, 13, 14]
    sink_after = [cache.entry_kv(layer, i)[1] for layer in range(LAYERS) for i in range(3)]
    assert all(torch.equal(a, b) for a, b in zip(sink_before, sink_after))
    for layer in range(LAYERS):
        for i, e in enumerate(cache.held()[3:], start=3):
            assert torch.equal(cache.entry_kv(layer, i)[1], _fresh_frame(e.frame, layer)[1])
    # global_sink false: frames 3-14 re-run, the old sink gone, frames 3-5 the new sink
    keep = [3, 4, 5, 9, 10, 11, 12, 13, 14]
    seen = _recache_pass(cache, list(range(3, 15)), keep)
    assert seen == [set(range(3, 15))] * LAYERS
    assert cache.exact_frames() == keep and cache.encoded_positions() == [float(f) for f in keep]
    run_chunk(cache, 15, 3)  # the new sink stays; the oldest frames after it go
    assert cache.exact_frames() == [3, 4, 5, 12, 13, 14, 15, 16, 17]
    assert cache.nbytes() == policy.memory_bytes(geometry(), 3)  # never grew


def test_recache_refuses_what_cannot_be_rerun():
    cache = FadeMem(budget=4).make_cache(geometry(), 3)
    for start in range(0, 12, 3):
        run_chunk(cache, start, 3)
    merged = next(e for e in cache.held() if e.span > 1)
    with pytest.raises(ValueError, match="consolidated"):
        cache.begin_recache([merged.frame + 1])
    with pytest.raises(ValueError, match=r"\[0, 12\)"):
        cache.begin_recache([12])
    with pytest.raises(ValueError, match="keep"):
        cache.begin_recache(cache.exact_frames(), keep=[99])
    packed = SinkWindow(positions="packed").make_cache(geometry(), 3)
    for start in range(0, 15, 3):
        run_chunk(packed, start, 3)
    with pytest.raises(ValueError, match="absolute"):
        packed.begin_recache([3])
    window = SinkWindow(sink=3, window=9).make_cache(geometry(), 3)
    for start in range(0, 15, 3):
        run_chunk(window, start, 3)
    with pytest.raises(ValueError, match="at most the policy's history of 9"):
        window.begin_recache(list(range(3, 15)), keep=list(range(3, 15)))  # one eviction a frame


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_reduced_precision_reencoding_rounds_like_the_model(dtype):
    """A key re-encoded at an integer position equals, bit for bit, the model's key roped there
    (rope.apply_rotary computes in float32 and rounds once)."""
    from fademem_core.rope import apply_rotary, grid_cos_sin, temporal_cos_sin

    geo = KVGeometry(num_layers=LAYERS, batch=B, tokens_per_frame=N, num_heads=H, head_dim=D,
                     dtype=dtype)
    storage = SlotStorage(geo, 2)
    raw = torch.randn(LAYERS, B, N, H, D, generator=torch.Generator().manual_seed(3)).to(dtype)
    for pos in (1.0, 7.0, 23.0):
        cos, sin = grid_cos_sin([pos], HH, WW, D)
        roped = apply_rotary(raw, cos, sin)
        storage.k[:, :, 1].copy_(roped)
        storage.k[:, :, 1, ..., :TC] = 0  # stale temporal channels: encode must rebuild them
        storage.kt[:, :, 1].copy_(raw[..., :TC])
        tcos, tsin = temporal_cos_sin([pos], D)
        storage.encode(1, tcos[0], tsin[0])
        assert torch.equal(storage.k[:, :, 1], roped)
        want = rope_ref(raw.flatten(0, 1).float(), [pos], HH, WW)
        assert (storage.k[:, :, 1].flatten(0, 1).float() - want).abs().max() < 0.02


def test_slot_cache_refuses_an_unknown_position_strategy():
    from fademem_core.memory.cache import SlotCache

    with pytest.raises(ValueError, match="positions.*'relative'"):
        SlotCache(geometry(), 3, _KeepingRawChannels(positions="relative"))


@pytest.mark.parametrize("policy", [FullCache(), SlidingWindow(window=6), FadeMem(budget=4, beta=0.5)],
                         ids=["full", "window", "fademem"])
def test_a_differentiated_pass_attends_to_the_same_memory_and_backpropagates(policy):
    # training with the memory in the loop: a pass whose K/V require grad must see exactly the
    # memory a rollout's pass sees (in any key order: compare attention outputs), leave the
    # buffers untouched and backpropagate through every layer's attention
    cache = policy.make_cache(geometry(), 3, max_frames=30)
    for start in range(0, 12, 3):
        run_chunk(cache, start, 3)
    positions = cache.begin_chunk(12, 3)
    leaves, grads_out = [], 0
    for layer, lkv in enumerate(cache.layers):
        k_raw, v = chunk_kv(range(12, 15), layer)
        k_leaf = k_raw.clone().requires_grad_(True)
        v_leaf = v.clone().requires_grad_(True)
        k = rope_ref(k_leaf, positions, HH, WW)
        q = rope_ref(torch.randn(k.shape, generator=torch.Generator().manual_seed(layer)), positions, HH, WW)
        k_ctx, v_ctx = lkv.attend(k, v_leaf, k_raw[..., :TC], write=False)
        out = attention_ref(q, k_ctx, v_ctx)
        with torch.no_grad():  # the rollout's path: chunk written into its slots, a view back
            k_ctx2, v_ctx2 = lkv.attend(k.detach(), v, k_raw[..., :TC], write=False)
            want = attention_ref(q, k_ctx2, v_ctx2)
        torch.testing.assert_close(out.detach(), want, atol=1e-5, rtol=1e-5)
        grads_out = grads_out + out.square().sum()
        leaves.append((k_leaf, v_leaf))
    for t in cache.buffers()[:2]:  # K and V as the cache holds them
        assert not t.requires_grad
    grads_out.backward()
    assert all(k.grad is not None and v.grad is not None and k.grad.abs().sum() > 0 for k, v in leaves)
    # a commit after a differentiated pass needs a write pass without gradient
    with pytest.raises(RuntimeError, match="no_grad"):
        k_raw, v = chunk_kv(range(12, 15), 0)
        cache.layers[0].attend(rope_ref(k_raw, positions, HH, WW).requires_grad_(True), v, k_raw[..., :TC], write=True)
