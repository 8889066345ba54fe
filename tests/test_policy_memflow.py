"""MemFlow, training-free (sink + prototype bank refreshed by text relevance + window) against a
reference written out frame by frame from its release's code (KlingTeam/MemFlow)."""
from __future__ import annotations

import math

import pytest
import torch

from fademem_core import policy_from_name
from fademem_core.memory.contract import AttentionInputs
from tests.support.kv_reference import rope_ref
from tests.support.policy_harness import CHUNK, HH, LAYERS, N, TC, WW, frame_kv, geometry


def text_keys(layer: int) -> torch.Tensor:
    """The prompt's cross-attention keys ``[1, H, L, D]`` of one layer (deterministic)."""
    return torch.randn(1, 2, 5, 24, generator=torch.Generator().manual_seed(61 + layer))


def drive(policy, frames: int, check=None):
    """A first denoising step and the clean pass per chunk, the text keys given to both."""
    cache = policy.make_cache(geometry(), CHUNK)
    for start in range(0, frames, CHUNK):
        chunk = list(range(start, start + CHUNK))
        positions = cache.begin_chunk(start, CHUNK)
        if check:
            check(cache, start, positions)
        for write in (False, True):
            for layer, lkv in enumerate(cache.layers):
                k_raw = torch.cat([frame_kv(f, layer)[0] for f in chunk], 1)
                v = torch.cat([frame_kv(f, layer)[1] for f in chunk], 1)
                lkv.attend(rope_ref(k_raw, positions, HH, WW), v, k_raw[..., :TC].clone(), write,
                           AttentionInputs(text_keys=text_keys(layer), first_step=not write))
        cache.commit()
    return cache


def relevance(frame: int, layer: int) -> float:
    """Mean over text tokens, heads and the frame's tokens of k_text . k / sqrt(D), the key
    roped at its frame index (written out with loops over the three means)."""
    k = rope_ref(frame_kv(frame, layer)[0].double(), [frame], HH, WW)[0]  # [N, H, D]
    t = text_keys(layer)[0].double()  # [H, L, D]
    total = sum(float(t[h, i] @ k[tok, h]) for h in range(2) for i in range(5) for tok in range(N))
    return total / (2 * 5 * N) / math.sqrt(24)


def reference(frames: int, sink: int, bank: int, window: int, interval: int, layer: int):
    """(sink frames, bank frames, window frames) after ``frames`` frames, chunks of 3.

    A frame leaving the window (more than ``window - 3 - sink`` held after the sink and bank) is
    dropped unless it is the first frame of a chunk ``k`` with ``k % interval == interval - 1``;
    such a prototype joins the bank, which, when full, first keeps its ``bank - 1`` most
    relevant frames."""
    sinks, banked, recent = [], [], []
    for f in range(frames):
        if len(sinks) < sink:
            sinks.append(f)
            continue
        recent.append(f)
        if len(recent) > window - CHUNK - sink:
            old = recent.pop(0)
            if bank and old % CHUNK == 0 and (old // CHUNK) % interval == interval - 1:
                if len(banked) == bank:
                    best = sorted(banked, key=lambda b: -relevance(b, layer))[: bank - 1]
                    banked = sorted(best)
                banked.append(old)
    return sinks, banked, recent


@pytest.mark.parametrize("kw,frames", [({}, 75), ({"sink": 2, "bank": 2, "window": 8, "interval": 1}, 45)],
                         ids=["release", "every-chunk"])
def test_bank_and_window_match_the_written_out_reference(kw, frames):
    policy = policy_from_name("memflow", **kw)
    p = policy

    def check(cache, start, positions):
        assert positions == [float(start + j) for j in range(CHUNK)]
        assert len(cache.entries()) + CHUNK <= p.sink + p.bank + p.window

    cache = drive(policy, frames, check)
    assert cache.encoded_positions() == [e.mu for e in cache.held()]
    per_layer = []
    for layer in range(LAYERS):
        sinks, banked, recent = reference(frames, p.sink, p.bank, p.window, p.interval, layer)
        per_layer.append(banked)
        assert len(banked) == p.bank
        held = sinks + banked + recent
        assert len(cache.entries()) == len(held)
        for i, f in enumerate(held):
            k, v, kt = cache.entry_kv(layer, i)
            assert kt is None  # keys never move: K and V only
            assert torch.equal(v, frame_kv(f, layer)[1]), (layer, i, f)
            want = rope_ref(frame_kv(f, layer)[0].double(), [f], HH, WW)  # where it was roped
            assert (k.double() - want).abs().max() < 1e-5, (layer, i, f)
    assert cache.exact_frames() == sinks + recent
    assert all(e.aggregate for e in cache.held()[p.sink:p.sink + p.bank])
    assert per_layer[0] != per_layer[1]  # each layer keeps the frames relevant to its keys


def test_prototypes_are_the_first_frames_of_every_third_chunk():
    policy = policy_from_name("memflow")
    assert [f for f in range(40) if policy.is_prototype(f, 3)] == [6, 15, 24, 33]
    # until the bank is full it only grows: the first prototype (frame 6) leaves the window
    # of 6 held frames when frame 15 arrives
    cache = drive(policy, 18)
    assert [e.frame for e in cache.held()] == [0, 1, 2, 6, 12, 13, 14, 15, 16, 17]


@pytest.mark.parametrize("kw,word", [
    ({"sink": -1}, "sink"), ({"bank": -1}, "bank"), ({"window": 3}, "window"),
    ({"interval": 0}, "interval"), ({"positions": "packed"}, "positions"),
])
def test_bad_parameters_are_refused(kw, word):
    with pytest.raises(ValueError, match=word):
        policy_from_name("memflow", **kw)
    with pytest.raises(ValueError, match="chunk"):
        policy_from_name("memflow", window=5).history_frames(3)


def test_memory_bytes_is_the_formula_and_what_is_allocated():
    """(12 + 3 + 3 - 3 history + 3 chunk) slots x (K + V, 4 bytes, + one float32 score) per
    token, head and layer, written out."""
    want = 15 * LAYERS * N * (2 * (2 * 24) * 4 + 4)
    policy = policy_from_name("memflow")
    assert policy.visible_frames(3) == 15 and policy.history_frames(3) == 12
    assert policy.memory_bytes(geometry(), CHUNK) == want
    assert drive(policy, 30).nbytes() == want
