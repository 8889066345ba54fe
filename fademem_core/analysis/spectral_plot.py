"""Figure 2 of the paper, drawn from a ``SpectralResult`` with PIL only.

(a) ``C_r(d)`` against lag, one curve per band coloured from low (dark) to high (yellow)
frequency, with each trusted horizon marked; (b) the boundary points ``(t*(r), r)`` on log-log
axes (filled: used by the fit, hollow: left out), the stable radius ``r*(t)`` as a grey step
line and the power-law fit ``r* ~ t^-b`` as a red line.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .spectral import SpectralResult

# viridis-like anchors: a perceptually ordered low -> high ramp
_RAMP = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
_BG, _INK, _GRID, _FIT, _STEP = (255, 255, 255), (30, 30, 30), (225, 225, 225), (214, 39, 40), \
    (150, 150, 150)


def band_colour(r: int, bands: int) -> tuple[int, int, int]:
    """Colour of band ``r`` of ``bands`` on the low -> high ramp."""
    x = r / max(bands - 1, 1) * (len(_RAMP) - 1)
    i = min(int(x), len(_RAMP) - 2)
    f = x - i
    return tuple(round(a + (b - a) * f) for a, b in zip(_RAMP[i], _RAMP[i + 1]))  # type: ignore


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _log_ticks(lo: float, hi: float) -> list[float]:
    ticks = []
    for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1):
        for m in (1, 2, 5):
            v = m * 10.0 ** e
            if lo <= v <= hi:
                ticks.append(v)
    return ticks


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    return f"{v:g}" if abs(v) >= 0.01 else f"{v:.0e}"


class _Axes:
    """A rectangle mapping data to pixels (optionally log on either axis)."""

    def __init__(self, box: tuple[int, int, int, int], xlim: Sequence[float],
                 ylim: Sequence[float], logx: bool = False, logy: bool = False) -> None:
        self.box, self.logx, self.logy = box, logx, logy
        f = (lambda v, lg: math.log10(v) if lg else v)
        self.x0, self.x1 = f(xlim[0], logx), f(xlim[1], logx)
        self.y0, self.y1 = f(ylim[0], logy), f(ylim[1], logy)

    def __call__(self, x: float, y: float) -> tuple[float, float]:
        l, t, r, b = self.box
        xv = math.log10(x) if self.logx else x
        yv = math.log10(y) if self.logy else y
        return (l + (xv - self.x0) / (self.x1 - self.x0) * (r - l),
                b - (yv - self.y0) / (self.y1 - self.y0) * (b - t))

    def frame(self, draw: ImageDraw.ImageDraw, xticks: Sequence[float],
              yticks: Sequence[float], font: ImageFont.ImageFont) -> None:
        l, t, r, b = self.box
        for v in xticks:
            px = self(v, self._ymin())[0]
            draw.line([(px, t), (px, b)], fill=_GRID)
            draw.text((px, b + 4), _fmt(v), fill=_INK, font=font, anchor="mt")
        for v in yticks:
            py = self(self._xmin(), v)[1]
            draw.line([(l, py), (r, py)], fill=_GRID)
            draw.text((l - 5, py), _fmt(v), fill=_INK, font=font, anchor="rm")
        draw.rectangle([l, t, r, b], outline=_INK)

    def _xmin(self) -> float:
        return 10 ** self.x0 if self.logx else self.x0

    def _ymin(self) -> float:
        return 10 ** self.y0 if self.logy else self.y0


def _dot(draw: ImageDraw.ImageDraw, p: tuple[float, float], rad: float,
         colour: tuple[int, int, int], filled: bool = True) -> None:
    box = [p[0] - rad, p[1] - rad, p[0] + rad, p[1] + rad]
    draw.ellipse(box, fill=colour if filled else _BG, outline=_INK if filled else colour,
                 width=1 if filled else 2)


def _panel_a(draw: ImageDraw.ImageDraw, res: SpectralResult, box: tuple[int, int, int, int],
             font: ImageFont.ImageFont) -> None:
    corr = res.correlation
    finite = corr[np.isfinite(corr)]
    ylo = min(0.0, math.floor(float(finite.min()) * 10) / 10) if finite.size else 0.0
    ax = _Axes(box, (0, res.max_lag), (ylo, 1.0))
    step = max(1, round(res.max_lag / 8 / 5) * 5) if res.max_lag > 10 else 2
    ax.frame(draw, list(range(0, res.max_lag + 1, step)),
             [v / 5 for v in range(math.ceil(ylo * 5), 6)], font)
    bands = len(corr)
    for r, curve in enumerate(corr):
        if not np.isfinite(curve).all():
            continue
        pts = [ax(float(d), float(c)) for d, c in zip(res.lags, curve)]
        draw.line(pts, fill=band_colour(r, bands), width=2)
    for r, curve in enumerate(corr):
        h = res.horizon[r]
        if res.status[r] == "ok" and np.isfinite(h):
            c = float(np.interp(h, res.lags, curve))
            _dot(draw, ax(float(h), c), 4, band_colour(r, bands))
    l, t, rr, b = box
    draw.text((l, t - 12), "(a) correlation C_r(d) by band", fill=_INK, font=font, anchor="lb")
    draw.text(((l + rr) / 2, b + 22), "lag d (frames)", fill=_INK, font=font, anchor="mt")
    # colour key above the box (curves fill the top of the plot): low -> high frequency
    kx, ky, kw = rr - 40 - 100, t - 20, 100
    for i in range(kw):
        draw.line([(kx + i, ky), (kx + i, ky + 8)],
                  fill=band_colour(round(i / (kw - 1) * (bands - 1)), bands))
    draw.text((kx - 4, ky + 4), "low f", fill=_INK, font=font, anchor="rm")
    draw.text((kx + kw + 4, ky + 4), "high", fill=_INK, font=font, anchor="lm")


def _panel_b(draw: ImageDraw.ImageDraw, res: SpectralResult, box: tuple[int, int, int, int],
             font: ImageFont.ImageFont) -> None:
    l, t, rr, b = box
    draw.text((l, t - 12), "(b) boundary (t*(r), r) and fit r* ~ t^-b", fill=_INK, font=font,
              anchor="lb")
    draw.text(((l + rr) / 2, b + 22), "horizon t* (frames, log)", fill=_INK, font=font,
              anchor="mt")
    draw.text((l + 6, t + 6), "radius r (cycles/px, log)", fill=_INK, font=font, anchor="lt")
    shown = [r for r, h in enumerate(res.horizon)
             if np.isfinite(h) and h > 0 and res.status[r] != "empty"]
    xs = [res.horizon[r] for r in shown] + [1.0, float(res.max_lag)]
    xlim = (min(xs) / 1.3, max(xs) * 1.3)
    ylim = (float(res.band_radius[0]) / 1.3, 0.5 * 1.3)
    ax = _Axes(box, xlim, ylim, logx=True, logy=True)
    ax.frame(draw, _log_ticks(*xlim), _log_ticks(*ylim), font)
    step = [(float(d), float(s)) for d, s in zip(res.lags, res.stable_radius)
            if d >= 1 and np.isfinite(s)]
    if len(step) > 1:
        pts = []
        for (d0, s0), (d1, _s1) in zip(step, step[1:]):
            pts += [ax(d0, s0), ax(d1, s0)]
        draw.line(pts, fill=_STEP, width=2)
    if res.fitted:
        fx = [res.horizon[r] for r in res.fit_bands]
        lo, hi = math.log(min(fx) / 1.2), math.log(max(fx) * 1.2)
        xs_fit = [math.exp(lo + (hi - lo) * i / 60) for i in range(61)]
        line = [(x, math.exp(res.intercept - res.b * math.log(x))) for x in xs_fit]
        inside = [ax(x, y) for x, y in line if ylim[0] <= y <= ylim[1]]  # clip to the box
        if len(inside) > 1:
            draw.line(inside, fill=_FIT, width=3)
    bands = len(res.band_radius)
    for r in shown:
        _dot(draw, ax(float(res.horizon[r]), float(res.band_radius[r])), 5,
             band_colour(r, bands), filled=r in res.fit_bands)
    if res.fitted:
        text = (f"b = {res.b:.2f} [{res.b_ci[0]:.2f}, {res.b_ci[1]:.2f}]  R^2 = "
                f"{res.r_squared:.2f}\nsuggested beta = {res.suggested_beta:.2f} (1 - b, ours)")
    else:
        text = "no power law fitted"
    draw.multiline_text((rr - 8, b - 8), text, fill=_FIT, font=font, anchor="rd", align="right")


def draw_spectral(res: SpectralResult, width: int = 1200, height: int = 520,
                  title: str | None = None) -> Image.Image:
    """Render the two panels of Figure 2 for ``res`` as an RGB ``PIL.Image``."""
    if width < 400 or height < 240:
        raise ValueError(f"plot must be at least 400x240 pixels, got {width}x{height}")
    img = Image.new("RGB", (width, height), _BG)
    draw = ImageDraw.Draw(img)
    font = _font(max(10, height // 38))
    top, bottom = 60, height - 50
    half = width // 2
    _panel_a(draw, res, (60, top, half - 30, bottom), font)
    _panel_b(draw, res, (half + 60, top, width - 25, bottom), font)
    c, h, w = res.frame_shape
    head = title or f"spectral decay: {res.num_frames} frames, {c} ch, {h}x{w}"
    draw.text((width / 2, 8), head, fill=_INK, font=font, anchor="mt")
    return img
