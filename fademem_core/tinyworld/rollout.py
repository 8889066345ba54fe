"""Ground-truth-primed rollouts of the tiny world model through the engine (benchmark protocol).

The memory is first built from a ground-truth prefix by clean context passes (exactly what the
sampler's clean pass writes for its own chunks), then the model continues chunk by chunk with
the sampler its weights are trained for (Euler for a flow model, few-step for a distilled one).  Every policy sees the same prefix and the same noise, so differences
between policies are differences of memory.  (The continuation issue's ``prefix=`` option of
``generate`` will do the same; this loop is the benchmark's own until it lands.)
"""
from __future__ import annotations

from typing import Callable

import torch

from ..checks import SAMPLERS, check_choice
from ..model.causal_wan import VAE_SPATIAL, CausalWan
from ..rollout.sampler import denoise_chunk, even_timesteps, timestep_schedule
from .spec import CHUNK, SAMPLER_STEPS, SHIFT


@torch.no_grad()
def primed_rollout(
    model: CausalWan,
    text: torch.Tensor,
    policy,
    prefix: torch.Tensor,
    num_frames: int,
    steps: int = SAMPLER_STEPS,
    shift: float = SHIFT,
    seed: int = 0,
    chunk: int = CHUNK,
    sampler: str = "euler",
    probe: Callable[[object, object], None] | None = None,
) -> torch.Tensor:
    """Latents ``[B, 16, num_frames, h, w]``: ``prefix [B, 16, P, h, w]`` then the model's frames.

    ``P`` must be a multiple of ``chunk`` (0 allowed: then this is ``generate(...,
    sampler=sampler, steps=even_timesteps(steps))``).  Noise: one CPU generator seeded with
    ``seed``, one draw ``[B, 16, n, h, w]`` per generated chunk (and, few-step, one more per
    step after the first).  ``probe(kv, cache)``, when given, is called once the prefix is
    committed, before the first generated chunk: it may read the memory with ``write=False``
    passes (the benchmark's forced-return lookup) and must not commit.
    """
    if prefix.ndim != 5 or prefix.shape[1] != model.in_channels:
        raise ValueError(f"prefix must be [B, {model.in_channels}, P, h, w], got {tuple(prefix.shape)}")
    b, c, p, h, w = prefix.shape
    if p % chunk or p > num_frames:
        raise ValueError(f"prefix length must be a multiple of {chunk} and <= num_frames {num_frames}, got {p}")
    if text.shape[0] != b:
        raise ValueError(f"text batch {text.shape[0]} does not match prefix batch {b}")
    euler = check_choice("sampler", sampler, SAMPLERS) == "euler"
    times = timestep_schedule(even_timesteps(steps), shift)
    geometry = model.geometry(b, h * VAE_SPATIAL, w * VAE_SPATIAL)  # pixels
    cache = policy.make_cache(geometry, chunk, max_frames=num_frames)
    gen = torch.Generator().manual_seed(seed)
    out = torch.zeros(b, c, num_frames, h, w)
    out[:, :, :p] = prefix
    kv = model.encode_text(text.to(model.device))
    try:
        commit_true_past(model, kv, cache, prefix, chunk)
        if probe is not None:
            probe(kv, cache)
        for start in range(p, num_frames, chunk):
            n = min(chunk, num_frames - start)
            positions = cache.begin_chunk(start, n)
            x = torch.randn(b, c, n, h, w, generator=gen).to(model.device)
            x0 = denoise_chunk(model, x, kv, cache, positions, times, euler,
                               lambda: torch.randn(b, c, n, h, w, generator=gen).to(model.device))
            out[:, :, start:start + n] = x0.float().cpu()
            model.forward_chunk(x0, 0.0, kv, cache, positions, write=True)
            cache.commit()
    finally:
        cache.close()
    return out


@torch.no_grad()
def commit_true_past(model: CausalWan, kv, cache, frames: torch.Tensor, chunk: int = CHUNK) -> None:
    """Commit ``frames [B, 16, P, h, w]`` (``P`` a multiple of ``chunk``) to ``cache`` from frame
    0, chunk by chunk: one clean pass each, as the sampler's after a chunk's last step."""
    for start in range(0, frames.shape[2], chunk):
        positions = cache.begin_chunk(start, chunk)
        model.forward_chunk(frames[:, :, start:start + chunk].to(model.device), 0.0, kv, cache, positions,
                            write=True)
        cache.commit()
