"""Temporal RoPE position strategies: where the memory's keys and the chunk's queries sit.

A strategy is a small frozen object, separate from what a policy keeps, so any policy can be
combined with any strategy (``FadeMem(positions="packed")``).  ``Absolute`` is FadeMem's
represented centre; ``Packed`` is also the block-relative layout of Infinity-RoPE and MemRoPE
(their held frames re-roped at 0..n-1, the chunk after them); ``SinkShifted`` is Deep Forcing's
deep sink (the held entries packed to end right before the chunk, which keeps its absolute
frame indices, so the sink sits just before the recent frames); ``ReleaseWindow`` is the official
FadeMem release's layout, parameterised by its policy (so not in :data:`POSITIONS`).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

from ..checks import check_choice
from .contract import Entry

__all__ = ["POSITIONS", "POSITION_STRATEGIES", "Absolute", "Packed", "PositionStrategy",
           "RELEASE_CHUNK", "RELEASE_MOST_ENTRIES", "ReleaseWindow", "SinkShifted", "check_positions",
           "position_strategy"]


class PositionStrategy(ABC):
    """Assigns temporal positions to the held entries and to the chunk being generated."""

    #: whether an entry's position can change after its key was written (then the cache keeps
    #: the un-roped temporal channels to re-encode it)
    moves_keys: bool = False

    @abstractmethod
    def entry_positions(self, held: Sequence[Entry], start_frame: int) -> list[float]:
        """Position of each held entry, oldest first, for the chunk starting at
        ``start_frame``."""

    @abstractmethod
    def chunk_positions(self, held: Sequence[Entry], start_frame: int, num_frames: int) -> list[float]:
        """Positions of a chunk of ``num_frames`` frames starting at ``start_frame``."""


@dataclass(frozen=True)
class Absolute(PositionStrategy):
    """Entries at their temporal centre ``mu``, the chunk at its frame indices."""

    def entry_positions(self, held: Sequence[Entry], start_frame: int) -> list[float]:
        return [e.mu for e in held]

    def chunk_positions(self, held: Sequence[Entry], start_frame: int, num_frames: int) -> list[float]:
        return [float(start_frame + j) for j in range(num_frames)]


@dataclass(frozen=True)
class Packed(PositionStrategy):
    """Entries at ``0..n-1`` in order, the chunk right after them."""

    moves_keys = True

    def entry_positions(self, held: Sequence[Entry], start_frame: int) -> list[float]:
        return [float(i) for i in range(len(held))]

    def chunk_positions(self, held: Sequence[Entry], start_frame: int, num_frames: int) -> list[float]:
        return [float(len(held) + j) for j in range(num_frames)]


@dataclass(frozen=True)
class SinkShifted(PositionStrategy):
    """The chunk at its frame indices, the ``n`` held entries at ``start - n .. start - 1``.

    Deep Forcing's temporal RoPE adjustment of its deep sink: the recent frames (the newest held
    ones, contiguous with the chunk) stay at their own frame indices and never move; everything
    older (the sink, compressed tokens) is re-positioned contiguously just before them, so the
    sink's phase follows the current timeline.  Attention is shift invariant, so this sees what
    ``Packed`` sees, but only the entries behind the recent frames are re-encoded each chunk.
    """

    moves_keys = True

    def entry_positions(self, held: Sequence[Entry], start_frame: int) -> list[float]:
        return [float(start_frame - len(held) + i) for i in range(len(held))]

    def chunk_positions(self, held: Sequence[Entry], start_frame: int, num_frames: int) -> list[float]:
        return [float(start_frame + j) for j in range(num_frames)]


# the release's 21-frame training window: the chunk of 3 at 18..20 once the layout is on, the
# 3 newest entries at 15..17, far entries at unique gaps 4..17 before the chunk
RELEASE_WINDOW, RELEASE_CHUNK, RELEASE_NEAR, RELEASE_MIN_GAP = 21, 3, 3, 4
RELEASE_CURRENT = RELEASE_WINDOW - RELEASE_CHUNK  # 18
RELEASE_MOST_ENTRIES = (RELEASE_CURRENT - RELEASE_MIN_GAP) + RELEASE_NEAR  # 17 (+ the anchor)


@dataclass(frozen=True)
class ReleaseWindow(PositionStrategy):
    """The official FadeMem release's layout (``official-release.md`` 5).

    Absolute (entries at their centre, the chunk at its frame indices) until the chunk starts at
    frame >= 18 with ``budget`` entries held; then inside the 21-frame window: the anchor
    (frame 0, when ``anchor``) at 0, the chunk at 18.., the 3 newest other entries at 15, 16,
    17, the far ones, oldest first, at ``18 - g`` with strictly decreasing gaps ``g`` in
    [4, 17], each the allowed gap closest in ``g ** beta`` to ``clamp(start - mu, 4, 17) **
    beta`` (the smallest on ties).
    """

    budget: int
    beta: float
    anchor: bool
    moves_keys = True

    def _on(self, held: Sequence[Entry], start_frame: int) -> bool:
        return start_frame >= RELEASE_CURRENT and len(held) >= self.budget

    def entry_positions(self, held: Sequence[Entry], start_frame: int) -> list[float]:
        if not self._on(held, start_frame):
            return [e.mu for e in held]
        pos = [float("nan")] * len(held)
        anchor = next((i for i, e in enumerate(held) if self.anchor and e.frame == 0), None)
        normal = sorted((i for i in range(len(held)) if i != anchor), key=lambda i: held[i].mu)
        if anchor is not None:
            pos[anchor] = 0.0
        near, far = normal[-RELEASE_NEAR:], normal[:-RELEASE_NEAR]
        for offset, i in enumerate(near):
            pos[i] = float(RELEASE_CURRENT - (len(near) - offset))
        previous = RELEASE_CURRENT
        for idx, i in enumerate(far):
            lo, hi = RELEASE_MIN_GAP + len(far) - idx - 1, previous - 1
            target = min(max(start_frame - int(held[i].mu), RELEASE_MIN_GAP),
                         RELEASE_CURRENT - 1) ** self.beta
            gap = min(range(lo, hi + 1), key=lambda g: abs(g ** self.beta - target))
            pos[i] = float(RELEASE_CURRENT - gap)
            previous = gap
        return pos

    def chunk_positions(self, held: Sequence[Entry], start_frame: int, num_frames: int) -> list[float]:
        first = RELEASE_CURRENT if self._on(held, start_frame) else start_frame
        return [float(first + j) for j in range(num_frames)]


POSITIONS: dict[str, PositionStrategy] = {"absolute": Absolute(), "packed": Packed(),
                                          "sink_shifted": SinkShifted()}
POSITION_STRATEGIES = tuple(POSITIONS)


def check_positions(value: object) -> str:
    """Validate a position strategy name."""
    return check_choice("positions", value, POSITION_STRATEGIES)


def position_strategy(name: object) -> PositionStrategy:
    """The strategy registered under ``name`` (ValueError naming the known ones otherwise)."""
    return POSITIONS[check_positions(name)]
