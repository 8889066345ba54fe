"""Drives a cache through the public contract with known per-frame K/V (shared by the
per-policy mechanism tests); the expected values come from ``policy_reference``."""
from __future__ import annotations

import torch

from fademem_core import KVGeometry
from tests.support.kv_reference import rope_ref

H, D, HH, WW = 2, 24, 2, 2
N, TC, LAYERS, CHUNK = HH * WW, 8, 2, 3


def geometry(dtype: torch.dtype = torch.float32) -> KVGeometry:
    return KVGeometry(num_layers=LAYERS, batch=1, tokens_per_frame=N, num_heads=H, head_dim=D,
                      dtype=dtype, grid=(HH, WW))


def frame_kv(frame: int, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Un-roped key and value ``[1, N, H, D]`` of one frame in one layer (deterministic)."""
    gen = torch.Generator().manual_seed(104729 * frame + 13 * layer + 5)
    return torch.randn(1, N, H, D, generator=gen), torch.randn(1, N, H, D, generator=gen)


def write_chunk(cache, frames: list[int], positions: list[float]) -> None:
    """One clean pass over every layer: the chunk's keys roped at ``positions``."""
    for layer, lkv in enumerate(cache.layers):
        parts = [frame_kv(f, layer) for f in frames]
        k_raw = torch.cat([p[0] for p in parts], 1)
        v = torch.cat([p[1] for p in parts], 1)
        k = rope_ref(k_raw, positions, HH, WW)
        lkv.attend(k, v, k_raw[..., :TC].clone(), write=True)


def policy_for(name: str, chunk: int):
    """Registered policy ``name`` at its defaults, on the first position strategy it offers that
    runs ``chunk``-frame chunks (the release layout of FadeMemRelease is 3-frame only)."""
    from fademem_core.memory.policies import POLICIES

    cls = POLICIES[name]
    for positions in dict.fromkeys((cls().positions, *cls.POSITIONS)):
        policy = cls(positions=positions)
        try:
            policy.visible_frames(chunk)
        except ValueError:
            continue
        return policy
    raise AssertionError(f"{name} runs no {chunk}-frame chunks")


def roll_to(policy, start: int, chunk: int = CHUNK, geo: KVGeometry | None = None,
            begin: bool = True):
    """Generate chunks until frame ``start``; return the cache and ``begin_chunk(start)``
    (None with ``begin=False``)."""
    cache = policy.make_cache(geo or geometry(), chunk)
    for c in range(0, start, chunk):
        num = min(chunk, start - c)
        positions = cache.begin_chunk(c, num)
        write_chunk(cache, list(range(c, c + num)), positions)
        cache.commit()
    return cache, (cache.begin_chunk(start, chunk) if begin else None)


def expected_kv(content: dict[int, float], mean: bool, pos: float, layer: int):
    """K (roped at ``pos``) and V a slot holding ``sum(w * frame)`` must carry."""
    k = sum(w * frame_kv(f, layer)[0].double() for f, w in content.items())
    v = sum(w * frame_kv(f, layer)[1].double() for f, w in content.items())
    if mean:  # moving-average slots: one token-mean vector, repeated on every token
        k = k.mean(dim=1, keepdim=True).expand(-1, N, -1, -1)
        v = v.mean(dim=1, keepdim=True).expand(-1, N, -1, -1)
    return rope_ref(k, [pos], HH, WW), v


def assert_entries_hold(cache, reference, tol: float = 1e-5) -> None:
    """Every held entry carries the reference content at the reference position (all layers)."""
    positions = cache.encoded_positions()
    assert positions == [e.pos for e in reference]
    for layer in range(LAYERS):
        for i, ref in enumerate(reference):
            k, v, _ = cache.entry_kv(layer, i)
            want_k, want_v = expected_kv(ref.content, ref.mean, ref.pos, layer)
            assert (k.double() - want_k).abs().max() < tol, (layer, i, ref)
            assert (v.double() - want_v).abs().max() < tol, (layer, i, ref)


def assert_allocates(policy, slots: int, start: int = 30) -> None:
    """``memory_bytes`` and a rollout's allocation are ``slots`` x (K + V + the 8 un-roped
    temporal channels) x layers x tokens x heads x 4 bytes, written out."""
    want = slots * LAYERS * 1 * N * H * (2 * D + 8) * 4
    assert policy.memory_bytes(geometry(), CHUNK) == want
    cache, _ = roll_to(policy, start)
    assert cache.nbytes() == want
