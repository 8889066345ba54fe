"""Distance-dependent spectral decay (paper Sec. 3.2, Figure 2) measured on any video, and a
suggested FadeMem ``beta`` derived from it.

Definitions (also in ``docs/sections/spectral.md``):

* **Bands.** Each frame's 2-D spectrum (per channel) is split into ``R`` radial bands of equal
  width over the radius ``rho = sqrt(fx^2 + fy^2)`` in cycles per pixel, band ``r`` holding
  ``r*w < rho <= (r+1)*w`` with ``w = 0.5 / R``.  DC (the frame mean) and the corners beyond
  ``rho = 0.5`` (not isotropic) are left out.  A band's radius is its centre ``(r + 0.5) * w``.
* **Correlation.** ``C_r(d)`` is the mean over all frame pairs ``(t, t+d)`` of the normalised
  inner product ``Re<z_t, z_{t+d}> / (|z_t| |z_{t+d}|)`` of the band-``r`` coefficients (all
  channels together).  By Parseval this is the spatial correlation of the two band-passed frames,
  so ``C_r(0) = 1``.  The temporal mean is not removed: content that stays put keeps its
  correlation, which is what the plateau measures.
* **Horizon.** ``C_inf`` is the mean of ``C_r`` over the last quarter of lags
  ``[ceil(3L/4), L]`` (``L = max_lag``).  ``t*(r)`` is the first lag where ``C_r`` has completed
  ``1 - epsilon`` of its decay from 1 to the plateau, i.e. ``C_r(d) <= C_inf + epsilon (1 -
  C_inf)``, interpolated log-linearly in ``C_r - C_inf`` between integer lags.  For
  ``C = a + (1-a) exp(-d/tau)`` this is
  ``tau ln(1/epsilon)`` whatever ``a``.  Only lags up to ``L`` enter, so a longer video changes the
  result only through less noise.  A horizon is trusted ("ok") when ``1 <= t* <= L/2`` (the
  plateau window starts at ``3L/4``, so the curve is flat well before it) and the band decays by
  at least ``min_drop``.
* **Fit.** ``r*(t)`` = the largest fitted band whose horizon is ``>= t``.  ``log t*`` is regressed
  on ``log r`` over the fitted bands (the radius is exact, the horizon is the noisy coordinate)
  giving ``log r = c - b log t``; ``b`` gets a 95 % interval from the slope's t-interval.
  Bands above the band with the shortest horizon are left out of the automatic fit: on real,
  compressed footage horizons climb again at the top (codec block grid, static sharp edges),
  which is not the content decaying.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from ..checks import check_int

BETA_RANGE = (0.05, 1.0)  # FadeMem needs 0 < beta <= 1; below 0.05 the warp is nearly a log
MIN_FRAMES_PER_LAG = 2  # pairs at the largest lag needed before C_r(L) means anything

CAVEAT = (
    "Suggested beta = 1 - b is this project's heuristic, not the paper's: with memory entries "
    "spaced uniformly in warped distance d^beta, their density in real distance goes as "
    "d^(beta-1); matching it to the stable bandwidth r*(d) ~ d^-b gives beta = 1 - b, clamped to "
    f"[{BETA_RANGE[0]}, {BETA_RANGE[1]}]. b has no time unit (a power law keeps its exponent when "
    "lags are counted in video or latent frames), but it is measured over the lags of this clip "
    "only, and the memory spans far longer distances. Treat it as a starting point; the paper "
    "found 0.3 best for consistency and 0.9 best on average."
)

# two-sided 95 % Student-t quantiles for 1..30 degrees of freedom
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179,
         2.160, 2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064,
         2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


@dataclass(frozen=True)
class SpectralResult:
    """Everything the analysis measured.  Arrays are numpy; band indices are 0-based."""

    lags: np.ndarray            # [L+1] 0..L
    band_edges: np.ndarray      # [R+1] radius edges, cycles per pixel
    band_radius: np.ndarray     # [R] band centres
    correlation: np.ndarray     # [R, L+1] C_r(d); NaN for empty bands
    plateau: np.ndarray         # [R] C_inf
    horizon: np.ndarray         # [R] t*(r) in frames; NaN where the curve never got there
    status: tuple[str, ...]     # per band: ok | long | flat | short | empty
    fit_bands: tuple[int, ...]  # bands the fit used
    stable_radius: np.ndarray   # [L+1] r*(t) for t = 0..L (NaN where no fitted band lasts)
    b: float
    b_ci: tuple[float, float]
    r_squared: float
    intercept: float            # c in log r* = c - b log t
    suggested_beta: float
    beta_ci: tuple[float, float]
    epsilon: float
    max_lag: int
    num_frames: int
    frame_shape: tuple[int, int, int]  # C, H, W
    notes: tuple[str, ...] = field(default=())
    caveat: str = CAVEAT

    @property
    def fitted(self) -> bool:
        """True when a power law could be fitted (at least 3 trusted bands)."""
        return math.isfinite(self.b)

    def summary(self) -> str:
        """Human-readable report (what the CLI prints)."""
        c, h, w = self.frame_shape
        lines = [f"frames {self.num_frames} x {c} ch x {h}x{w}, max lag {self.max_lag}, "
                 f"{len(self.band_radius)} bands, epsilon {self.epsilon}"]
        lines.append("band  radius   horizon  plateau  status")
        for r, (rad, hz, pl, st) in enumerate(zip(self.band_radius, self.horizon, self.plateau,
                                                  self.status)):
            mark = "*" if r in self.fit_bands else " "
            lines.append(f"{r:>3}{mark} {rad:7.4f} {hz:9.2f} {pl:8.3f}  {st}")
        if self.fitted:
            lines.append(f"b = {self.b:.3f}  (95% CI {self.b_ci[0]:.3f} .. {self.b_ci[1]:.3f}), "
                         f"R^2 = {self.r_squared:.3f}, fit on bands "
                         f"{self.fit_bands[0]}..{self.fit_bands[-1]} ({len(self.fit_bands)})")
            lines.append(f"suggested beta = {self.suggested_beta:.2f}  "
                         f"(range {self.beta_ci[0]:.2f} .. {self.beta_ci[1]:.2f})")
        else:
            lines.append("no power law fitted")
        lines.extend(f"note: {n}" for n in self.notes)
        lines.append(f"caveat: {self.caveat}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN/inf become None)."""
        def clean(v: Any) -> Any:
            if isinstance(v, np.ndarray):
                return clean(v.tolist())
            if isinstance(v, (list, tuple)):
                return [clean(x) for x in v]
            if isinstance(v, float) and not math.isfinite(v):
                return None
            return v
        out = {k: clean(getattr(self, k)) for k in self.__dataclass_fields__}
        out["fitted"] = self.fitted
        return out


