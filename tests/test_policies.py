"""Every cache policy against the one contract (parametrized over ALL_POLICIES)."""
from __future__ import annotations

import dataclasses

import pytest
import torch

import fademem_core
from fademem_core.memory.policies import POLICIES, Decision, Entry, Evict, FadeMem, FullCache, Keep, \
    KVGeometry, Merge, MemoryView, SinkWindow, SlidingWindow, policy_from_name
from fademem_core.memory.contract import ATTENTION_INPUTS, AttentionInputs
from tests.support.kv_reference import attention_ref, rope_ref

# Every registered policy with each position strategy it accepts, plus variants: a policy
# added to POLICIES is tested here without touching this file.
ALL_POLICIES = (
    [cls(positions=p) for cls in POLICIES.values() for p in cls.POSITIONS]
    + [SlidingWindow(window=4), SinkWindow(sink=1, window=5),
       FadeMem(budget=3, beta=1.0, operator="average"),
       FadeMem(budget=2, anchor=False, operator="select_nearest", positions="packed"),
       FadeMem(budget=5, beta=0.1, operator="max_pool")]
)
IDS = [repr(p) for p in ALL_POLICIES]

H, D, HH, WW = 2, 24, 2, 2
N, TC, LAYERS, CHUNK = HH * WW, 8, 2, 3


def geometry() -> KVGeometry:
    return KVGeometry(num_layers=LAYERS, batch=1, tokens_per_frame=N, num_heads=H, head_dim=D,
                      grid=(HH, WW))


def frame_kv(frame: int, layer: int, salt: int = 0):
    gen = torch.Generator().manual_seed(1009 * frame + 17 * layer + 100003 * salt)
    return torch.randn(1, N, H, D, generator=gen), torch.randn(1, N, H, D, generator=gen)


def chunk_kv(frames, layer, salt=0):
    parts = [frame_kv(f, layer, salt) for f in frames]
    return torch.cat([p[0] for p in parts], 1), torch.cat([p[1] for p in parts], 1)


def inputs_for(cache, k, layer, first_step=False, omit=frozenset()):
    """What the model passes to attend: the attention inputs the cache declared (less ``omit``),
    nothing else."""
    needs = cache.attention_needs - set(omit)
    if not needs:
        return None
    gen = torch.Generator().manual_seed(7 + layer)
    return AttentionInputs(torch.randn(k.shape, generator=gen) if "queries" in needs else None,
                           torch.randn(1, H, 5, D, generator=gen) if "text_keys" in needs else None,
                           first_step and "first_step" in needs)


def write_pass(cache, frames, positions, salt=0):
    """Attend every layer with write=True; return the per-layer contexts' token counts."""
    sizes = []
    for layer, lkv in enumerate(cache.layers):
        k_raw, v = chunk_kv(frames, layer, salt)
        k = rope_ref(k_raw, positions, HH, WW)
        k_ctx, v_ctx = lkv.attend(k, v, k_raw[..., :TC], write=True,
                                  inputs=inputs_for(cache, k, layer))
        assert k_ctx.shape == v_ctx.shape
        sizes.append(k_ctx.shape[1])
    return sizes


