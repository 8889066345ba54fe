"""The differentiable training forward: teacher forcing with a block-causal mask.

One full-sequence pass over ``[clean frames ; noisy frames]`` of a clip (``2F`` frames):

* clean frame of chunk ``c`` attends to clean frames of chunks ``<= c`` (what the inference
  engine's clean/"context" pass writes into the KV memory);
* noisy frame of chunk ``c`` attends to clean chunks ``< c`` and to its own noisy chunk (what a
  denoising step sees: the memory plus itself).

Frame ``i`` gets temporal RoPE position ``i`` in both halves, so a noisy chunk sees its clean
predecessors at exactly the distances it will see them at in a rollout.  The forward IS the
inference engine's (:func:`fademem_core.model.causal_wan.forward_masked`: the same Wan block
code), run on a trainable transformer with the text path differentiable.
"""
from __future__ import annotations

from typing import Sequence

import torch

from ..model.causal_wan import forward_masked, text_kv


def teacher_forcing_mask(frames: int, chunk: int) -> torch.Tensor:
    """Frame-level boolean mask ``[2F, 2F]`` (True = may attend) over ``[clean ; noisy]``."""
    if frames < 1 or chunk < 1:
        raise ValueError(f"frames and chunk must be >= 1, got {frames!r}, {chunk!r}")
    c = torch.arange(frames) // chunk
    clean_clean = c[:, None] >= c[None, :]
    noisy_clean = c[:, None] > c[None, :]
    noisy_noisy = c[:, None] == c[None, :]
    top = torch.cat([clean_clean, torch.zeros(frames, frames, dtype=torch.bool)], dim=1)
    bottom = torch.cat([noisy_clean, noisy_noisy], dim=1)
    return torch.cat([top, bottom], dim=0)


def memory_teacher_forcing_mask(memory: int, frames: int, chunk: int) -> torch.Tensor:
    """Mask ``[K + 2F, K + 2F]`` over ``[memory ; clean ; noisy]``: K clean frames of the far
    past (sorted by time) ahead of a teacher-forced window of ``frames``.

    Memory frames attend to themselves and earlier memory frames (causal); every frame of the
    window attends to all memory frames and, among the window, follows
    :func:`teacher_forcing_mask`.  What a bounded memory shows a chunk: a few old entries at
    their own distances, then the recent past.
    """
    if memory < 0:
        raise ValueError(f"memory must be >= 0, got {memory!r}")
    window = teacher_forcing_mask(frames, chunk)
    out = torch.zeros(memory + 2 * frames, memory + 2 * frames, dtype=torch.bool)
    out[:memory, :memory] = torch.ones(memory, memory, dtype=torch.bool).tril()
    out[memory:, :memory] = True
    out[memory:, memory:] = window
    return out


def masked_velocity(
    transformer: torch.nn.Module,
    x: torch.Tensor,
    timesteps: torch.Tensor,
    text: torch.Tensor,
    positions: Sequence[float],
    frame_mask: torch.Tensor,
) -> torch.Tensor:
    """Velocity ``[B, 16, F, h, w]`` for latents ``x`` with per-frame ``timesteps [B, F]``.

    ``text`` is the raw prompt embedding ``[B or 1, L, text_dim]``; ``frame_mask [F, F]`` is
    expanded to tokens (every token of a frame shares its frame's row/column).
    """
    tr = transformer
    cfg = tr.config
    b, f = x.shape[0], x.shape[2]
    pt = int(cfg["patch_size"][0])
    if pt != 1:
        raise ValueError(f"temporal patch size must be 1, got {pt}")
    if timesteps.shape != (b, f):
        raise ValueError(f"timesteps must be [{b}, {f}], got {tuple(timesteps.shape)}")
    if len(positions) != f or frame_mask.shape != (f, f):
        raise ValueError(f"need {f} positions and a [{f}, {f}] mask")
    return forward_masked(tr, x, timesteps, text_kv(tr, text), positions, frame_mask)
