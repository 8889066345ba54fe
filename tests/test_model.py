"""CausalWan: the chunk forward against diffusers' own forward, numerics, validation."""
from __future__ import annotations

import pytest
import torch

from fademem_core import tiny_model
from fademem_core.model.causal_wan import CausalWan, TextKV
from fademem_core.rope import axis_dims


class PassThroughLayer:
    """A memory-less cache layer: the chunk attends to itself only (records what it got)."""

    def __init__(self) -> None:
        self.calls: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor, bool]] = []

    def attend(self, k, v, k_temporal_raw, write):
        self.calls.append((k, v, k_temporal_raw, write))
        return k, v


class PassThroughCache:
    def __init__(self, layers: int) -> None:
        self.layers = [PassThroughLayer() for _ in range(layers)]


def _diffusers(model: CausalWan, x, t, text):
    with torch.no_grad():
        return model.transformer(x, t, text, return_dict=False)[0]


def test_chunk_forward_matches_diffusers_forward(model):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 16, 3, 8, 8, generator=g)
    text = torch.randn(2, 7, 32, generator=g)
    t = torch.tensor([937.5, 400.0])
    ours = model.forward_chunk(x, t, model.encode_text(text), PassThroughCache(2), [0.0, 1.0, 2.0], write=False)
    ref = _diffusers(model, x, t, text)
    assert ours.shape == x.shape and ours.dtype == torch.float32
    assert (ours - ref).abs().max() <= 1e-5
    assert ref.abs().max() > 0.1  # not a trivially small output


def test_per_frame_timesteps_match_diffusers_per_token(model):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 16, 3, 8, 8, generator=g)
    text = torch.randn(1, 4, 32, generator=g)
    per_frame = torch.tensor([[0.0, 250.0, 1000.0]])
    ours = model.forward_masked(x, per_frame, model.encode_text(text), [0.0, 1.0, 2.0])
    ref = _diffusers(model, x, per_frame.repeat_interleave(16, 1), text)
    assert (ours - ref).abs().max() <= 1e-5


def test_scalar_timestep_equals_batch_timestep(model):
    x = torch.randn(2, 16, 1, 8, 8)
    tk = model.encode_text(torch.randn(2, 3, 32))
    a = model.forward_masked(x, 500.0, tk, [0.0])
    b = model.forward_masked(x, torch.tensor([500.0, 500.0]), tk, [0.0])
    assert torch.equal(a, b)


def test_rope_is_relative_and_follows_float_positions(model):
    """A chunk attending only to itself is invariant to a common (even fractional) shift."""
    x = torch.randn(1, 16, 3, 8, 8)
    tk = model.encode_text(torch.randn(1, 3, 32))
    base = model.forward_masked(x, 600.0, tk, [0.0, 1.0, 2.0])
    shifted = model.forward_masked(x, 600.0, tk, [10.5, 11.5, 12.5])
    squeezed = model.forward_masked(x, 600.0, tk, [0.0, 0.5, 1.0])
    assert (base - shifted).abs().max() <= 1e-4
    assert (base - squeezed).abs().max() > 1e-3


def test_cache_receives_raw_temporal_channels_and_write_flag(model):
    x = torch.randn(1, 16, 2, 8, 8)
    tk = model.encode_text(torch.randn(1, 3, 32))
    cache = PassThroughCache(2)
    model.forward_chunk(x, 0.0, tk, cache, [4.0, 5.0], write=True)
    tc = axis_dims(model.head_dim)[0]
    for layer in cache.layers:
        (k, v, k_raw, write), = layer.calls
        assert write is True
        assert k.shape == v.shape == (1, 32, model.heads, model.head_dim)
        assert k_raw.shape == (1, 32, model.heads, tc)
        # height/width channels are not touched by the temporal raw copy: rotating raw by the
        # frame's temporal angle reproduces the roped temporal channels
        pos = torch.tensor([4.0, 5.0], dtype=torch.float64).repeat_interleave(16)
        ang = pos[:, None] * (10000.0 ** (-torch.arange(0, tc, 2, dtype=torch.float64) / tc))[None]
        c, s = ang.cos().float()[:, None], ang.sin().float()[:, None]
        x1, x2 = k_raw[..., 0::2], k_raw[..., 1::2]
        assert torch.allclose(k[..., 0:tc:2], x1 * c - x2 * s, atol=1e-5)
        assert torch.allclose(k[..., 1:tc:2], x1 * s + x2 * c, atol=1e-5)


def test_text_kv_computed_once_and_broadcasts(model):
    text = torch.randn(1, 5, 32)
    tk = model.encode_text(text)
    assert isinstance(tk, TextKV) and len(tk.keys) == model.num_layers
    assert tk.keys[0].shape == (1, model.heads, 5, model.head_dim)
    assert tk.nbytes() == 2 * 2 * 5 * 32 * 4
    x = torch.randn(2, 16, 1, 8, 8)
    a = model.forward_masked(x, 100.0, tk, [0.0])
    b = model.forward_masked(x, 100.0, model.encode_text(text.expand(2, -1, -1)), [0.0])
    assert (a - b).abs().max() <= 1e-6


def test_bf16_keeps_precision_critical_parts_in_fp32():
    m = tiny_model(seed=0).to(dtype=torch.bfloat16)
    tr = m.transformer
    assert tr.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16
    assert tr.patch_embedding.weight.dtype == torch.bfloat16
    for p in (tr.condition_embedder.time_embedder.linear_1.weight, tr.condition_embedder.time_proj.weight,
              tr.blocks[0].scale_shift_table, tr.scale_shift_table, tr.blocks[0].norm2.weight,
              tr.blocks[0].attn1.norm_q.weight):
        assert p.dtype == torch.float32
    ref = tiny_model(seed=0)
    x = torch.randn(1, 16, 3, 8, 8)
    text = torch.randn(1, 4, 32)
    out = m.forward_masked(x, 500.0, m.encode_text(text), [0.0, 1.0, 2.0])
    out32 = ref.forward_masked(x, 500.0, ref.encode_text(text), [0.0, 1.0, 2.0])
    assert torch.isfinite(out).all()
    rel = (out - out32).norm() / out32.norm()
    assert rel < 0.05