def rollout(policy, frames, check=None):
    cache = policy.make_cache(geometry(), CHUNK)
    for start in range(0, frames, CHUNK):
        num = min(CHUNK, frames - start)
        positions = cache.begin_chunk(start, num)
        if check:
            check(cache, start, num, positions)
        write_pass(cache, range(start, start + num), positions)
        cache.commit()
    return cache


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=IDS)
def test_frozen_hashable_and_named(policy):
    assert hash(policy) == hash(dataclasses.replace(policy))
    assert policy == dataclasses.replace(policy)
    with pytest.raises(dataclasses.FrozenInstanceError):
        policy.positions = "packed"
    assert policy.positions in type(policy).POSITIONS
    assert getattr(fademem_core, type(policy).__name__) is type(policy)


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=IDS)
def test_rollout_respects_the_stated_bounds(policy):
    visible = policy.visible_frames(CHUNK)
    history = policy.history_frames(CHUNK)
    bound = policy.memory_bytes(geometry(), CHUNK)
    sizes = set()

    def check(cache, start, num, positions):
        held = len(cache.entries())
        context = held + num
        if visible is not None:
            assert context <= visible
            if policy.fills_to_visible:
                assert context == min(visible - (CHUNK - num), start + num)
        else:
            assert context == start + num
        if policy.positions == "packed":
            assert positions == [float(held + j) for j in range(num)]
        elif policy.positions in ("absolute", "sink_shifted"):
            assert positions == [float(start + j) for j in range(num)]
        sizes.add(cache.nbytes())
        assert write_pass(cache, range(start, start + num), positions) == [context * N] * LAYERS

    cache = rollout(policy, 25, check)
    entries = cache.entries()
    assert entries[-1] == (24.0, 1)
    assert all(a[0] < b[0] for a, b in zip(entries, entries[1:]))
    if policy.disjoint_entries:
        assert sum(s for _, s in entries) <= 25
    if history is None:
        assert bound is None and len(entries) == 25
    else:
        assert len(entries) == min(history, 25) if policy.fills_to_visible else \
            len(entries) <= history
        assert sizes == {bound} and cache.nbytes() == bound  # allocated once, never grows
    if policy.positions in ("absolute", "packed", "sink_shifted"):  # others: their own tests
        n = len(entries)
        want_pos = {"absolute": [m for m, _ in entries], "packed": [float(i) for i in range(n)],
                    "sink_shifted": [float(25 - n + i) for i in range(n)]}[policy.positions]
        assert cache.encoded_positions() == want_pos
    cache.close()
    cache.close()
    assert cache.nbytes() == 0
    with pytest.raises(RuntimeError):
        cache.begin_chunk(25, 1)


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=IDS)
def test_exact_entries_and_attention_match_reference(policy):
    """Entries holding one frame carry that frame's K/V, keyed at the stated position."""
    cache = rollout(policy, 17)
    held = {e.frame: (i, p) for i, (e, p) in enumerate(zip(cache.held(), cache.encoded_positions()))}
    exact = cache.exact_frames()
    assert exact and exact[-1] == 16
    for f in exact:
        i, pos = held[f]
        k_e, v_e, _ = cache.entry_kv(1, i)
        k_raw, v = frame_kv(f, 1)
        assert torch.equal(v_e, v)
        assert (k_e - rope_ref(k_raw, [pos], HH, WW)).abs().max() < 1e-5
    positions = cache.begin_chunk(17, 2)
    for layer, lkv in enumerate(cache.layers):
        k_raw, v = chunk_kv(range(17, 19), layer)
        k = rope_ref(k_raw, positions, HH, WW)
        k_ctx, v_ctx = lkv.attend(k, v, k_raw[..., :TC], write=False,
                                  inputs=inputs_for(cache, k, layer, first_step=True))
        # merged entries are checked against the operator in test_memory; here, exact ones
        ref_k = [rope_ref(frame_kv(f, layer)[0], [held[f][1]], HH, WW) for f in exact]
        ref_v = [frame_kv(f, layer)[1] for f in exact]
        merged = [i for i, e in enumerate(cache.held()) if e.span > 1 or e.aggregate]
        ref_k += [cache.entry_kv(layer, i)[0] for i in merged]
        ref_v += [cache.entry_kv(layer, i)[1] for i in merged]
        q = torch.randn(k.shape, generator=torch.Generator().manual_seed(layer))
        want = attention_ref(q, torch.cat(ref_k + [k], 1), torch.cat(ref_v + [v], 1))
        assert (attention_ref(q, k_ctx, v_ctx) - want).abs().max() <= 1e-6


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=IDS)
def test_recache_replaces_exact_frames_in_place(policy):
    cache = rollout(policy, 12)
    before = cache.entries()
    exact = cache.exact_frames()
    targets = exact[-2:]
    positions = cache.begin_recache(targets)
    index = {e.frame: i for i, e in enumerate(cache.held())}
    assert positions == [cache.encoded_positions()[index[f]] for f in targets]
    others = {i: cache.entry_kv(0, i)[1].clone() for i in range(len(before))
              if cache.held()[i].frame not in targets}
    sizes = write_pass(cache, targets, positions, salt=1)
    assert sizes == [len(before) * N] * LAYERS  # recached frames see the whole memory
    cache.commit()
    assert cache.entries() == before
    for f in targets:
        k_e, v_e, kt_e = cache.entry_kv(1, index[f])
        k_raw, v = frame_kv(f, 1, salt=1)
        assert torch.equal(v_e, v)
        if policy.needs_raw_temporal:
            assert torch.equal(kt_e, k_raw[..., :TC])
        else:
            assert kt_e is None  # keys never move: no raw temporal channels kept
        assert (k_e - rope_ref(k_raw, [positions[targets.index(f)]], HH, WW)).abs().max() < 1e-5
    for i, v_old in others.items():
        assert torch.equal(cache.entry_kv(0, i)[1], v_old)
    with pytest.raises(ValueError, match="exact_frames"):
        cache.begin_recache([10**6])
    # the rollout continues normally afterwards
    positions = cache.begin_chunk(12, 3)
    write_pass(cache, range(12, 15), positions)
    cache.commit()
    assert cache.entries()[-1] == (14.0, 1)


