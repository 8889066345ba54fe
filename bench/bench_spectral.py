"""Speed of the spectral-decay analysis on a 250-frame 640x272 clip (the size of bikes.mp4).

    python bench/bench_spectral.py [VIDEO.mp4 ...] [--threads 2]

Times ``analyze_video`` (temporal-FFT correlations over all frame pairs) against a direct
per-lag computation of the same C_r(d) (one vectorised product per lag), checks they agree,
and prints seconds, the ratio, and the machine.  Video files given on the command line are
decoded (luma) and analysed too.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fademem_core.analysis.spectral import _band_index, analyze_video  # noqa: E402
from fademem_core.analysis.spectral_synthetic import synthetic_video  # noqa: E402


def direct_correlations(x: torch.Tensor, bands: int, max_lag: int) -> np.ndarray:
    """Same C_r(d) computed lag by lag (the obvious way), for timing and agreement."""
    t, _c, h, w = x.shape
    idx, weight = _band_index(h, w, bands)
    spec = torch.fft.rfft2(x)
    flat = idx.reshape(-1)
    used = flat >= 0
    onehot = torch.zeros(flat.numel(), bands, dtype=torch.float64)
    onehot[used.nonzero().squeeze(1), flat[used]] = 1.0
    wflat = (weight.reshape(-1) * used).float()
    z = spec.reshape(t, spec.shape[1], -1)
    energy = ((z.abs() ** 2).sum(1).double() * wflat.double()) @ onehot       # [T, R]
    out = np.zeros((bands, max_lag + 1))
    for d in range(max_lag + 1):  # one vectorised product per lag
        prod = (z[: t - d] * z[d:].conj()).real.sum(1) * wflat               # [T-d, bins]
        num = prod.double() @ onehot                                          # [T-d, R]
        den = (energy[: t - d] * energy[d:]).sqrt()
        out[:, d] = (num / den).mean(0).numpy()
    return out


def timed(fn, repeat: int = 3):
    best, value = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - t0)
    return best, value


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("videos", nargs="*")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--bands", type=int, default=16)
    ap.add_argument("--max-lag", type=int, default=None,
                    help="default: 64 for the synthetic clip, automatic (as the CLI) for files")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores "
          f"visible, torch {torch.__version__} with {torch.get_num_threads()} threads, "
          f"python {platform.python_version()}")

    radius = (np.arange(args.bands) + 0.5) / args.bands
    taus = list(3.0 * (radius / radius[4]) ** (-1 / 0.7))
    x = torch.from_numpy(synthetic_video(250, (272, 640), taus, seed=0))
    clip_s = 250 / 25.0
    lag = args.max_lag or 64
    fast_s, res = timed(lambda: analyze_video(x, bands=args.bands, max_lag=lag))
    slow_s, ref = timed(lambda: direct_correlations(x, args.bands, lag), repeat=1)
    err = float(np.abs(res.correlation - ref).max())
    print(f"synthetic 250x640x272 luma, {args.bands} bands, max lag {lag}:")
    print(f"  analyze_video      {fast_s:6.2f} s  ({fast_s / clip_s:.2f}x the 10 s clip's "
          f"duration), b = {res.b:.3f} (designed 0.7)")
    print(f"  direct per-lag     {slow_s:6.2f} s  -> temporal FFT is {slow_s / fast_s:.1f}x "
          f"faster, max |dC| = {err:.1e}")

    for path in args.videos:
        from fademem_core.analysis.video_io import read_video

        dec_s, frames = timed(lambda: read_video(path), repeat=1)
        an_s, r = timed(lambda: analyze_video(frames, bands=args.bands, max_lag=args.max_lag))
        t, _c, h, w = frames.shape
        print(f"{os.path.basename(path)}: {t} frames {w}x{h}, max lag {r.max_lag}: decode "
              f"{dec_s:.2f} s, analyse "
              f"{an_s:.2f} s, b = {r.b:.3f} [{r.b_ci[0]:.2f}, {r.b_ci[1]:.2f}] R^2 "
              f"{r.r_squared:.2f} on bands {list(r.fit_bands)}, suggested beta "
              f"{r.suggested_beta:.2f}")


if __name__ == "__main__":
    main()