def test_geometry(model):
    g = model.geometry(batch=2, height=64, width=96)
    assert (g.num_layers, g.batch, g.tokens_per_frame, g.num_heads, g.head_dim) == (2, 2, 24, 2, 16)
    assert g.bytes_per_frame() == 2 * 2 * 2 * 24 * 32 * 4
    assert model.latent_grid(480, 832) == (30, 52)  # 1560 tokens per latent frame


@pytest.mark.parametrize("height,width", [(60, 64), (64, 0), (-16, 64)])
def test_geometry_rejects_bad_sizes(model, height, width):
    with pytest.raises(ValueError, match="multiples of 16"):
        model.geometry(1, height, width)


def test_forward_validation(model):
    tk = model.encode_text(torch.randn(1, 3, 32))
    x = torch.randn(1, 16, 3, 8, 8)
    with pytest.raises(ValueError, match="positions"):
        model.forward_chunk(x, 0.0, tk, PassThroughCache(2), [0.0, 1.0], write=False)
    with pytest.raises(ValueError, match="layers"):
        model.forward_chunk(x, 0.0, tk, PassThroughCache(3), [0.0, 1.0, 2.0], write=False)
    with pytest.raises(ValueError, match="text must be"):
        model.encode_text(torch.randn(1, 3, 31))
    with pytest.raises(ValueError, match="x must be"):
        model.forward_masked(torch.randn(1, 4, 3, 8, 8), 0.0, tk, [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="timestep"):
        model.forward_masked(x, torch.zeros(1, 2), tk, [0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="text batch"):
        model.forward_masked(torch.randn(3, 16, 1, 8, 8), 0.0, model.encode_text(torch.randn(2, 3, 32)), [0.0])


def test_real_1_3b_geometry_without_allocating():
    """Wan2.1-T2V-1.3B built on the meta device: 274 MiB of bf16 K/V per latent frame at 480x832."""
    from fademem_core.model.loading import build_transformer

    cfg = dict(num_layers=30, num_attention_heads=12, attention_head_dim=128, ffn_dim=8960,
               text_dim=4096, freq_dim=256)
    m = CausalWan(build_transformer(cfg, device="meta")).to(dtype=torch.bfloat16)
    assert (m.num_layers, m.heads, m.head_dim, m.text_dim) == (30, 12, 128, 4096)
    g = m.geometry(1, 480, 832)
    assert g.tokens_per_frame == 1560
    assert g.bytes_per_frame() == 2 * 30 * 1560 * 12 * 128 * 2
    assert round(g.bytes_per_frame() / 2**20) == 274


def test_umt5_width_text_is_zero_padded_to_512():
    m = tiny_model(seed=0, text_dim=4096)
    short = torch.randn(1, 7, 4096)
    padded = torch.cat([short, torch.zeros(1, 505, 4096)], dim=1)
    a, b = m.encode_text(short), m.encode_text(padded)
    assert a.keys[0].shape[2] == 512
    assert all(torch.equal(x, y) for x, y in zip(a.keys + a.values, b.keys + b.values))
    assert tiny_model(seed=0).encode_text(torch.randn(1, 7, 32)).keys[0].shape[2] == 7


def test_inputs_on_another_device_run_on_the_model_device():
    """Latents handed over on the CPU (as a user or node may) while the weights live elsewhere:
    the rotary table and the frame mask must follow the model, not the input.  The meta device
    stands in for CUDA here (a CPU/meta mix fails the same way a CPU/CUDA mix does)."""
    m = tiny_model(seed=0).to("meta")
    x = torch.randn(1, 16, 2, 8, 8)  # CPU
    tk = m.encode_text(torch.randn(1, 3, 32))
    assert tk.keys[0].device.type == "meta"
    causal = torch.tensor([[True, False], [True, True]])
    out = m.forward_masked(x, 500.0, tk, [0.0, 1.0], frame_mask=causal)
    assert out.device.type == "meta" and out.shape == x.shape
    out = m.forward_chunk(x, torch.tensor([250.0]), tk, PassThroughCache(2), [3.0, 4.0], write=False)
    assert out.device.type == "meta" and out.shape == x.shape


def test_timestep_sinusoid_is_wans_float64_formula():
    """[cos | sin](t * 10000^(-j/half)) in float64 (Wan's sinusoidal_embedding_1d), then float32;
    diffusers' float32 Timesteps is measurably further from it at large t."""
    import math

    from diffusers.models.embeddings import Timesteps

    from fademem_core.model.causal_wan import timestep_sinusoid

    dim, half = 32, 16
    ts = [0.0, 1.0, 250.0, 625.0, 937.5, 1000.0]
    want = torch.tensor([[math.cos(t * 10000.0 ** (-j / half)) for j in range(half)]
                         + [math.sin(t * 10000.0 ** (-j / half)) for j in range(half)] for t in ts],
                        dtype=torch.float64)
    got = timestep_sinusoid(torch.tensor(ts), dim)
    assert got.dtype == torch.float32 and got.shape == (len(ts), dim)
    assert (got.double() - want).abs().max() < 1e-7  # only the final rounding to float32
    fp32 = Timesteps(dim, flip_sin_to_cos=True, downscale_freq_shift=0)(torch.tensor(ts))
    assert (fp32.double() - want).abs().max() > 1e-6
