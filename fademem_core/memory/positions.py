"""Temporal RoPE position strategies: where the memory's keys and the chunk's queries sit.

A strategy is a small frozen object, separate from what a policy keeps, so any policy can be
combined with any strategy (``FadeMem(positions="packed")``).  New strategies (block-relative,
sink-shifted, ...) are one more class registered in :data:`POSITIONS`.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Sequence

from ..checks import check_choice
from .contract import Entry

__all__ = ["POSITIONS", "POSITION_STRATEGIES", "Absolute", "Packed", "PositionStrategy",
           "check_positions", "position_strategy"]


class PositionStrategy(ABC):
    """Assigns temporal positions to the held entries and to the chunk being generated."""

    #: whether an entry's position can change after its key was written (then the cache keeps
    #: the un-roped temporal channels to re-encode it)
    moves_keys: bool = False

    @abstractmethod
    def entry_positions(self, held: Sequence[Entry]) -> list[float]:
        """Position of each held entry, oldest first."""

    @abstractmethod
    def chunk_positions(self, held: Sequence[Entry], start_frame: int, num_frames: int) -> list[float]:
        """Positions of a chunk of ``num_frames`` frames starting at ``start_frame``."""


@dataclass(frozen=True)
class Absolute(PositionStrategy):
    """Entries at their temporal centre ``mu``, the chunk at its frame indices."""

    def entry_positions(self, held: Sequence[Entry]) -> list[float]:
        return [e.mu for e in held]

    def chunk_positions(self, held: Sequence[Entry], start_frame: int, num_frames: int) -> list[float]:
        return [float(start_frame + j) for j in range(num_frames)]


@dataclass(frozen=True)
class Packed(PositionStrategy):
    """Entries at ``0..n-1`` in order, the chunk right after them."""

    moves_keys = True

    def entry_positions(self, held: Sequence[Entry]) -> list[float]:
        return [float(i) for i in range(len(held))]

    def chunk_positions(self, held: Sequence[Entry], start_frame: int, num_frames: int) -> list[float]:
        return [float(len(held) + j) for j in range(num_frames)]


POSITIONS: dict[str, PositionStrategy] = {"absolute": Absolute(), "packed": Packed()}
POSITION_STRATEGIES = tuple(POSITIONS)


def check_positions(value: object) -> str:
    """Validate a position strategy name."""
    return check_choice("positions", value, POSITION_STRATEGIES)


def position_strategy(name: object) -> PositionStrategy:
    """The strategy registered under ``name`` (ValueError naming the known ones otherwise)."""
    return POSITIONS[check_positions(name)]
