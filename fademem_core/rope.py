"""Wan's 3-axis rotary position embedding, computed at float positions.

Wan splits a head of ``head_dim`` channels into rotation pairs of *adjacent* channels
(interleaved: channels 2j and 2j+1 form pair j).  The pairs are laid out temporal first, then
height, then width; for head_dim 128 that is 22 + 21 + 21 pairs (44 + 42 + 42 channels).

Angles are computed in float64 straight from float positions, so there is no 1024-row table,
fractional positions (FadeMem's consolidated centres) work and long videos never run out of
rows.  Rotations are applied in float32 and cast back to the input dtype.

Tensor layout used throughout: ``x`` is ``[..., S, H, D]`` (tokens, heads, head_dim) and
``cos``/``sin`` are ``[S, D // 2]`` (one angle per token and rotation pair).
"""
from __future__ import annotations

from typing import Sequence

import torch

THETA = 10000.0


def axis_dims(head_dim: int) -> tuple[int, int, int]:
    """Channels per axis ``(temporal, height, width)``, e.g. ``(44, 42, 42)`` for 128."""
    if head_dim <= 0 or head_dim % 2:
        raise ValueError(f"head_dim must be a positive even number, got {head_dim!r}")
    hw = 2 * (head_dim // 6)
    return head_dim - 2 * hw, hw, hw


def temporal_pairs(head_dim: int) -> int:
    """Number of temporal rotation pairs (22 for head_dim 128)."""
    return axis_dims(head_dim)[0] // 2


def inv_freq(axis_channels: int, theta: float = THETA) -> torch.Tensor:
    """Inverse frequencies ``theta**(-2j/d)`` of one axis, float64, ``[d // 2]``."""
    j = torch.arange(0, axis_channels, 2, dtype=torch.float64)
    return 1.0 / (theta ** (j / axis_channels))


def axis_angles(positions: Sequence[float] | torch.Tensor, axis_channels: int) -> torch.Tensor:
    """Angles ``[P, axis_channels // 2]`` (float64) for float ``positions``."""
    pos = torch.as_tensor(positions, dtype=torch.float64).reshape(-1, 1)
    return pos * inv_freq(axis_channels).reshape(1, -1)


def temporal_cos_sin(
    positions: Sequence[float] | torch.Tensor,
    head_dim: int,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin ``[P, temporal_pairs]`` (float32) of the temporal axis at ``positions``."""
    ang = axis_angles(positions, axis_dims(head_dim)[0])
    return ang.cos().float().to(device), ang.sin().float().to(device)


def grid_cos_sin(
    frame_positions: Sequence[float] | torch.Tensor,
    height: int,
    width: int,
    head_dim: int,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin ``[F * height * width, head_dim // 2]`` (float32) for a token grid.

    Tokens are ordered frame, then row, then column (Wan's patch order); frame ``f`` sits at
    temporal position ``frame_positions[f]`` (any float), rows and columns at 0, 1, 2, ...
    """
    dt, dh, dw = axis_dims(head_dim)
    at = axis_angles(frame_positions, dt)  # [F, dt/2]
    ah = axis_angles(range(height), dh)  # [h, dh/2]
    aw = axis_angles(range(width), dw)  # [w, dw/2]
    f = at.shape[0]
    ang = torch.cat(
        [
            at[:, None, None, :].expand(f, height, width, -1),
            ah[None, :, None, :].expand(f, height, width, -1),
            aw[None, None, :, :].expand(f, height, width, -1),
        ],
        dim=-1,
    ).reshape(f * height * width, -1)
    return ang.cos().float().to(device), ang.sin().float().to(device)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of ``x [..., S, H, D]`` by angles ``cos/sin [S, D // 2]``.

    ``D`` may be the full head or only its first ``2 * cos.shape[-1]`` channels' worth
    (``cos`` covers exactly ``D // 2`` pairs).  Returns a new tensor in ``x.dtype``.
    """
    xf = x.float().unflatten(-1, (-1, 2))
    x1, x2 = xf[..., 0], xf[..., 1]
    c = cos[:, None, :]
    s = sin[:, None, :]
    out = torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2)
    return out.to(x.dtype)


def rotate_temporal_(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """In place: rotate only the temporal channels of ``x [..., S, H, D]``.

    ``cos``/``sin`` are ``[S, temporal_pairs]``; height/width channels are left untouched.
    Un-rotating is rotating by the negative angle (pass ``-sin``).
    """
    tc = 2 * cos.shape[-1]
    x[..., :tc] = apply_rotary(x[..., :tc], cos, sin)
    return x


def rotate_into_(dst: torch.Tensor, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
    """In place: write ``x`` (interleaved pairs, ``[..., 2P]``) rotated by ``cos/sin [P]``
    (broadcast over ``x``'s leading dims) into ``dst`` (same shape, any float dtype).

    float32 ``dst``: computed in place without temporaries (the CPU hot path of re-encoding a
    memory key); reduced precision: computed in float32 and rounded once, exactly as
    :func:`apply_rotary` does.
    """
    x1, x2 = x[..., 0::2], x[..., 1::2]
    even, odd = dst[..., 0::2], dst[..., 1::2]
    if dst.dtype == torch.float32:
        torch.mul(x1, cos, out=even)
        even.addcmul_(x2, sin, value=-1.0)
        torch.mul(x1, sin, out=odd)
        odd.addcmul_(x2, cos)
    else:
        x1, x2 = x1.float(), x2.float()
        even.copy_(x1 * cos - x2 * sin)
        odd.copy_(x1 * sin + x2 * cos)
