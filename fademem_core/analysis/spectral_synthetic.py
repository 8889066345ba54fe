"""Ground-truth videos for the spectral-decay analysis: every band decorrelates with a chosen
time constant, so the horizons and the power law that ``analyze_video`` must find are known."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from .spectral import _band_index


def synthetic_video(num_frames: int, size: int | tuple[int, int], taus: Sequence[float],
                    static: float = 0.2, seed: int = 0) -> np.ndarray:
    """Ground-truth video ``[T, 1, H, W]`` whose band ``r`` decorrelates with time constant
    ``taus[r]``: every spectral bin of band ``r`` is a stationary complex AR(1) process with
    coefficient ``exp(-1/tau_r)`` plus a static part holding a ``static`` share of its energy,
    so ``C_r(d) = static + (1 - static) exp(-d / tau_r)`` and ``t*(r) = tau_r ln(1/epsilon)``.
    ``tau = inf`` makes a band fully static.  Bands use ``analyze_video``'s radial layout."""
    h, w = (size, size) if isinstance(size, int) else size
    bands = len(taus)
    if num_frames < 2 or bands < 2 or not 0.0 <= static < 1.0:
        raise ValueError(f"need num_frames >= 2, >= 2 taus and 0 <= static < 1, got "
                         f"{num_frames}, {bands}, {static}")
    if any(not tau > 0 for tau in taus):
        raise ValueError(f"every tau must be > 0, got {list(taus)}")
    gen = torch.Generator().manual_seed(seed)
    idx, _ = _band_index(h, w, bands)
    tau = torch.tensor([float(v) for v in taus], dtype=torch.float64)
    rho = torch.where(idx >= 0, torch.exp(-1.0 / tau[idx.clamp_min(0)]), torch.zeros(()))
    rho = rho.float()
    keep = (idx >= 0).float()

    def noise() -> torch.Tensor:
        return torch.complex(torch.randn(idx.shape, generator=gen),
                             torch.randn(idx.shape, generator=gen))

    fixed = noise() * math.sqrt(static) * keep
    moving = noise()
    innov = torch.sqrt(1.0 - rho * rho) * math.sqrt(1.0 - static) * keep
    z = torch.empty((num_frames,) + tuple(idx.shape), dtype=torch.complex64)
    moving = moving * math.sqrt(1.0 - static) * keep
    for i in range(num_frames):  # AR recursion over frames (a generator, not the analysis)
        z[i] = fixed + moving
        moving = moving * rho + noise() * innov
    return torch.fft.irfft2(z, s=(h, w)).unsqueeze(1).numpy()
