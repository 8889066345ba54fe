"""FadeMem: a bounded memory whose resolution fades with temporal distance (paper Sec. 3.3)."""
from __future__ import annotations

from dataclasses import dataclass

from ..planner import Layout, check_beta, check_budget
from ..storage import check_operator
from .base import CachePolicy, KVCache, KVGeometry, check_int, check_positions


def _follow_layout(layout: Layout):
    """Admit rule: mirror the planner; merge exactly the pair it merged, with its (mu, span)."""

    def admit(cache) -> None:
        pair = layout.insert()
        if pair is not None:
            mu, span = layout.entries[pair]
            cache.merge(pair, mu=mu, span=span)

    return admit


@dataclass(frozen=True)
class FadeMem(CachePolicy):
    """Distance-aware KV consolidation.

    ``budget`` counts history entries (the anchor included); a chunk sees ``budget + chunk``
    frames.  When an inserted frame overflows the budget, the adjacent pair closest in warped
    time ``(t - mu) ** beta`` is merged with ``operator`` (``weighted_average``, ``average``,
    ``select_nearest`` or ``max_pool``).  ``anchor`` protects the first frame.
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
    def needs_raw_temporal(self) -> bool:
        # a merged entry moves to its new centre (packed: every entry's index shifts), so its
        # key is re-encoded from the un-roped temporal channels whatever the operator
        return True

    def make_cache(
        self, geometry: KVGeometry, chunk: int, max_frames: int | None = None
    ) -> KVCache:
        from ..cache import SlotCache  # memory imports this package's base module

        layout = Layout(self.budget, self.beta, self.anchor)
        return SlotCache(geometry, chunk, self.budget, self.positions, operator=self.operator,
                         admit=_follow_layout(layout), raw_temporal=self.needs_raw_temporal)
