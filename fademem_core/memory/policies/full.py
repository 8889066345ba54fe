"""FullCache: keep every frame (unbounded); the reference for exactness tests."""
from __future__ import annotations

from dataclasses import dataclass

from ...checks import check_int
from ..contract import Decision, Keep, MemoryView
from ..positions import check_positions
from .base import CachePolicy


@dataclass(frozen=True)
class FullCache(CachePolicy):
    """Every generated frame stays in memory; memory grows linearly with video length.

    ``make_cache(..., max_frames=n)`` preallocates ``n`` frames; without it the storage grows
    by doubling.

    Parameters
    ----------
    positions : str
        Position strategy: ``absolute`` (frame indices) or ``packed``.  Source: the plain
        causal KV cache of autoregressive video diffusion (CausVid, Self-Forcing), with no
        eviction: the exact reference every bounded memory approximates.
    """

    positions: str = "absolute"

    def __post_init__(self) -> None:
        check_positions(self.positions)

    def history_frames(self, chunk: int = 3) -> int | None:
        return None

    def visible_frames(self, chunk: int) -> int | None:
        check_int("chunk", chunk, 1)
        return None

    def decide(self, memory: MemoryView) -> Decision:
        return Keep()
