"""Deep Forcing (deep sink at shifted positions + participative compression of single tokens)
against a reference written out token by token from its description (issue 14, the paper)."""
from __future__ import annotations

import pytest
import torch

from fademem_core import policy_from_name
from fademem_core.memory.contract import AttentionInputs
from tests.support.kv_reference import rope_ref
from tests.support.policy_harness import CHUNK, HH, LAYERS, N, TC, WW, frame_kv, geometry


def chunk_queries(start: int, layer: int, salt: int = 0) -> torch.Tensor:
    """Un-roped queries ``[1, CHUNK * N, H, D]`` of the chunk at ``start`` (deterministic)."""
    gen = torch.Generator().manual_seed(7919 * start + 31 * layer + 3 + 1000003 * salt)
    return torch.randn(1, CHUNK * N, 2, 24, generator=gen)


def drive(policy, frames: int, check=None):
    """The sampler's passes through the contract: a first denoising step (queries given, write
    False), then the clean pass with other queries (which must not be the ones that score)."""
    cache = policy.make_cache(geometry(), CHUNK)
    for start in range(0, frames, CHUNK):
        chunk = list(range(start, start + CHUNK))
        positions = cache.begin_chunk(start, CHUNK)
        if check:
            check(cache, start, positions)
        for first, salt in ((True, 0), (False, 1)):
            for layer, lkv in enumerate(cache.layers):
                k_raw = torch.cat([frame_kv(f, layer)[0] for f in chunk], 1)
                v = torch.cat([frame_kv(f, layer)[1] for f in chunk], 1)
                q = rope_ref(chunk_queries(start, layer, salt), positions, HH, WW)
                lkv.attend(rope_ref(k_raw, positions, HH, WW), v, k_raw[..., :TC].clone(),
                           write=not first, inputs=AttentionInputs(queries=q, first_step=first))
        cache.commit()
    return cache


def roped_token(frame: int, token: int, pos: float, layer: int) -> torch.Tensor:
    """Key ``[H, D]`` of ``token`` of ``frame`` roped at temporal ``pos`` (row/col its own)."""
    return rope_ref(frame_kv(frame, layer)[0].double(), [pos], HH, WW)[0, token]


def reference(frames: int, sink: int, window: int, recent: int, layer: int, salt: int = 0):
    """Entries after ``frames`` frames as lists of ``(frame, token)``, oldest first.

    Written out: every frame is kept until more than ``window`` are held after a chunk; then
    the tokens between the sink and the ``recent`` newest frames compete and the
    ``C * N`` with the largest sum over the chunk's (first-step) queries and heads of ``q . k``
    stay, in (frame, token) order, packed into ``C`` entries of ``N``.  Keys are scored where
    they sat at that step: the ``n`` held entries at ``start - n .. start - 1``."""
    c = window - sink - recent
    held: list[list[tuple[int, int]]] = []
    scores: dict[tuple[int, tuple[int, int]], float] = {}
    for start in range(0, frames, CHUNK):
        q = rope_ref(chunk_queries(start, layer, salt), list(range(start, start + CHUNK)), HH, WW)
        q_sum = q[0].double().sum(0)  # [H, D]
        for i, entry in enumerate(held):
            pos = start - len(held) + i
            for tok in entry:
                key = roped_token(tok[0], tok[1], pos, layer)
                scores[(start, tok)] = float((q_sum * key).sum())
        held += [[(f, t) for t in range(N)] for f in range(start, start + CHUNK)]
        if len(held) > window:
            middle = [tok for entry in held[sink:len(held) - recent] for tok in entry]
            best = sorted(middle, key=lambda tok: -scores[(start, tok)])[: c * N]
            kept = sorted(best)
            held = held[:sink] + [kept[j * N:(j + 1) * N] for j in range(c)] + held[len(held) - recent:]
    return held


@pytest.mark.parametrize("kw,frames", [({}, 45), ({"sink": 2, "window": 7, "recent": 3}, 30),
                                       ({"sink": 1, "window": 5, "recent": 3, "positions": "packed"}, 24)],
                         ids=["paper", "small", "small-packed"])
