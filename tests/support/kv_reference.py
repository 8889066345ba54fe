"""Independent reference math for the KV-memory tests (not the code under test).

RoPE here is written with complex numbers in float64 straight from the definition (pairs of
adjacent channels, temporal axis first, inverse frequencies 10000**(-2j/d_axis)); attention is
softmax(q k^T / sqrt(D)) v written out directly.
"""
from __future__ import annotations

import torch

# channels per axis for the head sizes the tests use (Wan: temporal gets the remainder)
AXES = {12: (4, 4, 4), 24: (8, 8, 8), 32: (12, 10, 10), 128: (44, 42, 42)}


def _angles(pos: torch.Tensor, channels: int) -> torch.Tensor:
    j = torch.arange(channels // 2, dtype=torch.float64)
    return pos[:, None].double() * (10000.0 ** (-2.0 * j / channels))[None, :]


def rope_ref(x: torch.Tensor, t_pos, h: int, w: int, axes=("t", "h", "w")) -> torch.Tensor:
    """Rotate ``x [B, F*h*w, H, D]`` by the selected axes at frame positions ``t_pos``."""
    d = x.shape[-1]
    dt, dh, dw = AXES[d]
    f = len(t_pos)
    grid_t = torch.tensor(t_pos, dtype=torch.float64).repeat_interleave(h * w)
    grid_h = torch.arange(h, dtype=torch.float64).repeat_interleave(w).repeat(f)
    grid_w = torch.arange(w, dtype=torch.float64).repeat(f * h)
    ang = torch.cat([
        _angles(grid_t, dt) * ("t" in axes),
        _angles(grid_h, dh) * ("h" in axes),
        _angles(grid_w, dw) * ("w" in axes),
    ], dim=-1)  # [S, D/2]
    xc = torch.view_as_complex(x.double().reshape(*x.shape[:-1], d // 2, 2).contiguous())
    out = xc * torch.polar(torch.ones_like(ang), ang)[None, :, None, :]
    return torch.view_as_real(out).reshape(x.shape).to(x.dtype)


def attention_ref(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``[B, Sq, H, D]`` x ``[B, Sk, H, D]`` -> ``[B, Sq, H, D]``, no mask."""
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) / q.shape[-1] ** 0.5
    return torch.einsum("bhqk,bkhd->bqhd", scores.softmax(dim=-1), v)
