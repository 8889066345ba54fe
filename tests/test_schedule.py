"""The pure-Python FadeMem planner: properties (hypothesis) and cases worked out by hand."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fademem_core.memory.planner import Layout, plan_history, plan_layout

budgets_anchor = st.integers(min_value=3, max_value=20)
betas = st.floats(min_value=1e-3, max_value=1.0, allow_nan=False)
frames = st.integers(min_value=0, max_value=120)


def _check_invariants(entries, seen, budget, anchor):
    assert len(entries) <= budget
    assert sum(s for _, s in entries) == seen
    mus = [m for m, _ in entries]
    assert all(a < b for a, b in zip(mus, mus[1:]))
    # entries tile the frames 0..seen-1 in order; a merged entry's mu is its frames' mean
    first = 0
    for mu, span in entries:
        assert span >= 1
        assert math.isclose(mu, first + (span - 1) / 2, rel_tol=0, abs_tol=1e-9)
        first += span
    if seen:
        assert entries[-1] == (float(seen - 1), 1)
        if anchor:
            assert entries[0] == (0.0, 1)


@settings(max_examples=150, deadline=None)
@given(frames, budgets_anchor, betas, st.booleans())
def test_history_invariants(num_frames, budget, beta, anchor):
    history = plan_history(num_frames, budget, beta, anchor)
    assert len(history) == num_frames
    for t, entries in enumerate(history):
        _check_invariants(entries, t + 1, budget, anchor)
    assert plan_layout(num_frames, budget, beta, anchor) == (history[-1] if history else [])


@settings(max_examples=100, deadline=None)
@given(frames, budgets_anchor, betas, st.booleans())
def test_insert_reports_the_merged_pair(num_frames, budget, beta, anchor):
    layout = Layout(budget, beta, anchor)
    for t in range(num_frames):
        before = layout.entries + [(float(t), 1)]
        pair = layout.insert()
        after = layout.entries
        if pair is None:
            assert len(before) <= budget and after == before
            continue
        assert len(before) == budget + 1 and len(after) == budget
        assert pair < len(before) - 2  # the newest entry is never merged
        assert pair >= (1 if anchor else 0)
        (m1, s1), (m2, s2) = before[pair], before[pair + 1]
        assert after[pair] == ((s1 * m1 + s2 * m2) / (s1 + s2), s1 + s2)
        assert after[:pair] == before[:pair] and after[pair + 1 :] == before[pair + 2 :]
        # the merged pair has the smallest warped gap (ties: the oldest)
        gaps = [abs((t - before[i + 1][0]) ** beta - (t - before[i][0]) ** beta)
                for i in range(len(before) - 2)]
        eligible = range(1 if anchor else 0, len(before) - 2)
        assert gaps[pair] == min(gaps[i] for i in eligible)
        assert all(gaps[i] > gaps[pair] for i in eligible if i < pair)


def test_no_merge_within_budget():
    assert plan_layout(5, 12, 0.3) == [(float(t), 1) for t in range(5)]
    assert plan_layout(0, 12, 0.3) == []


def test_hand_worked_budget3_beta1():
    # t=3: only pair (1,2) is eligible (anchor and newest protected) -> (1.5, 2)
    assert plan_layout(4, 3, 1.0) == [(0.0, 1), (1.5, 2), (3.0, 1)]
    # t=4: again only (1,2): spans 2+1, mu = (2*1.5 + 3) / 3 = 2
    assert plan_layout(5, 3, 1.0) == [(0.0, 1), (2.0, 3), (4.0, 1)]


def test_hand_worked_tie_goes_to_oldest():
    # beta=1: every gap between unit-spaced entries is 1 -> the oldest pair (0,1) merges
    assert plan_layout(5, 4, 1.0, anchor=False) == [(0.5, 2), (2.0, 1), (3.0, 1), (4.0, 1)]


def test_hand_worked_beta_half():
    # t=4: d=3,2,1 -> sqrt gaps 0.318 (pair 1,2) < 0.414 (pair 2,3)
    assert plan_layout(5, 4, 0.5) == [(0.0, 1), (1.5, 2), (3.0, 1), (4.0, 1)]
    # t=5: pair (1,2) d=3.5,2 -> 0.457; pair (2,3) d=2,1 -> 0.414 wins
    assert plan_layout(6, 4, 0.5) == [(0.0, 1), (1.5, 2), (3.5, 2), (5.0, 1)]


def test_small_beta_compresses_the_distant_past_harder():
    # Distance warping: with a smaller beta the oldest non-anchor entry covers more frames.
    far_small = plan_layout(60, 8, 0.1)[1][1]
    far_large = plan_layout(60, 8, 1.0)[1][1]
    assert far_small > far_large


@pytest.mark.parametrize("beta", [0, 0.0, -0.1, 1.0000001, 2, float("nan"), float("inf"),
                                  True, "0.3", None])
def test_bad_beta(beta):
    with pytest.raises(ValueError, match="beta"):
        plan_layout(4, 12, beta)


@pytest.mark.parametrize("budget,anchor", [(2, True), (1, False), (0, False), (-3, True),
                                           (3.0, True), (True, False), ("12", True), (None, True)])
def test_bad_budget(budget, anchor):
    with pytest.raises(ValueError, match="budget"):
        plan_layout(4, budget, 0.3, anchor)


@pytest.mark.parametrize("num_frames", [-1, 2.5, True, "3", None])
def test_bad_num_frames(num_frames):
    with pytest.raises(ValueError, match="num_frames"):
        plan_layout(num_frames, 12, 0.3)
    with pytest.raises(ValueError, match="num_frames"):
        plan_history(num_frames, 12, 0.3)


@pytest.mark.parametrize("anchor", [1, "yes", None])
def test_bad_anchor(anchor):
    with pytest.raises(ValueError, match="anchor"):
        plan_layout(4, 12, 0.3, anchor)


def test_minimum_budgets_are_accepted():
    assert len(plan_layout(30, 3, 0.3, True)) == 3
    assert len(plan_layout(30, 2, 0.3, False)) == 2
    assert plan_layout(3, 12, 1) == [(0.0, 1), (1.0, 1), (2.0, 1)]  # integer beta 1 is fine


def test_planner_does_not_import_torch():
    code = "import sys, fademem_core.memory.planner as s; s.plan_layout(40, 12, 0.3); " \
           "sys.exit(1 if 'torch' in sys.modules else 0)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


# ----------------------------------------------------------------------------- cost caps
def test_snapshots_are_the_history_rows():
    from fademem_core.memory.planner import plan_snapshots

    history = plan_history(50, 7, 0.4, anchor=True)
    at = [1, 2, 9, 30, 50]
    assert plan_snapshots(50, 7, 0.4, True, at) == [history[t - 1] for t in at]
    with pytest.raises(ValueError, match="ascending"):
        plan_snapshots(50, 7, 0.4, True, [9, 2])
    with pytest.raises(ValueError, match="ascending"):
        plan_snapshots(50, 7, 0.4, True, [51])


@pytest.mark.parametrize("plan", [plan_layout, plan_history])
def test_a_plan_longer_than_the_cap_is_refused_before_any_work(plan):
    from fademem_core.memory.planner import MAX_PLAN_FRAMES

    with pytest.raises(ValueError, match=f"num_frames must be <= {MAX_PLAN_FRAMES}"):
        plan(10**300, 12, 0.3)
    with pytest.raises(ValueError, match="num_frames"):
        plan(MAX_PLAN_FRAMES + 1, 12, 0.3)


@pytest.mark.parametrize("plan", [plan_layout, plan_history])
def test_a_plan_with_too_many_merge_evaluations_is_refused(plan):
    from fademem_core.memory.planner import MAX_PLAN_FRAMES, MAX_PLAN_WORK

    budget = 4096  # (frames - budget) * (budget - 1) evaluations
    frames = budget + MAX_PLAN_WORK // (budget - 1) + 1
    assert frames <= MAX_PLAN_FRAMES
    with pytest.raises(ValueError, match=f"{MAX_PLAN_WORK}.*budget"):
        plan(frames, budget, 0.3)


def test_a_history_holding_too_many_entries_is_refused_a_layout_is_not():
    from fademem_core.memory.planner import MAX_HISTORY_ENTRIES

    frames = 2 * int(MAX_HISTORY_ENTRIES ** 0.5)  # no merge at all: the copies are the cost
    with pytest.raises(ValueError, match="entries"):
        plan_history(frames, frames, 0.3)
    assert len(plan_layout(frames, frames, 0.3)) == frames

