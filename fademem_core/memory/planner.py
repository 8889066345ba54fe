"""The FadeMem layout planner (pure Python, no torch): the single source of truth.

The tensor memory, the layout picture and the UI's live preview all follow this schedule
(paper Sec. 3.3, Algorithm 1), made precise:

1. Frames are inserted one at a time; frame ``t`` (0-based) enters as ``(mu=t, span=1)``.
2. The budget ``M`` counts every entry, the first-frame anchor included.
3. When an insertion makes ``M + 1`` entries, exactly one adjacent pair ``(i, i+1)`` is
   merged.  The newest entry is never in a pair; with ``anchor=True`` neither is entry 0.
4. ``gap_i = |(t - mu_{i+1})**beta - (t - mu_i)**beta|`` in float64, ``t`` = the newest
   frame's index.  The smallest gap wins; exact ties go to the oldest pair.
5. The merged entry has ``span = s_i + s_{i+1}`` and ``mu`` = the span-weighted mean.
"""
from __future__ import annotations

import math
from typing import Sequence

from ..checks import (MAX_HISTORY_ENTRIES, MAX_PLAN_FRAMES, MAX_PLAN_WORK, check_beta,  # noqa: F401
                      check_budget, check_int, check_plan_cost)

LayoutEntry = tuple[float, int]  # (mu, span) of one entry of the plan

__all__ = ["Layout", "LayoutEntry", "closest_pair", "merged_entry", "plan_history", "plan_layout"]


def closest_pair(mu: Sequence[float], t: int, beta: float, anchor: bool) -> int:
    """Index ``i`` of the pair ``(i, i+1)`` to merge once the memory overflows (rules 3-4).

    ``mu`` are the held centres oldest first, the newest frame ``t`` last.  Candidates are the
    pairs that leave the newest entry (and, with ``anchor``, entry 0) alone; the smallest gap
    ``|(t - mu_{i+1})**beta - (t - mu_i)**beta|`` (float64) wins, ties go to the oldest pair.
    The planner and the FadeMem policy both call this: one source of truth.
    """
    first = 1 if anchor else 0
    warped = [(t - m) ** beta for m in mu[first:-1]]
    if len(warped) < 2:
        raise ValueError(f"no pair to merge among {len(mu)} entries (anchor={anchor})")
    best_i, best_gap = first, math.inf
    for k in range(len(warped) - 1):
        gap = abs(warped[k + 1] - warped[k])
        if gap < best_gap:  # strict: ties keep the oldest pair
            best_i, best_gap = first + k, gap
    return best_i


def merged_entry(mu_a: float, span_a: int, mu_b: float, span_b: int) -> LayoutEntry:
    """``(mu, span)`` of two merged entries: spans add, ``mu`` is the span-weighted mean (rule 5)."""
    span = span_a + span_b
    return (span_a * mu_a + span_b * mu_b) / span, span


class Layout:
    """The FadeMem memory layout, updated one inserted frame at a time.

    >>> layout = Layout(budget=3, beta=1.0)
    >>> [layout.insert() for _ in range(4)]
    [None, None, None, 1]
    >>> layout.entries
    [(0.0, 1), (1.5, 2), (3.0, 1)]
    """

    def __init__(self, budget: int, beta: float, anchor: bool = True) -> None:
        self.budget = check_budget(budget, anchor)
        self.beta = check_beta(beta)
        self.anchor = anchor
        self._mu: list[float] = []
        self._span: list[int] = []
        self.frames_seen = 0

    @property
    def entries(self) -> list[LayoutEntry]:
        """``(mu, span)`` per entry, oldest first (a copy)."""
        return list(zip(self._mu, self._span))

    def __len__(self) -> int:
        return len(self._mu)

    def insert(self) -> int | None:
        """Insert the next frame; return the index ``i`` of the merged pair ``(i, i+1)`` or None.

        After a merge, entry ``i`` is the consolidated entry and later entries shift down by one.
        """
        t = self.frames_seen
        self.frames_seen += 1
        self._mu.append(float(t))
        self._span.append(1)
        if len(self._mu) <= self.budget:
            return None
        i = closest_pair(self._mu, t, self.beta, self.anchor)
        mu, span = merged_entry(self._mu[i], self._span[i], self._mu[i + 1], self._span[i + 1])
        self._mu[i : i + 2] = [mu]
        self._span[i : i + 2] = [span]
        return i


def plan_history(
    num_frames: int, budget: int, beta: float, anchor: bool = True
) -> list[list[LayoutEntry]]:
    """The layout after each insertion: element ``t`` is the memory once frames 0..t are in."""
    layout = Layout(budget, beta, anchor)
    frames = check_plan_cost(num_frames, layout.budget, history=True)
    history = []
    for _ in range(frames):
        layout.insert()
        history.append(layout.entries)
    return history


def plan_layout(num_frames: int, budget: int, beta: float, anchor: bool = True) -> list[LayoutEntry]:
    """The memory after frames ``0..num_frames-1`` were inserted: ``(mu, span)`` oldest first."""
    layout = Layout(budget, beta, anchor)
    frames = check_plan_cost(num_frames, layout.budget)
    for _ in range(frames):
        layout.insert()
    return layout.entries


def plan_snapshots(
    num_frames: int, budget: int, beta: float, anchor: bool, at: list[int]
) -> list[list[LayoutEntry]]:
    """The layouts once ``t`` frames are in, for each ``t`` of ``at`` (ascending, 1..num_frames).

    What :func:`plan_history` gives at those rows, without holding every other row.
    """
    layout = Layout(budget, beta, anchor)
    frames = check_plan_cost(num_frames, layout.budget)
    wanted = [check_int("snapshot frame", t, 1) for t in at]
    if wanted != sorted(set(wanted)) or (wanted and wanted[-1] > frames):
        raise ValueError(f"at must be ascending frame counts in 1..{frames}, got {at!r}")
    out = []
    for t in wanted:
        while layout.frames_seen < t:
            layout.insert()
        out.append(layout.entries)
    return out

