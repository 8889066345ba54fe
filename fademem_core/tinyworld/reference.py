"""A slow, cache-free reference rollout: full-sequence masked forwards and a written-out Euler.

Every step recomputes the whole history under the block-causal mask
(:meth:`~fademem_core.model.CausalWan.forward_masked`), which is exactly what a full (never
evicting) KV cache with absolute positions computes.  It checks the engine's cached Euler
rollout on the trained model, independently of the cache and of ``generate``.
"""
from __future__ import annotations

import torch

from ..model.causal_wan import CausalWan
from .spec import CHUNK, SHIFT


def _rollout_mask(ctx: int, chunk: int, n: int) -> torch.Tensor:
    """Mask over ``[ctx clean frames ; n noisy frames]``: clean block-causal, noisy sees all."""
    f = ctx + n
    c = torch.arange(ctx) // chunk
    m = torch.zeros(f, f, dtype=torch.bool)
    m[:ctx, :ctx] = c[:, None] >= c[None, :]
    m[ctx:, :] = True
    return m


@torch.no_grad()
def reference_rollout(
    model: CausalWan,
    text: torch.Tensor,
    num_frames: int,
    steps: int,
    seed: int = 0,
    shift: float = SHIFT,
    chunk: int = CHUNK,
    size: int = 8,
    prefix: torch.Tensor | None = None,
) -> torch.Tensor:
    """Latents ``[B, 16, num_frames, size, size]``: Euler over ``steps`` levels per chunk.

    Levels: ``u_i = 1 - i / steps``, ``sigma_i = shift u / (1 + (shift - 1) u)``, then 0;
    ``x <- x + (sigma_{i+1} - sigma_i) * v(x, 1000 sigma_i)``.  Noise: one draw per chunk from
    a CPU generator seeded with ``seed`` (the engine's order).  ``prefix [B, 16, P, size, size]``
    (P a multiple of ``chunk``): given frames the rollout continues from.
    """
    if num_frames < 1 or num_frames % chunk:
        raise ValueError(f"num_frames must be a positive multiple of {chunk}, got {num_frames!r}")
    gen = torch.Generator().manual_seed(seed)
    b = text.shape[0]
    u = [1 - i / steps for i in range(steps)]
    sig = [shift * x / (1 + (shift - 1) * x) for x in u] + [0.0]
    kv = model.encode_text(text)
    frames = torch.zeros(b, 16, 0, size, size) if prefix is None else prefix.clone()
    for start in range(frames.shape[2], num_frames, chunk):
        x = torch.randn(b, 16, chunk, size, size, generator=gen)
        ctx = frames.shape[2]
        mask = _rollout_mask(ctx, chunk, chunk)
        pos = list(range(ctx)) + list(range(start, start + chunk))
        for i in range(steps):
            ts = torch.cat([torch.zeros(b, ctx), torch.full((b, chunk), sig[i] * 1000.0)], dim=1)
            v = model.forward_masked(torch.cat([frames, x], 2), ts, kv, pos, mask)[:, :, ctx:]
            x = x + (sig[i + 1] - sig[i]) * v
        frames = torch.cat([frames, x], 2)
    return frames
