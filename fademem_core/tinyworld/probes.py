"""Fixed analytic probes: read the world's state back from any latent frame.

They know only the channel layout of :mod:`.world` (never the model) and are exact on
rendered frames: the drift and the layout phases come from single Fourier coefficients, a
sprite's area from its footprint channel, its centre from the footprint's centroid (exact for
an integer sprite side) or, when it is cut by the frame border, from its visible width, and its
identity code from the code channels divided by the footprint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .world import (
    CHANNELS,
    CODE_CHANNELS,
    FAMILIES,
    MASK_CHANNELS,
    MASK_GAIN,
    MAX_SPRITES,
    NUM_CLASSES,
    REVEAL,
    SIZE,
    SPRITE_SIZE,
    FrameParams,
    render_params,
)

# a sprite whose visible area is below this fraction is "not visible" (identity not read)
VISIBLE = 0.25


@dataclass
class Reading:
    """What the probes read from frames ``[F]`` (slots ``S = 2``).

    ``params`` can be re-rendered (:meth:`render`), so ``residual`` measures how far a frame is
    from *any* frame of the world (0 for rendered frames, large for noise or blur).
    """

    params: FrameParams
    visibility: np.ndarray  # [F, S] area fraction inside the frame
    cls: np.ndarray  # [F, S] nearest class (-1 when not visible)
    detail: np.ndarray  # [F, S, 2] (nan while veiled: less than world.REVEAL in frame)
    residual: np.ndarray  # [F] mean squared error to the re-rendered frame

    @property
    def shift(self) -> np.ndarray:
        return self.params.shift

    @property
    def pos(self) -> np.ndarray:
        return self.params.pos

    def visible(self) -> np.ndarray:
        return self.visibility >= VISIBLE

    def revealed(self) -> np.ndarray:
        """``[F, S]``: where a sprite's detail is unveiled (and read)."""
        return self.visibility >= REVEAL


def _as_frames(latents: torch.Tensor) -> np.ndarray:
    z = latents.detach().cpu().double().numpy()
    if z.ndim == 3:
        z = z[:, None]
    if z.ndim != 4 or z.shape[0] != CHANNELS or z.shape[2:] != (SIZE, SIZE):
        raise ValueError(f"latents must be [16, F, {SIZE}, {SIZE}] (or [16, 8, 8]), got {tuple(latents.shape)}")
    return z


def _coeff(plane: np.ndarray, kx: float, ky: float) -> np.ndarray:
    """Fourier coefficient ``sum plane * exp(-i 2pi (kx x + ky y) / 8)`` per frame."""
    yy, xx = np.meshgrid(np.arange(SIZE), np.arange(SIZE), indexing="ij")
    basis = np.exp(-2j * math.pi * (kx * xx + ky * yy) / SIZE)
    return np.einsum("fyx,yx->f", plane, basis)


def read_frames(latents: torch.Tensor) -> Reading:
    """Probe every frame of one video ``[16, F, 8, 8]``."""
    z = _as_frames(latents)
    f = z.shape[1]
    # drift: (ch0 + i ch1) = exp(i 2pi (x - s)/8)  ->  coefficient at kx=1 is 64 exp(-i 2pi s/8)
    c = _coeff(z[0] + 1j * z[1], 1, 0)
    shift = np.mod(-np.angle(c) * SIZE / (2 * math.pi), SIZE)
    c = _coeff(z[2] + 1j * z[3], 0, 1)
    q = np.mod(-np.angle(c) * SIZE / (2 * math.pi), SIZE)
    # family: which candidate frequency pair carries the most texture energy
    energy = np.stack(
        [np.abs(_coeff(z[4], *fam[0])) + np.abs(_coeff(z[5], *fam[1])) for fam in FAMILIES], axis=1
    )
    family = energy.argmax(axis=1)
    fam = np.asarray(FAMILIES, dtype=np.float64)[family]  # [F, 2, 2]
    # cos(theta) has coefficient 32 exp(i r') at +k, with theta = 2pi(k.x - kx s - ky q)/8 + r
    phases = []
    for ch, k in ((4, 0), (5, 1)):
        kx, ky = fam[:, k, 0], fam[:, k, 1]
        coeffs = np.array([_coeff(z[ch][i : i + 1], kx[i], ky[i])[0] for i in range(f)])
        phases.append(np.mod(np.angle(coeffs) + 2 * math.pi * (kx * shift + ky * q) / SIZE, 2 * math.pi))
    r4, r5 = phases

    present = np.zeros((f, MAX_SPRITES), dtype=bool)
    pos = np.full((f, MAX_SPRITES, 2), np.nan)
    code = np.zeros((f, MAX_SPRITES, 4))
    visibility = np.zeros((f, MAX_SPRITES))
    cls = np.full((f, MAX_SPRITES), -1, dtype=np.int64)
    detail = np.full((f, MAX_SPRITES, 2), np.nan)
    grid = np.arange(SIZE) + 0.5
    for slot in range(MAX_SPRITES):
        m = np.clip(z[MASK_CHANNELS[slot]] / MASK_GAIN, 0.0, None)  # [F, 8, 8]
        mass = m.sum(axis=(1, 2))
        visibility[:, slot] = np.clip(mass / SPRITE_SIZE**2, 0.0, 1.0)
        for i in range(f):
            if mass[i] < 1e-5:  # float32 noise of an empty footprint is ~1e-7
                continue
            present[i, slot] = True
            px, py = m[i].sum(axis=0), m[i].sum(axis=1)
            y = float((py * grid).sum() / mass[i])
            width = mass[i] / SPRITE_SIZE  # visible width (the sprite is never cut vertically)
            if width >= SPRITE_SIZE - 1e-6:
                x = float((px * grid).sum() / mass[i])
            elif px[0] >= px[-1]:  # cut by the left border
                x = width - SPRITE_SIZE / 2
            else:  # cut by the right border
                x = SIZE - width + SPRITE_SIZE / 2
            pos[i, slot] = (x, y)
            code[i, slot] = [(z[ch, i] * m[i]).sum() / (m[i] ** 2).sum() for ch in CODE_CHANNELS[slot]]
            if visibility[i, slot] >= VISIBLE:
                a = math.atan2(code[i, slot, 1], code[i, slot, 0])
                cls[i, slot] = int(round(a / (2 * math.pi / NUM_CLASSES))) % NUM_CLASSES
            if visibility[i, slot] >= REVEAL:
                detail[i, slot] = code[i, slot, 2:]
    params = FrameParams(
        shift=shift, q=q, r4=r4, r5=r5, family=family, present=present,
        pos=np.nan_to_num(pos, nan=-10.0), code=code,
    )
    recon = render_params(params).double().numpy()
    residual = ((recon - z) ** 2).mean(axis=(0, 2, 3))
    return Reading(params=params, visibility=visibility, cls=cls, detail=detail, residual=residual)


def channel_errors(latents: torch.Tensor, reading: Reading) -> np.ndarray:
    """``[16, F]``: squared error of ``latents [16, F, 8, 8]`` to the frames ``reading`` (its
    :func:`read_frames`) re-renders, per channel and frame, mean over pixels.  Its mean over
    channels is ``reading.residual``."""
    return ((render_params(reading.params).double().numpy() - _as_frames(latents)) ** 2).mean(axis=(2, 3))


def circular_distance(a: np.ndarray, b: np.ndarray, period: float) -> np.ndarray:
    """Smallest distance between ``a`` and ``b`` on a circle of length ``period``."""
    d = np.mod(np.asarray(a) - np.asarray(b), period)
    return np.minimum(d, period - d)

