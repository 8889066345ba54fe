"""FadeMem: a bounded memory whose resolution fades with temporal distance (paper Sec. 3.3)."""
from __future__ import annotations

from dataclasses import dataclass

from ...checks import check_beta, check_budget, check_int
from ..contract import Decision, Keep, Merge, MemoryView
from ..planner import closest_pair, merged_entry
from ..positions import check_positions
from ..storage import check_operator
from .base import CachePolicy


@dataclass(frozen=True)
class FadeMem(CachePolicy):
    """Distance-aware KV consolidation: merge the adjacent pair closest in warped time.

    When an inserted frame overflows the budget, the adjacent pair whose warped times
    ``(t - mu) ** beta`` are closest is merged (:func:`~fademem_core.memory.planner.closest_pair`,
    the planner's own rule), so the far past fades into ever coarser entries while recent
    frames stay exact.  A chunk sees ``budget + chunk`` frames.

    Parameters
    ----------
    budget : int
        Memory entries held between chunks, the anchor included (>= 3 with the anchor, >= 2
        without).  Paper: *FadeMem*, Sec. 3.3 and Algorithm 1 (budget ``M``).
    beta : float
        Distance warp in (0, 1]; smaller merges the far past harder (paper Eq. 4, ``beta``;
        suggested by the spectral analysis of Sec. 3.2).
    anchor : bool
        Keep the first frame exact forever (the paper's first-frame anchor).
    operator : str
        How a merged pair's K/V combine: ``weighted_average`` (span-weighted, the paper's),
        ``average``, ``select_nearest`` (keep the newer) or ``max_pool`` (ablations, Table 4).
    positions : str
        Position strategy: ``absolute`` (an entry at its centre ``mu``) or ``packed``.
    """

    budget: int = 12
    beta: float = 0.3
    anchor: bool = True
    operator: str = "weighted_average"
    positions: str = "absolute"

    def __post_init__(self) -> None:
        check_budget(self.budget, self.anchor)
        check_beta(self.beta)
        check_operator(self.operator)
        check_positions(self.positions)

    def history_frames(self, chunk: int = 3) -> int | None:
        return self.budget

    def visible_frames(self, chunk: int) -> int | None:
        return self.budget + check_int("chunk", chunk, 1)

    @property
    def merges(self) -> bool:
        # a merged entry moves to its new centre, so its key is re-encoded from the un-roped
        # temporal channels whatever the operator
        return True

    def decide(self, memory: MemoryView) -> Decision:
        held = memory.held
        if len(held) <= self.budget:
            return Keep()
        i = closest_pair([e.mu for e in held], memory.newest, self.beta, self.anchor)
        a, b = held[i], held[i + 1]
        mu, span = merged_entry(a.mu, a.span, b.mu, b.span)
        return Merge(i, mu, span, self.operator)
