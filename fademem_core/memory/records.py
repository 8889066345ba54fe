"""Host-side records of a :class:`~fademem_core.memory.cache.SlotCache`: what one held entry
and the chunk in flight are, and how many slots a cache preallocates (plain Python, no policy)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from ..checks import check_int
from .contract import Entry

__all__ = ["HeldEntry", "PendingChunk", "SlotBuffers", "preallocated_slots"]


def preallocated_slots(history: int | None, chunk: int, max_frames: int | None) -> int | None:
    """Slots a cache allocates up front: what ``history`` entries plus a chunk need
    (``history + chunk``), but never more than a video of ``max_frames`` can fill
    (``max(max_frames, chunk)``); None for an unbounded memory not told the length (it then
    starts at one chunk and grows by doubling)."""
    video = None if max_frames is None else max(check_int("max_frames", max_frames, 1), chunk)
    if history is None:
        return video
    return history + chunk if video is None else min(history + chunk, video)


@dataclass
class HeldEntry:
    """Host-side metadata of one memory entry: the policy's view plus where it is stored."""

    mu: float  # temporal centre (frame units)
    span: int  # frames summarised
    frame: int  # first frame it covers
    slot: int  # storage slot
    pos: float  # position its key's temporal channels are encoded at (nan: stale)
    aggregate: bool = False  # a moving average (MemRoPE): never exact, never re-cached

    def entry(self) -> Entry:
        return Entry(self.mu, self.span, self.frame, self.aggregate)


class SlotBuffers(NamedTuple):
    """Read-only look at a cache's buffers ``[layers, batch, slots, tokens, heads, ch]``."""

    k: torch.Tensor
    v: torch.Tensor
    kt: torch.Tensor | None  # un-roped temporal channels of K (None: not kept)


@dataclass
class PendingChunk:
    """The chunk (or re-cache) between begin_* and commit."""

    slots: list[int]
    positions: list[float]
    context: int  # slots visible to attention
    start: int
    recache: bool
    written: set[int] = field(default_factory=set)
    frames: list[int] = field(default_factory=list)  # re-cache: the frames the pass runs
    keep: list[int] = field(default_factory=list)  # re-cache: first frames of the entries kept
    scored: set[int] = field(default_factory=set)  # layers whose held tokens were scored
