"""The Figure 2 drawing: right size, both panels drawn, band colours and the fit line present."""
from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image

from fademem_core.analysis.spectral import analyze_video
from fademem_core.analysis.spectral_synthetic import synthetic_video
from fademem_core.analysis.spectral_plot import _FIT, _RAMP, band_colour, draw_spectral


def _result(fit: bool = True):
    bands = 8
    radius = (np.arange(bands) + 0.5) / bands
    if fit:
        taus = [6.0 / math.log(10) * (radius[r] / radius[3]) ** (-1 / 0.7) for r in range(bands)]
    else:  # horizons grow with frequency: no power law
        taus = [1.0 + r for r in range(bands)]
    return analyze_video(synthetic_video(150, 64, taus, seed=0), bands=bands, max_lag=40)


def _count(img: Image.Image, colour, box=None, tol=12) -> int:
    a = np.asarray(img.crop(box) if box else img).astype(int)
    return int((np.abs(a - np.array(colour)).max(axis=2) <= tol).sum())


def test_band_colour_ramp_ends():
    assert band_colour(0, 10) == _RAMP[0]
    assert band_colour(9, 10) == _RAMP[-1]
    assert band_colour(0, 1) == _RAMP[0]


def test_draws_both_panels_with_band_colours_and_fit():
    res = _result()
    assert res.fitted
    img = draw_spectral(res, width=1000, height=480)
    assert isinstance(img, Image.Image) and img.size == (1000, 480) and img.mode == "RGB"
    left, right = (0, 0, 500, 480), (500, 0, 1000, 480)
    for r in (0, 7):  # lowest and highest band curves in panel (a)
        assert _count(img, band_colour(r, 8), left, tol=20) > 30
    assert _count(img, _FIT, right, tol=30) > 60       # the red fit line + label in panel (b)
    assert _count(img, _FIT, left, tol=30) == 0


def test_unfitted_result_still_draws_without_fit_line():
    res = _result(fit=False)
    assert not res.fitted
    img = draw_spectral(res)
    assert img.size == (1200, 520)
    # only the red "no power law fitted" text, no line: far fewer red pixels than with a fit
    assert _count(img, _FIT, tol=30) < _count(draw_spectral(_result()), _FIT, tol=30)


def test_too_small_canvas_is_rejected():
    with pytest.raises(ValueError, match="at least"):
        draw_spectral(_result(), width=100, height=100)
