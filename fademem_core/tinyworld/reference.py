"""A slow, cache-free reference rollout built on the training forward.

Every chunk recomputes the whole history under the block-causal mask, which is exactly what a
full (never evicting) KV cache with absolute positions computes.  It is used to check the
trained model without the inference engine, and as an independent reference for it.
"""
from __future__ import annotations

import torch

from .forward import masked_velocity
from .train import CHUNK, sampler_sigmas


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
    transformer: torch.nn.Module,
    text: torch.Tensor,
    num_frames: int,
    seed: int = 0,
    chunk: int = CHUNK,
    size: int = 8,
) -> torch.Tensor:
    """Latents ``[B, 16, num_frames, size, size]`` sampled chunk by chunk (few-step schedule)."""
    if num_frames < 1 or num_frames % chunk:
        raise ValueError(f"num_frames must be a positive multiple of {chunk}, got {num_frames!r}")
    gen = torch.Generator().manual_seed(seed)
    b = text.shape[0]
    sig = sampler_sigmas().tolist()
    frames = torch.zeros(b, 16, 0, size, size)
    for start in range(0, num_frames, chunk):
        x = torch.randn(b, 16, chunk, size, size, generator=gen)
        ctx = frames.shape[2]
        mask = _rollout_mask(ctx, chunk, chunk)
        pos = list(range(ctx)) + list(range(start, start + chunk))
        for i, s in enumerate(sig):
            ts = torch.cat([torch.zeros(b, ctx), torch.full((b, chunk), s * 1000.0)], dim=1)
            v = masked_velocity(transformer, torch.cat([frames, x], 2), ts, text, pos, mask)[:, :, ctx:]
            x0 = x - s * v
            if i + 1 < len(sig):
                x = (1 - sig[i + 1]) * x0 + sig[i + 1] * torch.randn(x0.shape, generator=gen)
        frames = torch.cat([frames, x0], 2)
    return frames