@pytest.mark.parametrize("policy", ALL_POLICIES, ids=IDS)
def test_contract_errors(policy):
    cache = policy.make_cache(geometry(), CHUNK)
    k = torch.zeros(1, CHUNK * N, H, D)
    kt = torch.zeros(1, CHUNK * N, H, TC)
    with pytest.raises(RuntimeError, match="begin_chunk"):
        cache.layers[0].attend(k, k, kt, write=True)
    with pytest.raises(RuntimeError, match="begin_chunk"):
        cache.commit()
    with pytest.raises(ValueError, match="start_frame"):
        cache.begin_chunk(3, CHUNK)
    with pytest.raises(ValueError, match="num_frames"):
        cache.begin_chunk(0, CHUNK + 1)
    with pytest.raises(ValueError, match="num_frames"):
        cache.begin_chunk(0, 0)
    cache.begin_chunk(0, CHUNK)
    with pytest.raises(ValueError, match="k and v"):
        cache.layers[0].attend(k[:, :N], k[:, :N], kt[:, :N], write=True)
    with pytest.raises(ValueError, match="k_temporal_raw"):
        cache.layers[0].attend(k, k, k, write=True)
    cache.layers[0].attend(k, k, kt, write=False, inputs=inputs_for(cache, k, 0))
    with pytest.raises(RuntimeError, match="write=True"):
        cache.commit()  # no clean pass yet
    for i, lkv in enumerate(cache.layers):
        lkv.attend(k, k, kt, write=True, inputs=inputs_for(cache, k, i))
    cache.commit()
    assert len(cache.entries()) == min(CHUNK, policy.history_frames(CHUNK) or CHUNK)


# Every declared attention need of every registered policy that scores tokens (a new scoring
# policy in POLICIES is covered here for free).  Tensor inputs default to None in
# AttentionInputs; the flag (first_step) defaults to False, a legal value (a chunk without a
# first-step pass is scored at its write pass), so it cannot be "left out".
TENSOR_INPUTS = {f.name for f in dataclasses.fields(AttentionInputs) if f.default is None}
SCORING = [p for p in ALL_POLICIES if p.attention_needs]
NEEDS = [(p, need) for p in SCORING for need in sorted(p.attention_needs)]