def suggest_beta(b: float) -> float:
    """FadeMem ``beta`` matched to a stable-bandwidth exponent ``b``: ``1 - b`` clamped to
    ``BETA_RANGE`` (our derivation, see ``CAVEAT``)."""
    if not math.isfinite(b):
        raise ValueError(f"b must be a finite number, got {b!r}")
    return float(min(max(1.0 - b, BETA_RANGE[0]), BETA_RANGE[1]))


# ----------------------------------------------------------------------------- validation
def _as_tensor(frames: Any) -> torch.Tensor:
    if isinstance(frames, np.ndarray):
        frames = torch.from_numpy(frames)
    if not isinstance(frames, torch.Tensor):
        raise ValueError(f"frames must be a torch.Tensor or numpy array [T, C, H, W], got "
                         f"{type(frames).__name__}")
    if frames.ndim != 4:
        raise ValueError(f"frames must be [T, C, H, W] (4 dims), got shape {tuple(frames.shape)}")
    if not (frames.is_floating_point() or frames.dtype in (torch.uint8, torch.int16,
                                                           torch.int32, torch.int64)):
        raise ValueError(f"frames must hold real numbers, got dtype {frames.dtype}")
    return frames.detach().to("cpu", torch.float32)


def _check(x: torch.Tensor, bands: int, max_lag: int, epsilon: float) -> None:
    t, _c, h, w = x.shape
    check_int("bands", bands, 2)
    if min(h, w) < 2 * bands:
        raise ValueError(f"frames of {h}x{w} are too small for {bands} bands: need at least "
                         f"{2 * bands} pixels per side (use fewer bands)")
    check_int("max_lag", max_lag, 4)
    if t < max_lag + MIN_FRAMES_PER_LAG:
        raise ValueError(f"video too short: {t} frames for max_lag {max_lag} (need at least "
                         f"{max_lag + MIN_FRAMES_PER_LAG}); lower max_lag or give more frames")
    if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not 0.0 < epsilon < 0.5:
        raise ValueError(f"epsilon must be a number in (0, 0.5), got {epsilon!r}")
    lo, hi = torch.aminmax(x.flatten(1), dim=1)  # one pass: NaN/inf show up in min/max
    if not (bool(torch.isfinite(lo).all()) and bool(torch.isfinite(hi).all())):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"frames contain {bad} NaN/inf values; clean the input first")
    if bool((lo == hi).all()):
        raise ValueError("video is spatially constant (every frame is one flat colour): no "
                         "frequency content to analyse")
    if torch.equal(x[1:], x[:1].expand_as(x[1:])):
        raise ValueError("video is constant over time (all frames identical): correlations "
                         "cannot decay, so there is nothing to measure")