def test_survivors_and_positions_match_the_written_out_reference(kw, frames):
    policy = policy_from_name("deep_forcing", **kw)
    sink, window, recent = policy.sink, policy.window, policy.recent
    packed = policy.positions == "packed"

    def check(cache, start, positions):
        n = len(cache.entries())
        assert positions == ([float(n + j) for j in range(CHUNK)] if packed else
                             [float(start + j) for j in range(CHUNK)])
        base = 0 if packed else start - n  # the sink sits just before the recent frames
        assert cache.encoded_positions() == [float(base + i) for i in range(n)]

    cache = drive(policy, frames, check)
    n = len(cache.entries())
    assert n == window
    base = 0 if packed else frames - n
    differs = False
    for layer in range(LAYERS):
        ref = reference(frames, sink, window, recent, layer)
        assert len(ref) == n
        for i, entry in enumerate(ref):
            k, v, _ = cache.entry_kv(layer, i)
            want_k = torch.stack([roped_token(f, t, base + i, layer) for f, t in entry])
            want_v = torch.stack([frame_kv(f, layer)[1][0, t].double() for f, t in entry])
            assert (k[0].double() - want_k).abs().max() < 1e-5, (layer, i, entry)
            assert torch.equal(v[0].double(), want_v), (layer, i)
        frames_used = {f for entry in ref[sink:sink + window - sink - recent] for f, _ in entry}
        differs |= len(frames_used) > window - sink - recent  # tokens mixed across frames
    assert differs  # per token, not per frame
    assert cache.exact_frames() == list(range(sink)) + list(range(frames - recent, frames))
    held = cache.held()
    assert all(e.aggregate for e in held[sink:window - recent])


def test_selection_differs_per_layer_and_uses_the_first_step_queries():
    policy = policy_from_name("deep_forcing", sink=2, window=7, recent=3)
    refs = [reference(21, 2, 7, 3, layer) for layer in range(LAYERS)]
    assert refs[0][2:4] != refs[1][2:4]  # each layer keeps its own tokens
    cache = drive(policy, 21)
    for layer in range(LAYERS):
        want = torch.stack([roped_token(f, t, 21 - 7 + 2, layer) for f, t in refs[layer][2]])
        assert (cache.entry_kv(layer, 2)[0][0].double() - want).abs().max() < 1e-5
    # scored with the clean pass's queries instead, other tokens would have been kept
    assert reference(21, 2, 7, 3, 0, salt=1)[2] != refs[0][2]


def test_without_compression_it_is_the_deep_sink_window():
    """C = 0: the sink and the recent frames only (the paper's "Deep Sink" ablation)."""
    cache = drive(policy_from_name("deep_forcing", sink=3, window=7, recent=4), 30)
    assert cache.exact_frames() == [0, 1, 2, 26, 27, 28, 29]
    assert cache.encoded_positions() == [23.0, 24.0, 25.0, 26.0, 27.0, 28.0, 29.0]


@pytest.mark.parametrize("kw,word", [
    ({"sink": -1}, "sink"), ({"recent": 0}, "recent"), ({"window": 13}, "window"),
    ({"positions": "absolute"}, "positions"), ({"window": 2.5}, "window"),
])
def test_bad_parameters_are_refused(kw, word):
    with pytest.raises(ValueError, match=word):
        policy_from_name("deep_forcing", **kw)
    with pytest.raises(ValueError, match="chunk"):
        policy_from_name("deep_forcing", recent=2, window=12).history_frames(3)


def test_memory_bytes_is_the_formula_and_what_is_allocated():
    """(16 + 3) slots x (K + V + 8 raw temporal channels, 4 bytes each, + one float32 score)
    per token, head and layer, written out."""
    want = 19 * LAYERS * N * (2 * (2 * 24 + 8) * 4 + 4)
    policy = policy_from_name("deep_forcing")
    assert policy.memory_bytes(geometry(), CHUNK) == want
    cache = drive(policy, 30)
    assert cache.nbytes() == want
