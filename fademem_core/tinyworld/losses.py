"""The tiny world model's training losses and noise laws (flow matching, velocity target).

Both training modes of :mod:`.loop` draw their noise here, in a fixed order from one
``torch.Generator``, so a run is reproducible from its seed:

* through the engine (memory in the loop): :func:`chunk_loss` for a noisy chunk against the
  memory as it stands, :func:`commit_chunk` for the clean context pass that writes it, and
  :func:`own_chunk` for the model's own sample committed instead of the truth;
* teacher forcing (one masked pass per clip or window): :func:`teacher_forcing_loss`, with
  :func:`memory_window` drawing the window and the far-past frames it sees.

The velocity target is ``v = noise - x0``; the sprite channels are weighted up
(``CHANNEL_WEIGHT``) because they cover few pixels, and a run may weight the texture up too
(:func:`channel_weight`).
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ..rollout.sampler import denoise_chunk, even_timesteps, timestep_schedule
from .forward import memory_teacher_forcing_mask
from .spec import CHUNK, SHIFT, warp
from .world import TEXTURE_CHANNELS

CONTEXT_NOISE = 0.1  # default top of the context noise (robustness to the model's own output)
# sprite channels are few pixels: weight them up so identity is learned, not just background
CHANNEL_WEIGHT = torch.tensor([1.0] * 6 + [4.0] * 10)
OWN_STEPS = 6  # Euler steps of the model's own chunks in the loop (the benchmark's setting)
# the share of training windows (teacher forcing) and DMD rollouts that start at frame 0: the
# first chunk, drawn from the prompt alone, is the hardest, and a uniform start seldom trains it
FIRST_WINDOW = 0.25


def noise_levels(gen: torch.Generator, batch: int) -> torch.Tensor:
    """One sigma per clip: 75 % shifted-uniform (the Euler grid's law), 25 % uniform."""
    u = torch.rand(batch, generator=gen, dtype=torch.float64)
    sig = torch.where(torch.rand(batch, generator=gen) < 0.75, warp(u), u)
    return sig.clamp(1e-3, 1.0).float()


def channel_weight(texture: float = 1.0) -> torch.Tensor:
    """The loss weight per channel: ``CHANNEL_WEIGHT`` with the texture planes at ``texture``.

    A texture weighted 1 (as the layout) is learned as a channel to denoise, not one to draw
    from the layout and the family: measured, the window teacher cleaned a noisy texture but
    drew chance from pure noise, and weighting it 4x made it start computing it (README)."""
    if not (math.isfinite(texture) and texture > 0):
        raise ValueError(f"texture weight must be a finite number > 0, got {texture!r}")
    w = CHANNEL_WEIGHT.clone()
    w[list(TEXTURE_CHANNELS)] = float(texture)
    return w


def weighted_velocity_error(v: torch.Tensor, noise: torch.Tensor, clean: torch.Tensor,
                            weight: torch.Tensor = CHANNEL_WEIGHT) -> torch.Tensor:
    """The mean squared error of velocity ``v`` against ``noise - clean``, channels weighted by
    ``weight [16]`` (normalised by its sum)."""
    err = (v - (noise - clean)) ** 2
    return (err.mean(dim=(0, 2, 3, 4)) * weight).sum() / weight.sum()


def chunk_loss(model, clip: torch.Tensor, text: torch.Tensor, cache, positions, gen: torch.Generator,
               weight: torch.Tensor = CHANNEL_WEIGHT) -> torch.Tensor:
    """Weighted velocity loss of one noisy chunk ``clip [B, 16, n, h, w]`` against the memory."""
    b = clip.shape[0]
    sig = noise_levels(gen, b)
    noise = torch.randn(clip.shape, generator=gen)
    s = sig[:, None, None, None, None]
    v = model.forward_chunk((1 - s) * clip + s * noise, sig * 1000.0, model.encode_text(text), cache,
                            positions, write=False)
    return weighted_velocity_error(v, noise, clip, weight)


@torch.no_grad()
def commit_chunk(model, clip: torch.Tensor, text: torch.Tensor, cache, positions, gen: torch.Generator,
                 context_noise: float = CONTEXT_NOISE) -> None:
    """The clean context pass: write the ground-truth chunk (lightly noised, see
    :func:`_context_noise`) into the memory."""
    sig = _context_noise(gen, (clip.shape[0],), context_noise)
    s = sig[:, None, None, None, None]
    x = (1 - s) * clip + s * torch.randn(clip.shape, generator=gen)
    model.forward_chunk(x, sig * 1000.0, model.encode_text(text), cache, positions, write=True)
    cache.commit()


@torch.no_grad()
def own_chunk(model, like: torch.Tensor, text: torch.Tensor, cache, positions, gen: torch.Generator) -> torch.Tensor:
    """The model's own sample of a chunk shaped ``like`` (Euler, OWN_STEPS) against the memory."""
    times = timestep_schedule(even_timesteps(OWN_STEPS), SHIFT)
    x = torch.randn(like.shape, generator=gen)
    return denoise_chunk(model, x, model.encode_text(text), cache, positions, times, euler=True).float()


def _context_noise(gen: torch.Generator, shape: tuple[int, ...], top: float = CONTEXT_NOISE) -> torch.Tensor:
    """Per-frame (or per-chunk) context noise: uniform up to ``top``, exactly 0 for 30 %."""
    csig = torch.rand(*shape, generator=gen) * top
    return torch.where(torch.rand(*shape, generator=gen) < 0.3, torch.zeros_like(csig), csig)


def teacher_forcing_loss(model, clips: torch.Tensor, text: torch.Tensor, gen: torch.Generator,
                         memory: torch.Tensor | None = None, start: int = 0,
                         memory_positions: Sequence[int] = (), corrupt: float = 0.0,
                         context_noise: float = CONTEXT_NOISE, weight: torch.Tensor = CHANNEL_WEIGHT) -> torch.Tensor:
    """Weighted velocity loss of every chunk of ``clips`` at once (the engine's masked forward).

    Same noise laws as the in-loop walk (one sigma per chunk, light context noise up to
    ``context_noise``), but the whole clip is one differentiable pass, gradients reaching the
    context's keys and values: the sample-efficient way to first learn to render and to copy
    from the recent past.
    ``clips`` may be a window starting at latent frame ``start`` of longer videos, with
    ``memory [B, 16, K, h, w]``: K clean frames of the far past at ``memory_positions`` that
    every chunk of the window sees (:func:`~.forward.memory_teacher_forcing_mask`), so relative
    distances up to the whole video are trained at the price of a short window.
    ``corrupt``: the share of chunks whose context copy is the model's own one-step estimate
    (:func:`_own_estimates`) instead of the truth, the targets staying the truth: a model that
    only copies its context learns to copy its own errors; this one learns to correct them.
    ``weight``: the loss weight per channel (:func:`channel_weight`).
    """
    b, _, f, _, _ = clips.shape
    k = 0 if memory is None else memory.shape[2]
    if len(memory_positions) != k:
        raise ValueError(f"need {k} memory positions, got {len(memory_positions)}")
    nch = -(-f // CHUNK)
    sig = noise_levels(gen, b * nch).reshape(b, nch).repeat_interleave(CHUNK, 1)[:, :f]
    csig = _context_noise(gen, (b, nch), context_noise).repeat_interleave(CHUNK, 1)[:, :f]
    noise = torch.randn(clips.shape, generator=gen)
    s, cs = sig[:, None, :, None, None], csig[:, None, :, None, None]
    context = clips
    past: list[torch.Tensor] = []
    if k:
        msig = _context_noise(gen, (b, k), context_noise)
        ms = msig[:, None, :, None, None]
        past = [(1 - ms) * memory + ms * torch.randn(memory.shape, generator=gen)]
    positions = [float(p) for p in memory_positions] + list(range(start, start + f)) * 2
    mask = memory_teacher_forcing_mask(k, f, CHUNK)
    text_kv = model.encode_text(text)
    ts = torch.cat(([msig] if k else []) + [csig, sig], 1) * 1000.0
    if corrupt > 0:
        own = _own_estimates(model, clips, past, text_kv, positions, mask, gen)
        pick = (torch.rand(b, nch, generator=gen) < corrupt).repeat_interleave(CHUNK, 1)[:, :f]
        context = torch.where(pick[:, None, :, None, None], own, clips)
    clean = (1 - cs) * context + cs * torch.randn(clips.shape, generator=gen)
    x = torch.cat(past + [clean, (1 - s) * clips + s * noise], 2)
    v = model.forward_masked(x, ts, text_kv, positions, mask)[:, :, k + f:]
    return weighted_velocity_error(v, noise, clips, weight)


@torch.no_grad()
def _own_estimates(model, clips, past, text_kv, positions, mask, gen) -> torch.Tensor:
    """The model's one-step estimate of every chunk from a noisy copy (sigma 0.3-0.9 per chunk)
    given the true context: blurred, slightly wrong frames like the ones a rollout feeds back."""
    b, _, f, _, _ = clips.shape
    nch = -(-f // CHUNK)
    sig = (0.3 + 0.6 * torch.rand(b, nch, generator=gen)).repeat_interleave(CHUNK, 1)[:, :f]
    s = sig[:, None, :, None, None]
    noisy = (1 - s) * clips + s * torch.randn(clips.shape, generator=gen)
    k = sum(p.shape[2] for p in past)
    ts = torch.cat([torch.zeros(b, k + f), sig], 1) * 1000.0
    v = model.forward_masked(torch.cat(past + [clips, noisy], 2), ts, text_kv, positions, mask)[:, :, k + f:]
    return noisy - s * v


def memory_window(rng: np.random.Generator, frames: int, window: int, memory: int,
                  first: float = FIRST_WINDOW) -> tuple[int, list[int]]:
    """A chunk-aligned window start in a clip of ``frames`` and up to ``memory`` sorted frames
    of the past before it (uniformly drawn).  A share ``first`` of the windows start at frame 0
    (at ``FIRST_WINDOW`` the first chunk, generated from the prompt alone, is 1 in 4 trained
    chunks, not 1 in 80)."""
    starts = (frames - window) // CHUNK + 1
    start = 0 if rng.random() < first else int(rng.integers(starts)) * CHUNK
    return start, past_frames(rng, start, memory)


def past_frames(rng: np.random.Generator, start: int, memory: int) -> list[int]:
    """Up to ``memory`` sorted distinct frames of ``0 .. start`` (uniformly drawn): the far past
    a window starting at ``start`` sees."""
    k = min(memory, start)
    return sorted(int(i) for i in rng.choice(start, size=k, replace=False)) if k else []
