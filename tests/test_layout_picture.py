"""The memory-layout picture is drawn from the planner."""
from __future__ import annotations

import pytest
from PIL import Image

from fademem_core.memory.picture import _ANCHOR, _BACKGROUND, draw_layout
from fademem_core.memory.planner import plan_history, plan_layout

LEFT, TOP, BOTTOM = 44, 26, 34  # the picture's plot margins


def _runs(image: Image.Image, y: int) -> list[tuple[int, int]]:
    """Non-background runs (start, stop) along pixel row ``y`` inside the plot."""
    runs, start = [], None
    for x in range(LEFT + 1, image.width - 13):
        inside = image.getpixel((x, y)) != _BACKGROUND
        if inside and start is None:
            start = x
        elif not inside and start is not None:
            runs.append((start, x))
            start = None
    if start is not None:
        runs.append((start, image.width - 13))
    return runs


@pytest.mark.parametrize("budget,beta,anchor", [(6, 0.3, True), (5, 1.0, False), (4, 0.5, True)])
def test_rows_show_the_planned_entries(budget, beta, anchor):
    frames, height = 24, 24 * 12 + TOP + BOTTOM
    image = draw_layout(frames, budget, beta, anchor, width=24 * 24 + 56, height=height)
    assert image.size == (24 * 24 + 56, height) and image.mode == "RGB"
    col = (image.width - LEFT - 12) / frames
    for t, entries in enumerate(plan_history(frames, budget, beta, anchor)):
        y = int(TOP + (t + 0.4) * 12)
        runs = _runs(image, y)
        assert len(runs) == len(entries)
        # each bar covers its span's frames
        for (x0, x1), (_, span) in zip(runs, entries):
            assert abs((x1 - x0) - span * col) <= 3
        anchor_px = image.getpixel((runs[0][0] + 2, y))
        assert (anchor_px == _ANCHOR) == anchor


def test_parameters_change_the_picture():
    a = draw_layout(40, 8, 0.1).tobytes()
    b = draw_layout(40, 8, 1.0).tobytes()
    assert plan_layout(40, 8, 0.1) != plan_layout(40, 8, 1.0) and a != b


def test_long_rollout_draws_quickly_at_default_size():
    image = draw_layout(480, 12, 0.3)
    assert image.size == (768, 512)


@pytest.mark.parametrize("kwargs,word", [
    (dict(num_frames=0), "num_frames"), (dict(beta=0.0), "beta"), (dict(budget=2), "budget"),
    (dict(width=10), "width"), (dict(height=2.5), "height"), (dict(anchor=None), "anchor"),
])
def test_bad_input(kwargs, word):
    args = dict(num_frames=10, budget=12, beta=0.3)
    args.update(kwargs)
    with pytest.raises(ValueError, match=word):
        draw_layout(**args)


def test_a_long_rollout_is_drawn_from_one_layout_per_pixel_row(monkeypatch):
    from fademem_core.memory import picture, planner

    asked = []
    real = planner.plan_snapshots

    def spy(frames, budget, beta, anchor, at):
        asked.append(list(at))
        return real(frames, budget, beta, anchor, at)

    monkeypatch.setattr(picture, "plan_snapshots", spy)
    image = picture.draw_layout(4000, 12, 0.3, height=300)
    plot_h = 300 - TOP - BOTTOM
    assert image.size == (768, 300)
    (at,) = asked
    assert len(at) <= plot_h and at[-1] == 4000  # never the whole 4000-row history
