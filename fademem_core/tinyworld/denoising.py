"""Where does a window model draw the world, and where does it only clean its input?

DMD's teacher (:func:`~.distill.window_velocity`) must *draw* a background from the layout and
the prompt when the noise hides it.  Three instruments, all read against the world's truth:

* :func:`x0_errors`: the model's clean estimate of noised true windows, squared error per
  channel at each noise level.  A channel the model computes from the others (the texture
  from the layout channels 0-3 and the family) stays near the layout's error as the noise
  grows; a channel it can only denoise rises to its variance (0.5 for a cos wave).
* :func:`other_family` prompts: the same scenes with the next family named.  A model that
  reads the family from the prompt gets the texture wrong with them.
* :func:`sample_windows` from pure noise (Euler on the shifted grid) and
  :func:`channel_residuals`: the off-world residual of what it draws, per channel.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .distill import window_velocity
from .probes import channel_errors, read_frames
from .spec import warp
from .world import CHANNELS, NUM_FAMILIES, Scene, scene_prompt


@torch.no_grad()
def x0_errors(transformer: torch.nn.Module, clips: torch.Tensor, text: torch.Tensor,
              sigmas: tuple[float, ...], seed: int = 0) -> np.ndarray:
    """``[len(sigmas), 16]``: mean squared error per channel of the window model's clean estimate
    ``x - sigma * v`` of ``clips [B, 16, F, 8, 8]`` noised to each sigma (one seeded noise per
    sigma, drawn in order)."""
    gen = torch.Generator().manual_seed(seed)
    out = []
    for s in sigmas:
        if not 0.0 < s <= 1.0:
            raise ValueError(f"sigmas must be in (0, 1], got {s!r}")
        xt = (1 - s) * clips + s * torch.randn(clips.shape, generator=gen)
        x0 = xt - s * window_velocity(transformer, xt, torch.full((clips.shape[0],), float(s)), text)
        out.append(((x0 - clips) ** 2).mean(dim=(0, 2, 3, 4)).double().numpy())
    return np.stack(out)


def other_family(scenes: list[Scene], text_dim: int) -> torch.Tensor:
    """Prompts of ``scenes`` naming the next family (everything else as the scene's own)."""
    return torch.cat([scene_prompt(dataclasses.replace(s, family=(s.family + 1) % NUM_FAMILIES), text_dim)
                      for s in scenes])


@torch.no_grad()
def sample_windows(transformer: torch.nn.Module, text: torch.Tensor, frames: int, steps: int,
                   seed: int = 0) -> torch.Tensor:
    """Windows ``[B, 16, frames, 8, 8]`` drawn from pure noise by ``steps`` Euler steps of the
    window model, on the shifted sigma grid the tiny world trains for (:func:`~.spec.warp`)."""
    if steps < 1 or frames < 1:
        raise ValueError(f"steps and frames must be >= 1, got {steps!r}, {frames!r}")
    b = text.shape[0]
    x = torch.randn(b, CHANNELS, frames, 8, 8, generator=torch.Generator().manual_seed(seed))
    grid = warp(torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)).float()
    for i in range(steps):
        x = x + (grid[i + 1] - grid[i]) * window_velocity(transformer, x, grid[i].expand(b), text)
    return x


def channel_residuals(latents: torch.Tensor) -> np.ndarray:
    """``[16]``: the probes' off-world residual of ``latents [16, F, 8, 8]`` per channel (their
    mean over channels is the mean of :func:`~.probes.read_frames`' per-frame residual)."""
    return channel_errors(latents, read_frames(latents)).mean(axis=1)