# ----------------------------------------------------------------------------- correlations
def _band_index(h: int, w: int, bands: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Band of every rfft2 bin (-1 = unused) and its Hermitian weight."""
    fy = torch.fft.fftfreq(h, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=torch.float64)[None, :]
    rho = torch.sqrt(fy * fy + fx * fx)
    width = 0.5 / bands
    idx = torch.ceil(rho / width - 1e-9).long() - 1
    idx[(rho <= 0) | (rho > 0.5 + 1e-12)] = -1
    weight = torch.full((w // 2 + 1,), 2.0, dtype=torch.float64)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0  # the Nyquist column has no mirror in rfft
    return idx, weight.expand(h, -1)


def _fast_len(n: int) -> int:
    """Smallest 2^a 3^b 5^c >= n (fast FFT length)."""
    best = 1 << (n - 1).bit_length()
    f5 = 1
    while f5 < best:
        f35 = f5
        while f35 < best:
            v = f35
            while v < n:
                v *= 2
            best = min(best, v)
            f35 *= 3
        f5 *= 5
    return best


def band_correlations(frames: Any, bands: int, max_lag: int,
                      chunk_bytes: int = 96 << 20) -> tuple[np.ndarray, np.ndarray]:
    """``C_r(d)`` [bands, max_lag+1] and the number of frame pairs per (band, lag).

    All frame pairs at once: per bin, ``sum_t u_t conj(u_{t+d})`` for every lag is one temporal
    FFT (Wiener-Khinchin, zero-padded so lags do not wrap); bins are summed per band before the
    inverse FFT.  ``u`` are the coefficients scaled by 1/|band energy of that frame|^(1/2).
    Inputs are assumed validated (see ``analyze_video``).
    """
    x = _as_tensor(frames)
    t, c, h, w = x.shape
    idx, weight = _band_index(h, w, bands)
    slot = idx.reshape(-1).clone()
    slot[slot < 0] = bands  # unused bins go to a dummy band that is dropped
    wflat = weight.reshape(-1).float()

    spec = torch.fft.rfft2(x)  # [T, C, H, Wr] complex64; DC is never used
    power = torch.view_as_real(spec).square().sum((1, -1)).reshape(t, -1) * wflat
    energy = torch.zeros(t, bands + 1).index_add_(1, slot, power)[:, :bands].double()
    valid = energy > energy.max() * 1e-12                            # [T, R] frames with content
    inv = torch.where(valid, energy.clamp_min(1e-300).rsqrt(), torch.zeros_like(energy))
    inv = torch.cat([inv, torch.zeros(t, 1, dtype=inv.dtype)], 1).float()
    root_w = wflat.sqrt()

    nfft = _fast_len(t + max_lag)
    spec_pow = torch.zeros(nfft, bands, dtype=torch.float64)
    wr = spec.shape[-1]
    rows = max(1, int(chunk_bytes // (nfft * c * wr * 8)))
    for r0 in range(0, h, rows):  # chunks of spectrum rows bound the padded temporal FFT
        sl = slice(r0 * wr, min(r0 + rows, h) * wr)
        # per-bin scale sqrt(w_k) / |z_{t, band(k)}|, zero for unused bins
        scale = inv[:, slot[sl]] * root_w[sl]
        u = spec[:, :, r0:r0 + rows] * scale.reshape(t, 1, -1, wr)
        g = torch.fft.fft(u, n=nfft, dim=0)
        gp = torch.view_as_real(g).square().sum((1, -1)).reshape(nfft, -1)
        part = torch.zeros(nfft, bands + 1).index_add_(1, slot[sl], gp)
        spec_pow += part[:, :bands].double()
    acf = torch.fft.ifft(spec_pow, dim=0).real[: max_lag + 1].T      # [R, L+1]
    vm = valid.double()
    vf = torch.fft.rfft(vm, n=nfft, dim=0)
    pairs = torch.fft.irfft(vf.real.square() + vf.imag.square(), n=nfft, dim=0)
    pairs = pairs[: max_lag + 1].T.round()                           # [R, L+1]
    corr = torch.where(pairs > 0, acf / pairs.clamp_min(1), torch.full_like(acf, math.nan))
    return corr.numpy(), pairs.numpy().astype(np.int64)


# ----------------------------------------------------------------------------- horizons + fit
def _horizons(corr: np.ndarray, max_lag: int, epsilon: float, min_drop: float
              ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    tail = corr[:, math.ceil(0.75 * max_lag):]
    plateau = tail.mean(axis=1)
    thr = plateau + epsilon * (1.0 - plateau)
    horizon = np.full(len(corr), np.nan)
    status = []
    for r, curve in enumerate(corr):  # loop over bands only
        if not np.isfinite(curve).all():
            status.append("empty")
            continue
        if 1.0 - plateau[r] < min_drop:  # (almost) no decay: no horizon to speak of
            status.append("flat")
            continue
        below = np.nonzero(curve[1:] <= thr[r])[0] + 1
        if len(below):
            d = int(below[0])
            hi, lo, level = curve[d - 1] - plateau[r], curve[d] - plateau[r], thr[r] - plateau[r]
            if lo > 0 and hi > level:  # log-linear between the two lags: exact for exp. decay
                frac = math.log(hi / level) / math.log(hi / lo)
            else:       # the curve dips to/below its plateau: plain linear
                frac = (hi - level) / max(hi - lo, 1e-12)
            horizon[r] = (d - 1) + frac
        if not np.isfinite(horizon[r]) or horizon[r] > max_lag / 2:
            status.append("long")
        elif horizon[r] < 1.0:
            status.append("short")
        else:
            status.append("ok")
    return plateau, horizon, status


def _t975(df: int) -> float:
    return _T975[df - 1] if df <= 30 else 1.96 + 2.4 / df


def _select_fit(horizon: np.ndarray, status: list[str], fit_bands: tuple[int, int] | None,
                notes: list[str]) -> list[int]:
    ok = [r for r, s in enumerate(status) if s == "ok"]
    if fit_bands is not None:
        lo, hi = fit_bands
        return [r for r in ok if lo <= r <= hi]
    if not ok:
        return []
    turn = ok[int(np.argmin(horizon[ok]))]
    rising = [r for r in ok if r > turn]
    if rising:
        notes.append(f"bands {rising[0]}..{rising[-1]} left out of the fit: their horizons "
                     f"climb again above band {turn} (static fine structure or codec artefacts, "
                     "not content decaying)")
    return [r for r in ok if r <= turn]


def _fit(radius: np.ndarray, horizon: np.ndarray) -> tuple[float, tuple[float, float], float,
                                                          float]:
    """Regress log t* on log r; return b, its 95 % CI, R^2 and c (log r* = c - b log t)."""
    x, y = np.log(radius), np.log(horizon)
    n = len(x)
    xm, ym = x.mean(), y.mean()
    sxx = float(((x - xm) ** 2).sum())
    k = float(((x - xm) * (y - ym)).sum() / sxx)     # log t* = a + k log r,  k = -1/b
    a = ym - k * xm
    resid = y - (a + k * x)
    sse, sst = float((resid ** 2).sum()), float(((y - ym) ** 2).sum())
    r2 = 1.0 - sse / sst if sst > 0 else 0.0
    se = math.sqrt(sse / (n - 2) / sxx)
    k_lo, k_hi = k - _t975(n - 2) * se, k + _t975(n - 2) * se
    b = -1.0 / k if k < 0 else math.inf
    b_lo = -1.0 / k_lo if k_lo < 0 else math.inf
    b_hi = -1.0 / k_hi if k_hi < 0 else math.inf
    c = -a / k if k != 0 else math.nan               # log r = -a/k + (1/k) log t
    return b, (b_lo, b_hi), r2, c


def _power_law(radius: np.ndarray, horizon: np.ndarray, chosen: list[int],
               notes: list[str]) -> tuple[float, tuple[float, float], float, float, float,
                                          tuple[float, float]]:
    """``(b, b_ci, r2, intercept, beta, beta_ci)`` of the fit over the ``chosen`` bands (nan
    where it cannot be made); appends why to ``notes``."""
    b, b_ci, r2, c = math.nan, (math.nan, math.nan), math.nan, math.nan
    beta, beta_ci = math.nan, (math.nan, math.nan)
    if len(chosen) >= 3:
        b, b_ci, r2, c = _fit(radius[chosen], horizon[chosen])
        if math.isfinite(b):
            beta = suggest_beta(b)
            if r2 < 0.8 or not b_ci[1] < 2 * b_ci[0]:
                notes.append(f"weak fit (R^2 {r2:.2f}, b between {b_ci[0]:.2f} and "
                             f"{b_ci[1]:.2f}): this clip shows no clean power law")
            beta_ci = (suggest_beta(b_ci[1]) if math.isfinite(b_ci[1]) else BETA_RANGE[0],
                       suggest_beta(b_ci[0]) if math.isfinite(b_ci[0]) else BETA_RANGE[0])
        else:
            notes.append("horizons do not shrink with frequency: no power law")
    else:
        notes.append(f"only {len(chosen)} trusted band(s) to fit (need 3): try more frames, a "
                     "larger max_lag or fewer bands")

    return b, b_ci, r2, c, beta, beta_ci


def _stable_radius(chosen: list[int], status: list[str], horizon: np.ndarray,
                   radius: np.ndarray, max_lag: int) -> np.ndarray:
    """``r*(t)`` per lag: the largest fitted-range band still stable at ``t`` (bands censored
    long or flat count as lasting)."""
    top = max(chosen) if chosen else -1
    lasting = np.where(np.isin(status, ["long", "flat"]), np.inf, np.nan_to_num(horizon))
    lags = np.arange(max_lag + 1)
    stable = np.full(max_lag + 1, np.nan)
    for d in lags:  # loop over lags (<= L), not frame pairs
        keep = [r for r in range(top + 1) if lasting[r] >= d and status[r] != "empty"]
        if keep:
            stable[d] = radius[max(keep)]

    return stable


def analyze_video(frames: Any, bands: int = 16, max_lag: int | None = None,
                  epsilon: float = 0.1, min_drop: float = 0.02,
                  fit_bands: Sequence[int] | None = None) -> SpectralResult:
    """Measure the spectral decay of ``frames`` and fit ``r*(t) ~ t^-b``.

    frames: float tensor/array ``[T, C, H, W]`` (pixels or latent channels; any scale).
    bands: number of radial bands R.  max_lag: largest lag L in frames (default ``min(64,
    T // 2)``; pass it explicitly to compare clips of different length).  epsilon: the
    horizon's "decay completed" fraction.  min_drop: a band whose correlation falls by less
    than this is "flat" (never decorrelates within L).  fit_bands: ``(lo, hi)`` inclusive band
    range for the fit instead of the automatic choice.
    Raises ValueError for bad shapes, NaN/inf, constant videos, or fewer frames than lags.
    """
    x = _as_tensor(frames)
    t = x.shape[0]
    if max_lag is None:
        max_lag = min(64, t // 2)
        if max_lag < 4:
            raise ValueError(f"video too short: {t} frames (need at least 8 for the default "
                             "max_lag)")
    _check(x, bands, max_lag, epsilon)
    bands, max_lag = int(bands), int(max_lag)
    if isinstance(min_drop, bool) or not isinstance(min_drop, numbers.Real) or not 0.0 <= min_drop < 1.0:
        raise ValueError(f"min_drop must be a number in [0, 1), got {min_drop!r}")
    fb: tuple[int, int] | None = None
    if fit_bands is not None:
        pair = tuple(fit_bands) if isinstance(fit_bands, Sequence) and not isinstance(fit_bands, str) else ()
        if (len(pair) != 2 or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) for v in pair)
                or not 0 <= pair[0] < pair[1] < bands):
            raise ValueError(f"fit_bands must be (lo, hi) integers with 0 <= lo < hi < {bands}, got "
                             f"{fit_bands!r}")
        fb = (int(pair[0]), int(pair[1]))

    corr, _pairs = band_correlations(x, bands, max_lag)
    plateau, horizon, status = _horizons(corr, max_lag, epsilon, min_drop)
    edges = np.linspace(0.0, 0.5, bands + 1)
    radius = 0.5 * (edges[:-1] + edges[1:])
    notes: list[str] = []
    chosen = _select_fit(horizon, status, fb, notes)
    for kind, why in (("long", f"horizon beyond max_lag/2 = {max_lag / 2:g} (raise max_lag)"),
                      ("flat", f"correlation drops by less than {min_drop} (static)"),
                      ("short", "horizon under one frame (noise or faster than the frame rate)"),
                      ("empty", "no frequency bins or no energy")):
        which = [r for r, s in enumerate(status) if s == kind]
        if which:
            notes.append(f"bands {which} not fitted: {why}")

    b, b_ci, r2, c, beta, beta_ci = _power_law(radius, horizon, chosen, notes)

    lags = np.arange(max_lag + 1)
    stable = _stable_radius(chosen, status, horizon, radius, max_lag)

    return SpectralResult(
        lags=lags, band_edges=edges, band_radius=radius, correlation=corr, plateau=plateau,
        horizon=horizon, status=tuple(status), fit_bands=tuple(chosen), stable_radius=stable,
        b=float(b), b_ci=(float(b_ci[0]), float(b_ci[1])), r_squared=float(r2),
        intercept=float(c), suggested_beta=float(beta),
        beta_ci=(float(beta_ci[0]), float(beta_ci[1])), epsilon=float(epsilon),
        max_lag=int(max_lag), num_frames=int(t), frame_shape=tuple(int(s) for s in x.shape[1:]),
        notes=tuple(notes))