def test_the_registry_has_scoring_policies_and_their_needs_are_known_inputs():
    assert {type(p).__name__ for p in SCORING} >= {"DeepForcing", "MemFlow"}
    for p in SCORING:
        assert p.attention_needs <= set(ATTENTION_INPUTS), p
        assert p.attention_needs & TENSOR_INPUTS, p  # scoring from a flag alone is meaningless


@pytest.mark.parametrize("policy,need", NEEDS, ids=[f"{p!r}-{n}" for p, n in NEEDS])
@pytest.mark.parametrize("write", [False, True], ids=["denoise", "write"])
def test_the_cache_refuses_attention_without_each_declared_input(policy, need, write):
    cache = policy.make_cache(geometry(), CHUNK)
    positions = cache.begin_chunk(0, CHUNK)
    k_raw, v = chunk_kv(range(CHUNK), 0)
    k = rope_ref(k_raw, positions, HH, WW)
    attend = cache.layers[0].attend
    without = inputs_for(cache, k, 0, first_step=True, omit={need})
    if need not in TENSOR_INPUTS:  # the flag: its absence means "not the first step", accepted
        attend(k, v, k_raw[..., :TC], write=write, inputs=without)
        return
    with pytest.raises(ValueError, match=rf"{type(policy).__name__} needs \['{need}'\]"):
        attend(k, v, k_raw[..., :TC], write=write, inputs=without)
    with pytest.raises(ValueError, match=rf"needs \[.*'{need}'.*\] passed to attend"):
        attend(k, v, k_raw[..., :TC], write=write, inputs=None)
    # with everything it declared, the same call goes through
    attend(k, v, k_raw[..., :TC], write=write, inputs=inputs_for(cache, k, 0, first_step=True))


def test_window_contents():
    sink = rollout(SinkWindow(sink=3, window=9), 30)
    assert sink.exact_frames() == [0, 1, 2, 24, 25, 26, 27, 28, 29]
    slide = rollout(SlidingWindow(window=12), 30)
    assert slide.exact_frames() == list(range(21, 30))
    assert SinkWindow().visible_frames(3) == 12 and SinkWindow().history_frames(3) == 9
    assert SlidingWindow().visible_frames(3) == 12 and SlidingWindow().history_frames(3) == 9
    assert FadeMem().visible_frames(3) == 15 and FadeMem().history_frames() == 12
    assert FullCache().visible_frames(3) is None and FullCache().history_frames() is None
    with pytest.raises(ValueError, match="chunk"):
        SlidingWindow(window=2).visible_frames(3)


def test_window_decision_evicts_the_entry_after_the_held_sink():
    """The windows' pure decision counts held entries: after a LongLive re-sink (frames 3-5 the
    sink, issue 16) the entry after them goes, not the oldest frame >= sink."""
    def view(frames, history):
        return MemoryView(tuple(Entry(float(f), 1, f) for f in frames), frames[-1], history)

    resunk = [3, 4, 5, 9, 10, 11, 12, 13, 14, 15]
    assert SinkWindow(sink=3, window=9).decide(view(resunk, 9)) == Evict(3)  # frame 9
    assert SinkWindow(sink=3, window=9).decide(view(resunk[:-1], 9)) == Keep()
    assert SinkWindow(sink=3, window=3).decide(view([0, 1, 2, 3], 3)) == Evict(3)  # the newest
    assert SlidingWindow(window=4).decide(view([5, 6, 7], 2)) == Evict(0)
    assert FullCache().decide(view(list(range(50)), None)) == Keep()


def test_geometry_bytes_at_the_13b_shapes():
    g = KVGeometry(num_layers=30, batch=1, tokens_per_frame=1560, num_heads=12, head_dim=128,
                   dtype=torch.bfloat16)
    assert g.bytes_per_frame() == 2 * 30 * 1560 * 12 * 128 * 2  # 274 MiB
    assert round(g.bytes_per_frame() / 2**20) == 274
    per_slot = g.slot_bytes()
    assert per_slot == 30 * 1560 * 12 * (2 * 128 + 44) * 2
    assert g.slot_bytes(raw_temporal=False) == g.bytes_per_frame()
    assert FadeMem().memory_bytes(g, 3) == 15 * per_slot
    # windows with absolute positions never move a key: K and V only
    assert SinkWindow().memory_bytes(g, 3) == 12 * 2 * 30 * 1560 * 12 * 128 * 2
    assert SinkWindow(positions="packed").memory_bytes(g, 3) == 12 * per_slot


