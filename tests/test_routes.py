"""GET /fademem/plan as a pure function: parameters in, (status, JSON) out."""
from __future__ import annotations

import json

import pytest

from tests.support.pack import node_module

routes = node_module("routes")


def plan(**query):
    return routes.plan_response({k: str(v) for k, v in query.items()})


def test_defaults_are_a_60_second_paper_layout():
    status, body = routes.plan_response({})
    assert status == 200
    assert (body["frames"], body["budget"], body["beta"], body["anchor"]) == (240, 12, 0.3, True)
    json.dumps(body)  # plain JSON


@pytest.mark.parametrize("frames,budget,beta,anchor", [(240, 12, 0.3, True), (37, 5, 0.9, False), (3, 8, 1.0, True),
                                                       (500, 20, 0.1, True)])
def test_layout_is_ordered_contiguous_and_bounded(frames, budget, beta, anchor):
    status, body = plan(frames=frames, budget=budget, beta=beta, anchor=str(anchor).lower())
    assert status == 200
    entries = body["entries"]
    assert len(entries) == min(frames, budget)
    assert sum(span for _, span in entries) == frames  # every frame summarised exactly once
    start = 0
    for mu, span in entries:  # each centre is the mean frame index of its contiguous span
        assert mu == pytest.approx(start + (span - 1) / 2)
        start += span
    assert entries[-1] == [frames - 1, 1]  # the newest frame is never merged
    if anchor:
        assert entries[0] == [0.0, 1]
    rows = body["history"]
    ts = [t for t, _ in rows]
    assert ts == sorted(set(ts)) and ts[-1] == frames and len(rows) <= routes.MAX_ROWS
    for t, row in rows:
        assert sum(span for _, span in row) == t and len(row) == min(t, budget)
    assert rows[-1][1] == entries


def test_smaller_beta_keeps_more_recent_frames_exact():
    exact = {}
    for beta in (0.1, 1.0):
        _, body = plan(frames=240, budget=12, beta=beta)
        exact[beta] = sum(1 for _, span in body["entries"] if span == 1)
    assert exact[0.1] > exact[1.0]


def test_same_planner_as_the_core():
    from fademem_core.memory.planner import plan_layout

    _, body = plan(frames=100, budget=9, beta=0.45, anchor="0")
    assert [tuple(e) for e in body["entries"]] == plan_layout(100, 9, 0.45, anchor=False)


@pytest.mark.parametrize("query,needle", [
    ({"frames": "ten"}, "frames"),
    ({"frames": "0"}, "frames"),
    ({"frames": str(routes.MAX_FRAMES + 1)}, "frames"),
    ({"budget": "2"}, "budget"),
    ({"budget": "1.5"}, "budget"),
    ({"beta": "0"}, "beta"),
    ({"beta": "1.5"}, "beta"),
    ({"beta": "nan"}, "beta"),
    ({"beta": "abc"}, "beta"),
    ({"anchor": "maybe"}, "anchor"),
])
def test_bad_parameters_are_400_naming_the_parameter(query, needle):
    status, body = routes.plan_response(query)
    assert status == 400
    assert needle in body["error"] and set(body) == {"error"}


def test_budget_two_needs_the_anchor_off():
    assert plan(budget=2, anchor="true")[0] == 400
    status, body = plan(budget=2, anchor="false", frames=10)
    assert status == 200 and len(body["entries"]) == 2


def test_history_rows_are_spread_and_end_at_the_last_frame():
    assert routes._rows(5, 10) == [1, 2, 3, 4, 5]
    rows = routes._rows(1000, 96)
    assert len(rows) == 96 and rows[-1] == 1000 and rows[0] >= 1
    gaps = [b - a for a, b in zip(rows, rows[1:])]
    assert max(gaps) - min(gaps) <= 1


def test_budget_is_capped_at_the_cache_widgets_maximum():
    cache = node_module("cache")
    assert cache.FadeMemCache.INPUT_TYPES()["required"]["budget"][1]["max"] == cache.MAX_BUDGET
    assert plan(frames=routes.MAX_FRAMES, budget=cache.MAX_BUDGET)[0] == 200
    status, body = plan(frames=routes.MAX_FRAMES, budget=cache.MAX_BUDGET + 1)
    assert status == 400 and "budget" in body["error"] and str(cache.MAX_BUDGET) in body["error"]


def test_the_route_never_builds_the_whole_history(monkeypatch):
    from fademem_core.memory import planner as schedule

    def refuse(*a, **k):
        raise AssertionError("plan_history holds every row; the route needs MAX_ROWS of them")

    monkeypatch.setattr(schedule, "plan_history", refuse)
    status, body = plan(frames=routes.MAX_FRAMES, budget=200)
    assert status == 200 and len(body["history"]) == routes.MAX_ROWS
    assert body["history"][-1] == [routes.MAX_FRAMES, body["entries"]]
