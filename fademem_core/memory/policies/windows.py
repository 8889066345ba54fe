"""Window baselines: SlidingWindow (most recent frames) and SinkWindow (LongLive's sink + window).

Both windows count the current chunk, as in LongLive: ``SinkWindow(sink=3, window=9)`` lets a
chunk of 3 see the 3 first frames plus the 9 most recent ones (itself included), so between
chunks it holds ``sink + window - chunk`` frames.
"""
from __future__ import annotations

from dataclasses import dataclass

from ...checks import check_int
from ..contract import Decision, Evict, Keep, MemoryView
from ..positions import check_positions
from .base import CachePolicy


def _check_chunk(chunk: object, window: int) -> int:
    chunk = check_int("chunk", chunk, 1)
    if chunk > window:
        raise ValueError(f"chunk must be <= window {window} (windows count the chunk), got {chunk}")
    return chunk


def evict_oldest_after(memory: MemoryView, sink: int) -> Decision:
    """Over ``memory.history`` entries: evict the entry right after the first ``sink`` held
    (the newest frame itself when only sink entries are older).

    The first ``sink`` entries are frames 0..sink-1, or the frames a LongLive re-sink at a
    prompt switch made the sink (``switch="longlive_resink"``), so the rule counts held
    entries, not frame indices.  ``history >= sink`` always (windows count the chunk), so that
    entry exists.  One eviction per inserted frame suffices: the memory grows by one entry at
    a time (a re-cache keeps at most ``history`` entries)."""
    if memory.history is None or len(memory.held) <= memory.history:
        return Keep()
    return Evict(sink)


@dataclass(frozen=True)
class SlidingWindow(CachePolicy):
    """Attend to the ``window`` most recent frames, current chunk included (FIFO eviction).

    Parameters
    ----------
    window : int
        Frames one chunk sees, itself included (>= the chunk).  Source: the rolling KV cache
        of Self-Forcing (Huang et al., 2025) past its training length.
    positions : str
        Position strategy: ``absolute`` (frame indices) or ``packed``.
    """

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

    def decide(self, memory: MemoryView) -> Decision:
        return evict_oldest_after(memory, 0)


@dataclass(frozen=True)
class SinkWindow(CachePolicy):
    """LongLive: the first ``sink`` frames forever + the ``window`` most recent (chunk included).

    Parameters
    ----------
    sink : int
        First frames kept forever (the attention sink).  Source: LongLive (Yang et al., 2025),
        frame sink + short window; its release uses sink 3.
    window : int
        Most recent frames one chunk sees besides the sink, itself included (LongLive: 9).
    positions : str
        Position strategy: ``absolute`` (frame indices) or ``packed``.
    """

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

    def decide(self, memory: MemoryView) -> Decision:
        return evict_oldest_after(memory, self.sink)
