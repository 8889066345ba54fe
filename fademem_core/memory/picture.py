"""A picture of the FadeMem memory hierarchy over a rollout, drawn from the planner.

Time (latent frame index) runs left to right; rollout steps run top to bottom (row ``t`` is the
memory once frames ``0..t`` are in).  Each entry is a bar over the frames it summarises,
coloured by span (pale = one frame, dark = many), with a tick at its centre ``mu``.  The first
frame anchor is orange.  Pillow only.
"""
from __future__ import annotations

import math

from PIL import Image, ImageDraw, ImageFont

from ..checks import check_beta, check_budget, check_int
from .planner import plan_snapshots

_BACKGROUND = (250, 250, 247)
_TEXT = (40, 40, 40)
_GRID = (225, 225, 220)
_ANCHOR = (235, 140, 40)
_FINE = (170, 205, 240)  # span 1
_COARSE = (45, 30, 110)  # the largest span of the picture
_TICK = (20, 20, 20)


def _span_colour(span: int, max_span: int) -> tuple[int, int, int]:
    if max_span <= 1:
        return _FINE
    x = math.log(span) / math.log(max_span)  # log scale: spans grow geometrically
    return tuple(round(a + (b - a) * x) for a, b in zip(_FINE, _COARSE))  # type: ignore


def _draw_axes(draw: ImageDraw.ImageDraw, font: ImageFont.ImageFont,
               plot: tuple[int, int, int, int], frames: int, final: list[tuple[float, int]],
               height: int) -> None:
    """Frame ticks along the bottom, step ticks on the left, the frame and the legend."""
    left, top, plot_w, plot_h = plot
    col, row = plot_w / frames, plot_h / frames
    step = max(1, round(frames / 8))
    for f in range(0, frames, step):
        x = left + (f + 0.5) * col
        draw.line([x, top + plot_h, x, top + plot_h + 4], fill=_TEXT)
        draw.text((x - 6, top + plot_h + 6), str(f), fill=_TEXT, font=font)
        y = top + (f + 0.5) * row
        draw.line([left - 4, y, left, y], fill=_TEXT)
        draw.text((4, y - 6), str(f), fill=_TEXT, font=font)
    draw.rectangle([left, top, left + plot_w, top + plot_h], outline=_GRID)
    legend = (f"latent frame ->   rows: step t   final: {len(final)} entries, "
              f"spans {[s for _, s in final]}")
    draw.text((left, height - 14), legend[: max(10, plot_w // 6)], fill=_TEXT, font=font)


def draw_layout(
    num_frames: int,
    budget: int,
    beta: float,
    anchor: bool = True,
    width: int = 768,
    height: int = 512,
    title: str | None = None,
) -> Image.Image:
    """Draw the memory layout after every insertion of a ``num_frames`` rollout.

    ``budget``, ``beta`` and ``anchor`` are FadeMem's (validated like :func:`plan_layout`);
    ``width``/``height`` are the image size in pixels.  Returns an RGB ``PIL.Image``.
    """
    check_budget(budget, anchor)
    beta = check_beta(beta)
    frames = check_int("num_frames", num_frames, 1)
    width = check_int("width", width, 160)
    height = check_int("height", height, 120)
    left, right, top, bottom = 44, 12, 26, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    col = plot_w / frames
    row = plot_h / frames
    # one layout per pixel row at most: a long rollout costs the planner, not the drawing
    rows = min(plot_h, frames)
    steps = sorted({max(1, round(frames * (i + 1) / rows)) for i in range(rows)})
    history = dict(zip(steps, plan_snapshots(frames, budget, beta, anchor, steps)))

    image = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default()

    heading = title or f"FadeMem layout: budget {budget}, beta {beta:g}, anchor {'on' if anchor else 'off'}"
    draw.text((left, 6), heading, fill=_TEXT, font=font)
    max_span = max(s for entries in history.values() for _, s in entries)

    for t, entries in ((n - 1, layout) for n, layout in history.items()):
        y0 = top + t * row
        y1 = max(y0 + 1, top + (t + 1) * row - (2 if row >= 4 else 0))
        first = 0
        for i, (mu, span) in enumerate(entries):
            x0 = left + first * col
            x1 = max(x0 + 1, left + (first + span) * col - (2 if col >= 4 else 0))
            colour = _ANCHOR if anchor and i == 0 else _span_colour(span, max_span)
            draw.rectangle([x0, y0, x1, y1], fill=colour)
            if col < 4 and i and span * col >= 3:  # too narrow for gaps: mark the boundary
                draw.line([x0, y0, x0, y1], fill=_BACKGROUND)
            if span > 1 and row >= 3:
                xm = left + (mu + 0.5) * col
                draw.line([xm, y0, xm, y1], fill=_TICK)
            first += span

    _draw_axes(draw, font, (left, top, plot_w, plot_h), frames, history[frames], height)
    return image
