"""FullCache: keep every frame (unbounded); the reference for exactness tests."""
from __future__ import annotations

from dataclasses import dataclass

from .base import CachePolicy, KVCache, KVGeometry, check_int, check_positions


@dataclass(frozen=True)
class FullCache(CachePolicy):
    """Every generated frame stays in memory; memory grows linearly with video length.

    ``make_cache(..., max_frames=n)`` preallocates ``n`` frames; without it the storage grows
    by doubling.
    """

    positions: str = "absolute"

    def __post_init__(self) -> None:
        check_positions(self.positions)

    def history_frames(self, chunk: int = 3) -> int | None:
        return None

    def visible_frames(self, chunk: int) -> int | None:
        check_int("chunk", chunk, 1)
        return None

    def make_cache(
        self, geometry: KVGeometry, chunk: int, max_frames: int | None = None
    ) -> KVCache:
        from ..cache import SlotCache  # memory imports this package's base module

        return SlotCache(geometry, chunk, None, self.positions, max_frames=max_frames,
                         raw_temporal=self.needs_raw_temporal)