def test_full_cache_for_240_frames_at_the_13b_shapes_is_exactly_k_plus_v():
    g = KVGeometry(num_layers=30, batch=1, tokens_per_frame=1560, num_heads=12, head_dim=128,
                   dtype=torch.bfloat16)
    want = 240 * 2 * 30 * 1560 * 12 * 128 * 2
    assert FullCache().memory_bytes(g, 3, max_frames=240) == want
    assert round(want / 2**30, 1) == 64.3
    assert FullCache().memory_bytes(g, 3) is None  # unbounded without a length
    packed = FullCache(positions="packed").memory_bytes(g, 3, max_frames=240)
    assert packed == 240 * 30 * 1560 * 12 * (2 * 128 + 44) * 2


def _formula_bytes(policy, geo: KVGeometry, chunk: int, max_frames: int | None) -> int | None:
    """Independent count: slots x (K + V [+ raw temporal channels]), from the shapes alone."""
    slots = {
        FadeMem: lambda p: p.budget + chunk,
        SlidingWindow: lambda p: p.window,
        SinkWindow: lambda p: p.sink + p.window,
        FullCache: lambda p: None if max_frames is None else max(max_frames, chunk),
    }[type(policy)](policy)
    if slots is None:
        return None
    raw = isinstance(policy, FadeMem) or policy.positions == "packed"
    per_token_head = 2 * geo.head_dim + (TC if raw else 0)  # TC: written out, not derived
    return (slots * geo.num_layers * geo.batch * geo.tokens_per_frame * geo.num_heads
            * per_token_head * geo.itemsize)


