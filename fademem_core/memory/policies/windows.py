"""Window baselines: SlidingWindow (most recent frames) and SinkWindow (LongLive's sink + window).

Both windows count the current chunk, as in LongLive: ``SinkWindow(sink=3, window=9)`` lets a
chunk of 3 see the 3 first frames plus the 9 most recent ones (itself included), so between
chunks it holds ``sink + window - chunk`` frames.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import CachePolicy, KVCache, KVGeometry, check_int, check_positions


def _check_chunk(chunk: object, window: int) -> int:
    chunk = check_int("chunk", chunk, 1)
    if chunk > window:
        raise ValueError(f"chunk must be <= window {window} (windows count the chunk), got {chunk}")
    return chunk


def _evict_oldest_after(sink: int, history: int):
    """Admit rule: while over ``history``, drop the oldest entry not in the first ``sink`` frames."""

    def admit(cache) -> None:
        held = cache.held
        while len(held) > history:
            victim = next(i for i, e in enumerate(held) if e.frame >= sink)
            cache.evict(victim)

    return admit


@dataclass(frozen=True)
class SlidingWindow(CachePolicy):
    """Attend to the ``window`` most recent frames, current chunk included."""

    window: int = 12
    positions: str = "absolute"

    def __post_init__(self) -> None:
        check_int("window", self.window, 1)
        check_positions(self.positions)

    def history_frames(self, chunk: int = 3) -> int | None:
        return self.window - _check_chunk(chunk, self.window)

    def visible_frames(self, chunk: int) -> int | None:
        _check_chunk(chunk, self.window)
        return self.window

    def make_cache(
        self, geometry: KVGeometry, chunk: int, max_frames: int | None = None
    ) -> KVCache:
        from ..cache import SlotCache  # memory imports this package's base module

        history = self.history_frames(chunk)
        return SlotCache(geometry, chunk, history, self.positions,
                         admit=_evict_oldest_after(0, history),
                         raw_temporal=self.needs_raw_temporal)


@dataclass(frozen=True)
class SinkWindow(CachePolicy):
    """LongLive: the first ``sink`` frames forever + the ``window`` most recent (chunk included)."""

    sink: int = 3
    window: int = 9
    positions: str = "absolute"

    def __post_init__(self) -> None:
        check_int("sink", self.sink, 0)
        check_int("window", self.window, 1)
        check_positions(self.positions)

    def history_frames(self, chunk: int = 3) -> int | None:
        return self.sink + self.window - _check_chunk(chunk, self.window)

    def visible_frames(self, chunk: int) -> int | None:
        _check_chunk(chunk, self.window)
        return self.sink + self.window

    def make_cache(
        self, geometry: KVGeometry, chunk: int, max_frames: int | None = None
    ) -> KVCache:
        from ..cache import SlotCache  # memory imports this package's base module

        history = self.history_frames(chunk)
        return SlotCache(geometry, chunk, history, self.positions,
                         admit=_evict_oldest_after(self.sink, history),
                         raw_temporal=self.needs_raw_temporal)
