"""Spectral-decay analysis: correlations against a direct per-pair formula, recovery of a
designed power law, the horizon criterion's independence of video length, and clear errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from fademem_core.analysis.spectral import (BETA_RANGE, SpectralResult, analyze_video, band_correlations,
                                   suggest_beta)
from fademem_core.analysis.spectral_synthetic import synthetic_video

LN10 = math.log(10.0)  # t* = tau ln(1/epsilon) at the default epsilon 0.1


def direct_correlations(x: np.ndarray, bands: int, max_lag: int) -> np.ndarray:
    """Reference: full fft2 per frame, band masks from np.digitize, a loop over frame pairs."""
    t, _c, h, w = x.shape
    spec = np.fft.fft2(x.astype(np.float64), axes=(2, 3))
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    rho = np.sqrt(fy ** 2 + fx ** 2)
    band = np.digitize(rho, np.linspace(0, 0.5, bands + 1), right=True) - 1
    band[(rho == 0) | (rho > 0.5)] = -1
    out = np.zeros((bands, max_lag + 1))
    for r in range(bands):
        z = spec[:, :, band == r].reshape(t, -1)
        z = z / np.linalg.norm(z, axis=1, keepdims=True)
        for d in range(max_lag + 1):
            out[r, d] = np.mean([np.real(np.vdot(z[i + d], z[i])) for i in range(t - d)])
    return out


def designed_taus(b: float, bands: int, t_mid: float = 6.0, mid: int = 6,
                  longest: float = 24.0) -> list[float]:
    """Time constants whose horizons t* = tau ln10 follow r ~ t^-b; too-slow bands are static."""
    radius = (np.arange(bands) + 0.5) / bands
    horizons = t_mid * (radius / radius[mid]) ** (-1.0 / b)
    return [h / LN10 if h <= longest else math.inf for h in horizons]


@pytest.mark.parametrize("shape", [(17, 2, 22, 20), (15, 1, 23, 19)])
def test_correlations_match_direct_pair_formula(shape):
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    x = np.cumsum(x, axis=0)  # correlated in time, so C_r(d) is not trivially ~0
    corr, pairs = band_correlations(x, bands=3, max_lag=6)
    np.testing.assert_allclose(corr, direct_correlations(x, 3, 6), atol=2e-5)
    assert (pairs == np.arange(shape[0], shape[0] - 7, -1)).all()
    np.testing.assert_allclose(corr[:, 0], 1.0, atol=1e-6)


@pytest.mark.parametrize("b", [0.5, 0.7, 1.2])
def test_recovers_designed_power_law(b):
    bands = 12
    taus = designed_taus(b, bands)
    x = synthetic_video(300, 128, taus, static=0.3, seed=1)
    res = analyze_video(x, bands=bands, max_lag=64)
    assert res.fitted and len(res.fit_bands) >= 6
    assert abs(res.b - b) <= 0.1 * b, (res.b, b)          # stated tolerance: 10 %
    assert res.r_squared > 0.95
    assert res.b_ci[0] < res.b < res.b_ci[1]
    # each trusted horizon is tau ln10 within 15 % (the criterion's exact value for AR(1))
    for r in res.fit_bands:
        assert res.horizon[r] == pytest.approx(taus[r] * LN10, rel=0.15)
    # static bands are never decorrelating: not fitted, and lasting for r*(t)
    for r, tau in enumerate(taus):
        if math.isinf(tau):
            assert res.status[r] in ("flat", "long") and r not in res.fit_bands
    assert res.suggested_beta == pytest.approx(suggest_beta(res.b))


def test_horizon_does_not_depend_on_video_length():
    taus = designed_taus(0.8, 10)
    short = analyze_video(synthetic_video(160, 128, taus, seed=3), bands=10, max_lag=48)
    long = analyze_video(synthetic_video(480, 128, taus, seed=4), bands=10, max_lag=48)
    both = sorted(set(short.fit_bands) & set(long.fit_bands))
    assert len(both) >= 5
    np.testing.assert_allclose(short.horizon[both], long.horizon[both], rtol=0.15)
    assert abs(short.b - long.b) < 0.1


@pytest.mark.parametrize("static", [0.0, 0.6])
def test_horizon_ignores_plateau_level(static):
    taus = [math.inf] * 3 + [4.0] * 5
    res = analyze_video(synthetic_video(300, 96, taus, static=static, seed=2), bands=8,
                        max_lag=40)
    for r in range(3, 8):
        assert res.horizon[r] == pytest.approx(4.0 * LN10, rel=0.12)
        assert res.plateau[r] == pytest.approx(static, abs=0.06)


def test_rising_top_bands_are_left_out_and_override_works():
    # codec-like: horizons fall to band 7, then climb again
    taus = designed_taus(0.7, 12)[:8] + [6.0, 7.0, 8.0, 9.0]
    x = synthetic_video(300, 128, taus, seed=5)
    res = analyze_video(x, bands=12, max_lag=64)
    assert max(res.fit_bands) == 7
    assert any("climb again" in n for n in res.notes)
    assert abs(res.b - 0.7) <= 0.1
    forced = analyze_video(x, bands=12, max_lag=64, fit_bands=(4, 11))
    assert forced.fit_bands == tuple(r for r in range(4, 12) if forced.status[r] == "ok")
    assert not forced.fitted or forced.b > 1.5 or forced.r_squared < res.r_squared


def test_black_frames_are_skipped_not_fatal():
    x = synthetic_video(120, 64, [3.0] * 8, seed=0)
    x[50:53] = 0.0
    res = analyze_video(x, bands=8, max_lag=32)
    assert np.isfinite(res.correlation).all()
    np.testing.assert_allclose(res.correlation[:, 0], 1.0, atol=1e-6)


def test_torch_numpy_and_integer_inputs_agree():
    x = synthetic_video(80, 48, [2.0] * 6, seed=0)
    a = analyze_video(x, bands=6, max_lag=20)
    b = analyze_video(torch.from_numpy(x).double(), bands=6, max_lag=20)
    np.testing.assert_allclose(a.correlation, b.correlation, atol=1e-5)
    u8 = ((x - x.min()) / (x.max() - x.min()) * 255).astype(np.uint8)
    c = analyze_video(u8, bands=6, max_lag=20)
    np.testing.assert_allclose(a.correlation, c.correlation, atol=0.05)


def test_result_serialises_and_summarises():
    res = analyze_video(synthetic_video(120, 64, designed_taus(0.7, 8, mid=4), seed=0),
                        bands=8, max_lag=40)
    data = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert len(data["correlation"]) == 8 and len(data["correlation"][0]) == 41
    assert data["fitted"] is res.fitted
    text = res.summary()
    assert "caveat" in text and "band" in text
    assert isinstance(res, SpectralResult)


def test_default_max_lag_and_stable_radius():
    res = analyze_video(synthetic_video(60, 64, designed_taus(0.7, 8, mid=4), seed=0), bands=8)
    assert res.max_lag == 30 and len(res.lags) == 31
    finite = res.stable_radius[np.isfinite(res.stable_radius)]
    assert (np.diff(finite) <= 0).all()  # r*(t) never grows with t


def test_suggest_beta():
    assert suggest_beta(0.7) == pytest.approx(0.3)
    assert suggest_beta(2.0) == BETA_RANGE[0]
    assert suggest_beta(-0.5) == BETA_RANGE[1]
    with pytest.raises(ValueError, match="finite"):
        suggest_beta(float("nan"))


# ----------------------------------------------------------------------------- errors
def _video(t=40):
    return synthetic_video(t, 32, [2.0] * 4, seed=0)


@pytest.mark.parametrize("frames, kwargs, match", [
    (_video(20), {"bands": 4, "max_lag": 20}, "too short"),
    (_video(2)[:7], {"bands": 4}, "too short"),
    (np.repeat(_video(2)[:1], 30, axis=0), {"bands": 4, "max_lag": 8}, "constant over time"),
    (np.full((30, 1, 32, 32), 0.5, np.float32), {"bands": 4, "max_lag": 8}, "spatially"),
    (np.zeros((30, 32, 32), np.float32), {"bands": 4}, r"\[T, C, H, W\]"),
    (_video(), {"bands": 20, "max_lag": 8}, "too small"),
    (_video(), {"bands": 1, "max_lag": 8}, "bands"),
    (_video(), {"bands": 4, "max_lag": 8, "epsilon": 0.7}, "epsilon"),
    (_video(), {"bands": 4, "max_lag": 8, "fit_bands": (3, 9)}, "fit_bands"),
    ("frames.mp4", {}, "numpy"),
])
def test_bad_input_raises_clear_error(frames, kwargs, match):
    with pytest.raises(ValueError, match=match):
        analyze_video(frames, **kwargs)


def test_nan_input_raises():
    x = _video()
    x[3, 0, 5, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        analyze_video(x, bands=4, max_lag=8)


def test_rigid_pan_gives_b_one():
    """Physical check independent of the AR generator: a texture translating at v px/frame
    decorrelates band rho after ~1/(rho v) frames, so r* ~ t^-1 whatever the speed."""
    n, rng = 128, np.random.default_rng(0)
    f = np.fft.fftfreq(n)
    rho = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    rho[0, 0] = 1.0
    tex = np.fft.fft2(rng.standard_normal((n, n))) / rho              # 1/f texture
    for v in (0.5, 1.5):
        shift = np.exp(-2j * np.pi * f[None, :] * v * np.arange(150)[:, None, None])
        frames = np.real(np.fft.ifft2(tex[None] * shift))[:, None].astype(np.float32)
        res = analyze_video(frames, bands=16, max_lag=48)
        assert abs(res.b - 1.0) < 0.08, (v, res.b)


@pytest.mark.parametrize("kwargs,needle", [
    ({"epsilon": "0.1"}, "epsilon"),
    ({"epsilon": None}, "epsilon"),
    ({"epsilon": True}, "epsilon"),
    ({"fit_bands": ()}, "fit_bands"),
    ({"fit_bands": [3]}, "fit_bands"),
    ({"fit_bands": (1, 2, 3)}, "fit_bands"),
    ({"fit_bands": "1:5"}, "fit_bands"),
    ({"fit_bands": (1.5, 4)}, "fit_bands"),
    ({"fit_bands": 3}, "fit_bands"),
    ({"min_drop": "x"}, "min_drop"),
    ({"min_drop": float("nan")}, "min_drop"),
])
def test_bad_arguments_are_valueerrors_naming_them(kwargs, needle):
    frames = synthetic_video(40, 64, [2.0] * 8, seed=0)
    with pytest.raises(ValueError, match=needle):
        analyze_video(frames, bands=8, **kwargs)
