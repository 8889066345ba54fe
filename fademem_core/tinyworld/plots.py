"""Minimal PIL line charts and film strips (no matplotlib)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PALETTE = (
    (31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14),
    (23, 190, 207), (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34),
)


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def line_chart(
    series: dict[str, tuple[np.ndarray, np.ndarray]],
    title: str,
    xlabel: str,
    ylabel: str,
    path: str | Path,
    size: tuple[int, int] = (720, 420),
) -> Path:
    """Draw ``{label: (x, y)}`` lines (NaNs break a line) to ``path`` (PNG); returns the path."""
    w, h = size
    left, right, top, bottom = 60, 190, 30, 45
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = _font()
    xs = np.concatenate([np.asarray(x, float) for x, _ in series.values()]) if series else np.zeros(1)
    ys = np.concatenate([np.asarray(y, float) for _, y in series.values()]) if series else np.zeros(1)
    ys = ys[np.isfinite(ys)]
    x0, x1 = float(np.nanmin(xs)), float(np.nanmax(xs))
    y0, y1 = (float(ys.min()), float(ys.max())) if ys.size else (0.0, 1.0)
    y0 = min(y0, 0.0) if y0 >= 0 and y0 < 0.5 * y1 else y0
    if y1 - y0 < 1e-9:
        y1 = y0 + 1.0
    if x1 - x0 < 1e-9:
        x1 = x0 + 1.0
    pad = 0.05 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad

    def px(x: float, y: float) -> tuple[float, float]:
        return (left + (x - x0) / (x1 - x0) * (w - left - right), top + (y1 - y) / (y1 - y0) * (h - top - bottom))

    d.rectangle([left, top, w - right, h - bottom], outline=(0, 0, 0))
    for i in range(5):
        yv = y0 + (y1 - y0) * i / 4
        _, yy = px(x0, yv)
        d.line([left - 4, yy, left, yy], fill=(0, 0, 0))
        d.line([left + 1, yy, w - right - 1, yy], fill=(235, 235, 235))
        d.text((4, yy - 6), f"{yv:.3g}", fill=(0, 0, 0), font=font)
        xv = x0 + (x1 - x0) * i / 4
        xx, _ = px(xv, y0)
        d.line([xx, h - bottom, xx, h - bottom + 4], fill=(0, 0, 0))
        d.text((xx - 10, h - bottom + 6), f"{xv:.0f}", fill=(0, 0, 0), font=font)
    d.text((left, 8), title, fill=(0, 0, 0), font=font)
    d.text(((w - right + left) // 2 - 30, h - 16), xlabel, fill=(0, 0, 0), font=font)
    d.text((4, top - 20), ylabel, fill=(80, 80, 80), font=font)
    for i, (label, (x, y)) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        pts: list[tuple[float, float]] = []
        for xv, yv in zip(np.asarray(x, float), np.asarray(y, float)):
            if math.isfinite(yv):
                pts.append(px(xv, yv))
            else:
                if len(pts) > 1:
                    d.line(pts, fill=color, width=2)
                pts = []
        if len(pts) > 1:
            d.line(pts, fill=color, width=2)
        for p in pts[-1:]:
            d.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=color)
        ly = top + 4 + 14 * i
        d.line([w - right + 8, ly + 6, w - right + 24, ly + 6], fill=color, width=3)
        d.text((w - right + 28, ly), label[:26], fill=(0, 0, 0), font=font)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out


def film_strip(rows: dict[str, np.ndarray], path: str | Path, label_width: int = 150) -> Path:
    """Stack ``{label: frames [N, H, W, 3] uint8}`` as labelled rows into one PNG."""
    font = _font()
    first = next(iter(rows.values()))
    n, fh, fw, _ = first.shape
    img = Image.new("RGB", (label_width + n * (fw + 2), len(rows) * (fh + 4)), "white")
    d = ImageDraw.Draw(img)
    for r, (label, frames) in enumerate(rows.items()):
        y = r * (fh + 4)
        d.text((4, y + fh // 2 - 6), label[:24], fill=(0, 0, 0), font=font)
        for i, fr in enumerate(frames):
            img.paste(Image.fromarray(fr), (label_width + i * (fw + 2), y))
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out)
    return out
