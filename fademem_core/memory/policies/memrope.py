"""MemRoPE's memory (YoungRaeKimm/MemRoPE, ``wan/modules/causal_model.py``, ``compression_method:
ema``): a sink, a slow and a fast moving average of the evicted frames, the recent frames and
the chunk, all re-roped at 0..W-1 (block-relative positions)."""
from __future__ import annotations

from dataclasses import dataclass

from ...checks import check_choice, check_int, check_real
from ..contract import Average, Decision, Keep, MemoryView
from .base import CachePolicy

AVERAGES = 2  # the long- and the short-term slot


@dataclass(frozen=True)
class MemRope(CachePolicy):
    """Sink + long/short exponential moving averages + recent frames, positions 0..W-1.

    A chunk sees ``W = sink + 2 + recent + chunk`` frames.  Until they no longer fit, every
    frame is kept.  At the first roll the two slots after the sink become the averages (the
    frames they held are dropped, as in the release) and both start as the token mean of the
    frames evicted then; every later chunk evicts the frames beyond the ``recent`` newest and
    updates ``L = a_l * m + (1 - a_l) * L`` and ``S = a_s * m + (1 - a_s) * S``, ``m`` the mean
    over every token of the evicted frames' un-roped keys (values alike), repeated on every
    token of the slot and roped at that token's row and column.

    Parameters
    ----------
    sink : int
        First frames kept forever (``sink_size`` 3).
    recent : int
        Newest frames kept exactly besides the chunk (``recent_size`` 4).
    alpha_long, alpha_short : float
        Update rates in (0, 1] of the two averages (``ema_alpha_long`` 0.01,
        ``ema_alpha_short`` 0.1).
    positions : str
        ``"packed"`` only: held entries at 0..n-1 in order, the chunk after them.
    Needs ``KVGeometry.grid``.  Source: Kim et al. 2026, MemRoPE (arXiv 2603.12513),
    configs/longlive/memrope_60s.yaml (scalar alphas, the release's default).
    """

    sink: int = 3
    recent: int = 4
    alpha_long: float = 0.01
    alpha_short: float = 0.1
    positions: str = "packed"
    POSITIONS = ("packed",)
    disjoint_entries = False  # both averages summarise the same evicted frames

    def __post_init__(self) -> None:
        check_choice("positions", self.positions, self.POSITIONS)
        check_int("sink", self.sink, 0)
        check_int("recent", self.recent, 0)
        check_real("alpha_long", self.alpha_long, 0.0, 1.0, low_open=True)
        check_real("alpha_short", self.alpha_short, 0.0, 1.0, low_open=True)

    def history_frames(self, chunk: int = 3) -> int | None:
        check_int("chunk", chunk, 1)
        return self.sink + AVERAGES + self.recent

    def visible_frames(self, chunk: int) -> int | None:
        return self.history_frames(chunk) + chunk

    @property
    def needs_grid(self) -> bool:
        return True  # the averages are over un-roped keys: the row/column rotations are undone

    def decide(self, memory: MemoryView) -> Decision:
        held = memory.held
        if memory.newest != memory.chunk_end - 1 or len(held) <= self.history_frames():
            return Keep()  # rolls once per chunk, when the next chunk would not fit
        first = self.sink + AVERAGES
        evicted = tuple(range(first, len(held) - self.recent))
        m = sum(held[i].frame for i in evicted) / len(evicted)
        slots = (self.sink, self.sink + 1)
        if not held[self.sink].aggregate:  # the first roll: both averages start at the mean
            return Average(tuple((i, 1.0, m, len(evicted)) for i in slots), evicted)
        return Average(tuple((i, a, a * m + (1 - a) * held[i].mu, held[i].span + len(evicted))
                             for i, a in zip(slots, (self.alpha_long, self.alpha_short))),
                       evicted)
