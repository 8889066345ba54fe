"""RoPE re-encoding: rotate/unrotate round trips and re-encoding equals rotating directly."""
from __future__ import annotations

import pytest
import torch

from fademem_core.memory.cache import SlotStorage
from fademem_core.memory.policies import KVGeometry, SlidingWindow
from fademem_core.rope import apply_rotary, axis_dims, grid_cos_sin, rotate_temporal_, \
    temporal_cos_sin
from tests.support.kv_reference import rope_ref

HH, WW = 2, 3


@pytest.mark.parametrize("head_dim", [24, 128])
def test_axis_split(head_dim):
    from tests.support.kv_reference import AXES
    assert axis_dims(head_dim) == AXES[head_dim]


@pytest.mark.parametrize("positions", [[0.0, 1.0, 2.0], [0.5, 7.25, 3000.75]])
def test_grid_table_matches_direct_formula(positions):
    x = torch.randn(1, len(positions) * HH * WW, 2, 128, dtype=torch.float64)
    cos, sin = grid_cos_sin(positions, HH, WW, 128)
    got = apply_rotary(x.float(), cos, sin).double()
    assert (got - rope_ref(x, positions, HH, WW)).abs().max() < 1e-5


def test_temporal_rotate_unrotate_roundtrip():
    x = torch.randn(1, 4 * HH * WW, 3, 128)
    keep = x.clone()
    cos, sin = temporal_cos_sin([3.0, 11.5, 0.25, 1000.0], 128)
    cos, sin = cos.repeat_interleave(HH * WW, 0), sin.repeat_interleave(HH * WW, 0)
    rotate_temporal_(x, cos, sin)
    assert (x[..., :44] - keep[..., :44]).abs().max() > 1e-2  # it did rotate
    assert torch.equal(x[..., 44:], keep[..., 44:])  # height/width untouched
    rotate_temporal_(x, cos, -sin)
    assert (x - keep).abs().max() < 1e-5


def test_shift_composes():
    """Rotating by a then by b equals rotating by a + b (what moving an entry relies on)."""
    x = torch.randn(1, HH * WW, 2, 128, dtype=torch.float64)
    twice = rope_ref(rope_ref(x, [2.5], HH, WW, axes=("t",)), [4.0], HH, WW, axes=("t",))
    once = rope_ref(x, [6.5], HH, WW, axes=("t",))
    assert (twice - once).abs().max() < 1e-12
    c1, s1 = temporal_cos_sin([2.5], 128)
    c2, s2 = temporal_cos_sin([4.0], 128)
    y = x.float()
    rotate_temporal_(y, c1.expand(HH * WW, -1), s1.expand(HH * WW, -1))
    rotate_temporal_(y, c2.expand(HH * WW, -1), s2.expand(HH * WW, -1))
    assert (y.double() - once).abs().max() < 1e-5


@pytest.mark.parametrize("position", [0.0, 5.0, 17.0, 2.75, 4096.0])
def test_storage_encode_equals_direct_rotation(position):
    geo = KVGeometry(num_layers=2, batch=1, tokens_per_frame=HH * WW, num_heads=2, head_dim=128)
    storage = SlotStorage(geo, 2)
    key = torch.randn(2, 1, HH * WW, 2, 128)  # [L, B, N, H, D], temporal channels un-roped
    storage.k[:, :, 1].copy_(key)
    storage.kt[:, :, 1].copy_(key[..., :44])
    cos, sin = temporal_cos_sin([position], 128)
    storage.encode(1, cos[0], sin[0])
    for layer in range(2):
        want = rope_ref(key[layer], [position], HH, WW, axes=("t",))
        assert (storage.k[layer, :, 1] - want).abs().max() < 1e-5
    assert torch.equal(storage.k[:, :, 0], torch.zeros_like(storage.k[:, :, 0]))


def test_packed_reencoding_equals_key_rotated_there_directly():
    """A frame roped at absolute t, later re-encoded at packed index i == rope at i directly."""
    d, n = 128, HH * WW
    geo = KVGeometry(num_layers=1, batch=1, tokens_per_frame=n, num_heads=2, head_dim=d)
    cache = SlidingWindow(window=5, positions="packed").make_cache(geo, chunk=2)
    raw = {}
    for start in range(0, 10, 2):
        positions = cache.begin_chunk(start, 2)
        k_raw = torch.randn(1, 2 * n, 2, d)
        for j in range(2):
            raw[start + j] = k_raw[:, j * n:(j + 1) * n]
        k = rope_ref(k_raw, positions, HH, WW)
        cache.layers[0].attend(k, torch.randn_like(k), k_raw[..., :44], write=True)
        cache.commit()
    # window 5, chunk 2 -> 3 entries: frames 7, 8, 9 now at packed positions 0, 1, 2
    assert cache.exact_frames() == [7, 8, 9]
    assert cache.encoded_positions() == [0.0, 1.0, 2.0]
    for i, frame in enumerate([7, 8, 9]):
        k_e, _, _ = cache.entry_kv(0, i)
        assert (k_e - rope_ref(raw[frame], [float(i)], HH, WW)).abs().max() < 1e-5
