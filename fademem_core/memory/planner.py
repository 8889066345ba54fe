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
import numbers

Entry = tuple[float, int]


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an int, or raise ValueError naming it (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_beta(beta: object) -> float:
    """Return ``beta`` as a float in (0, 1], or raise ValueError naming it."""
    if isinstance(beta, bool) or not isinstance(beta, numbers.Real):
        raise ValueError(f"beta must be a number in (0, 1], got {beta!r}")
    value = float(beta)
    if not (0.0 < value <= 1.0):  # also refuses NaN
        raise ValueError(f"beta must be a number in (0, 1], got {beta!r}")
    return value


def check_budget(budget: object, anchor: object) -> int:
    """Validate ``anchor`` (a bool) and ``budget`` (>= 3 with the anchor, >= 2 without)."""
    if not isinstance(anchor, bool):
        raise ValueError(f"anchor must be True or False, got {anchor!r}")
    return check_int("budget", budget, 3 if anchor else 2)


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
    def entries(self) -> list[Entry]:
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
        i = self._pick_pair(t)
        s = self._span[i] + self._span[i + 1]
        mu = (self._span[i] * self._mu[i] + self._span[i + 1] * self._mu[i + 1]) / s
        self._mu[i : i + 2] = [mu]
        self._span[i : i + 2] = [s]
        return i

    def _pick_pair(self, t: int) -> int:
        beta, mu = self.beta, self._mu
        first = 1 if self.anchor else 0
        # pairs (i, i+1) with i+1 < newest index; the budget checks guarantee one exists
        warped = [(t - m) ** beta for m in mu[first:-1]]
        best_i, best_gap = first, math.inf
        for k in range(len(warped) - 1):
            gap = abs(warped[k + 1] - warped[k])
            if gap < best_gap:  # strict: ties keep the oldest pair
                best_i, best_gap = first + k, gap
        return best_i


def plan_history(
    num_frames: int, budget: int, beta: float, anchor: bool = True
) -> list[list[Entry]]:
    """The layout after each insertion: element ``t`` is the memory once frames 0..t are in."""
    layout = Layout(budget, beta, anchor)
    frames = check_int("num_frames", num_frames, 0)
    history = []
    for _ in range(frames):
        layout.insert()
        history.append(layout.entries)
    return history


def plan_layout(num_frames: int, budget: int, beta: float, anchor: bool = True) -> list[Entry]:
    """The memory after frames ``0..num_frames-1`` were inserted: ``(mu, span)`` oldest first."""
    layout = Layout(budget, beta, anchor)
    frames = check_int("num_frames", num_frames, 0)
    for _ in range(frames):
        layout.insert()
    return layout.entries