@pytest.mark.parametrize("positions", ["absolute", "packed"])
@pytest.mark.parametrize("make", [
    lambda pos: FadeMem(budget=4, positions=pos),
    lambda pos: FadeMem(budget=3, operator="select_nearest", positions=pos),
    lambda pos: SlidingWindow(window=5, positions=pos),
    lambda pos: SinkWindow(sink=2, window=4, positions=pos),
    lambda pos: FullCache(positions=pos),
], ids=["fademem", "fademem-select", "sliding", "sink", "full"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_memory_bytes_is_the_formula_and_what_is_allocated(make, positions, dtype):
    policy = make(positions)
    geo = KVGeometry(num_layers=LAYERS, batch=2, tokens_per_frame=N, num_heads=H, head_dim=D,
                     dtype=dtype)
    assert policy.needs_raw_temporal == (isinstance(policy, FadeMem) or positions == "packed")
    frames = 14
    max_frames = frames if isinstance(policy, FullCache) else None
    want = _formula_bytes(policy, geo, CHUNK, max_frames)
    assert policy.memory_bytes(geo, CHUNK, max_frames=max_frames) == want
    cache = policy.make_cache(geo, CHUNK, max_frames=max_frames)
    assert (cache.buffers().kt is not None) == policy.needs_raw_temporal
    assert cache.nbytes() == want  # allocated up front, exactly the stated amount
    for start in range(0, frames, CHUNK):
        num = min(CHUNK, frames - start)
        positions_ = cache.begin_chunk(start, num)
        for layer, lkv in enumerate(cache.layers):
            k = torch.zeros(2, num * N, H, D, dtype=dtype)
            lkv.attend(k, k, k[..., :TC], write=True)
        cache.commit()
        assert cache.nbytes() == want  # never grows (the full cache was preallocated)
    if not isinstance(policy, FullCache):
        assert policy.memory_bytes(geo, CHUNK, max_frames=10**6) == want  # bound ignores length
    cache.close()


@dataclasses.dataclass(frozen=True)
class _MergeWithoutRawChannels(FullCache):
    """A broken policy: it merges the first pair past two entries yet claims it needs no raw
    temporal channels (whatever its positions), so the cache's own checks must catch it."""

    def __post_init__(self) -> None:
        pass

    @property
    def needs_raw_temporal(self) -> bool:
        return False

    def history_frames(self, chunk: int = 3) -> int | None:
        return 2

    def decide(self, memory: MemoryView) -> Decision:
        if len(memory.held) > 2:
            a, b = memory.held[0], memory.held[1]
            return Merge(0, (a.mu + b.mu) / 2, a.span + b.span)
        return Keep()


def test_a_cache_without_raw_temporal_channels_refuses_to_move_keys():
    from fademem_core.memory.cache import SlotCache, SlotStorage

    geo = geometry()
    with pytest.raises(ValueError, match="raw_temporal"):
        SlotCache(geo, CHUNK, _MergeWithoutRawChannels(positions="packed"))
    storage = SlotStorage(geo, 3, raw_temporal=False)
    assert storage.kt is None and storage.nbytes() == 3 * geo.slot_bytes(raw_temporal=False)
    with pytest.raises(RuntimeError, match="raw_temporal"):
        storage.merge(0, 1, 1, 1, "weighted_average")
    with pytest.raises(RuntimeError, match="raw_temporal"):
        storage.encode(0, torch.ones(TC // 2), torch.zeros(TC // 2))

    cache = SlotCache(geo, CHUNK, _MergeWithoutRawChannels())
    cache.begin_chunk(0, CHUNK)
    write_pass(cache, range(CHUNK), [0.0, 1.0, 2.0])
    with pytest.raises(RuntimeError, match="needs_raw_temporal"):
        cache.commit()


@pytest.mark.parametrize("kwargs", [dict(num_layers=0), dict(head_dim=7), dict(batch=1.0),
                                    dict(tokens_per_frame=True), dict(dtype=torch.int32)])
def test_bad_geometry(kwargs):
    base = dict(num_layers=1, batch=1, tokens_per_frame=4, num_heads=2, head_dim=24)
    with pytest.raises(ValueError):
        KVGeometry(**{**base, **kwargs})


@pytest.mark.parametrize("cls,kwargs,word", [
    (FadeMem, dict(beta=0.0), "beta"), (FadeMem, dict(beta=1.5), "beta"),
    (FadeMem, dict(beta=float("nan")), "beta"), (FadeMem, dict(budget=2), "budget"),
    (FadeMem, dict(budget=1, anchor=False), "budget"), (FadeMem, dict(budget=12.0), "budget"),
    (FadeMem, dict(operator="median"), "operator"), (FadeMem, dict(positions="rel"), "positions"),
    (FadeMem, dict(anchor="yes"), "anchor"),
    (SinkWindow, dict(sink=-1), "sink"), (SinkWindow, dict(window=0), "window"),
    (SinkWindow, dict(window=2.5), "window"), (SlidingWindow, dict(window=-3), "window"),
    (SlidingWindow, dict(window=True), "window"), (FullCache, dict(positions=None), "positions"),
])
def test_invalid_construction(cls, kwargs, word):
    with pytest.raises(ValueError, match=word):
        cls(**kwargs)


def test_policy_from_name():
    for name, cls in POLICIES.items():
        assert type(policy_from_name(name)) is cls
    assert policy_from_name("FadeMem", budget=8, beta=0.5) == FadeMem(budget=8, beta=0.5)
    assert policy_from_name("sink_window", sink=2) == SinkWindow(sink=2)
    assert policy_from_name("Sliding-Window") == SlidingWindow()
    assert policy_from_name("longlive") == SinkWindow()
    assert policy_from_name("full_cache") == FullCache()
    with pytest.raises(ValueError, match="unknown cache policy"):
        policy_from_name("lru")
    with pytest.raises(ValueError, match="bad arguments"):
        policy_from_name("fademem", size=3)
    with pytest.raises(ValueError, match="beta"):
        policy_from_name("fademem", beta=2)


# ----------------------------------------------------------------------------- allocation bounds
SHORT = 5  # latent frames of a video shorter than most policies' history + chunk


@pytest.mark.parametrize("policy", ALL_POLICIES + [FadeMem(budget=1000), FadeMem(budget=10**9)],
                         ids=IDS + ["FadeMem(budget=1000)", "FadeMem(budget=10**9)"])
def test_a_short_video_allocates_only_the_slots_it_can_use(policy):
    geo = geometry()
    # + one float32 score per token and layer for the policies that select tokens
    slot = geo.slot_bytes(policy.needs_raw_temporal) + (4 * LAYERS * N if policy.attention_needs else 0)
    chunk = min(CHUNK, policy.visible_frames(CHUNK) or CHUNK)
    history = policy.history_frames(chunk)
    slots = SHORT if history is None else min(history + chunk, SHORT)  # written out
    assert policy.memory_bytes(geo, chunk, max_frames=SHORT) == slots * slot
    cache = policy.make_cache(geo, chunk, max_frames=SHORT)
    assert cache.nbytes() == slots * slot
    # the same rollout without the length promise (a huge budget merges nothing: keep everything)
    free = (policy if history is None or history < 100 else FullCache()).make_cache(geo, chunk)
    for start in range(0, SHORT, chunk):
        num = min(chunk, SHORT - start)
        for c in (cache, free):
            positions = c.begin_chunk(start, num)
            write_pass(c, range(start, start + num), positions)
            c.commit()
        assert cache.entries() == free.entries()
        assert cache.nbytes() == slots * slot  # never grew
    cache.close()
    free.close()


@pytest.mark.parametrize("policy", [FadeMem(budget=4), SlidingWindow(window=6), SinkWindow(sink=1, window=4)],
                         ids=repr)
def test_a_bounded_cache_fed_past_its_length_promise_grows_to_its_bound_only(policy):
    geo = geometry()
    bound = (policy.history_frames(CHUNK) + CHUNK) * geo.slot_bytes(policy.needs_raw_temporal)
    cache = policy.make_cache(geo, CHUNK, max_frames=3)
    ref = rollout(policy, 30)
    for start in range(0, 30, CHUNK):
        positions = cache.begin_chunk(start, CHUNK)
        write_pass(cache, range(start, start + CHUNK), positions)
        cache.commit()
        assert cache.nbytes() <= bound
    assert cache.entries() == ref.entries() and cache.nbytes() == bound


def test_a_cache_larger_than_the_machine_is_refused_with_its_size():
    geo = geometry()
    want = 10**12 * geo.slot_bytes(False)
    with pytest.raises(ValueError, match=f"needs {want} bytes"):
        FullCache().make_cache(geo, CHUNK, max_frames=10**12)
    with pytest.raises(ValueError, match="bytes"):
        FadeMem(budget=10**12).make_cache(geo, CHUNK)


def test_the_size_check_uses_the_devices_memory_and_allocation_failures_become_valueerror(monkeypatch):
    from fademem_core.memory import storage as slot_storage

    geo = geometry()
    slot = geo.slot_bytes(True)
    monkeypatch.setattr(slot_storage, "device_memory_bytes", lambda device: 10 * slot)
    FadeMem(budget=7).make_cache(geo, CHUNK)  # 10 slots: fits exactly
    with pytest.raises(ValueError, match=f"needs {11 * slot} bytes .* more than the {10 * slot} bytes"):
        FadeMem(budget=8).make_cache(geo, CHUNK)

    def oom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")

    monkeypatch.setattr(torch, "zeros", oom)
    with pytest.raises(ValueError, match=f"needs {4 * slot} bytes .* could not be allocated: .?CUDA out of memory"):
        FadeMem(budget=3).make_cache(geo, 1)
