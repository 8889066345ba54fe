"""The policy base: a frozen description of a memory with ONE decision method.

A policy never touches tensors and never calls into the cache.  After every inserted frame
the cache (:class:`~fademem_core.memory.cache.SlotCache`) shows it the held entries as plain
:class:`~fademem_core.memory.contract.Entry` records and applies the :data:`Decision` it
returns (keep, evict an entry, merge a pair).  Where the keys sit is a separate, composable
position strategy (:mod:`fademem_core.memory.positions`), named by the ``positions`` field.

Adding a policy (e.g. the baselines of issue 14) is one file: a frozen dataclass with
``history_frames``, ``visible_frames`` and ``decide``, registered in ``policies/__init__.py``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch

from ...checks import check_int
from ..cache import SlotCache, preallocated_slots
from ..contract import AttentionInputs, Decision, Entry, KVGeometry, MemoryView
from ..positions import POSITION_STRATEGIES, PositionStrategy, position_strategy

__all__ = ["CachePolicy", "check_int"]


class CachePolicy(ABC):
    """A frozen, hashable description of a KV memory.

    Subclasses are ``@dataclass(frozen=True)`` with a ``positions`` field
    (``"absolute"``: entries at their temporal centre, the chunk at its frame indices;
    ``"packed"``: entries at 0..n-1 in order, the chunk right after them).
    """

    positions: str = "absolute"
    #: the position strategies this policy accepts (its ``positions`` field), default first
    POSITIONS: tuple[str, ...] = POSITION_STRATEGIES
    #: whether the entries partition the frames they cover (moving averages overlap)
    disjoint_entries: bool = True
    #: whether the memory holds every frame it may until it is full (MemFlow's bank does not)
    fills_to_visible: bool = True

    @abstractmethod
    def history_frames(self, chunk: int = 3) -> int | None:
        """Entries held between chunks (None = unbounded).  Window sizes depend on ``chunk``."""

    @abstractmethod
    def visible_frames(self, chunk: int) -> int | None:
        """Frames one chunk attends to, itself included (None = unbounded)."""

    @abstractmethod
    def decide(self, memory: MemoryView) -> Decision:
        """What to do once frame ``memory.newest`` was appended (the last of ``memory.held``).

        Return :class:`~fademem_core.memory.contract.Keep`, ``Evict(index)`` or
        ``Merge(index, mu, span, operator)``; indices count ``memory.held`` oldest first.
        Must be a pure function of its argument (the cache applies the answer).
        """

    def position_strategy(self) -> PositionStrategy:
        """Where the keys sit: the strategy named by ``positions`` (a policy may bring its own,
        e.g. the FadeMem release's window layout)."""
        return position_strategy(self.positions)

    def on_prompt_switch(self, held: tuple[Entry, ...]) -> tuple[int, ...] | None:
        """At a prompt switch: None (default) re-caches every exact frame under the new prompt
        (LongLive); a tuple keeps only those entries and re-caches nothing (Infinity-RoPE)."""
        return None

    @property
    def attention_needs(self) -> frozenset[str]:
        """Attention inputs (names in ``contract.ATTENTION_INPUTS``) this policy scores tokens
        with; the model passes only these to ``attend``.  Empty (default): no scoring."""
        return frozenset()

    def score(self, inputs: AttentionInputs, keys: torch.Tensor) -> torch.Tensor:
        """Scores ``[B, n, N]`` (float32) of the memory's keys ``[B, n, N, H, D]`` (every slot, as
        attention sees them) from the declared ``inputs``, at the chunk's scoring pass; a
        :class:`~fademem_core.memory.contract.Select` decision keeps the best.  Only policies
        with :attr:`attention_needs` define it."""
        raise NotImplementedError(f"{type(self).__name__} declares no attention inputs to score with")

    @property
    def needs_grid(self) -> bool:
        """Whether the cache needs ``KVGeometry.grid`` (to undo row/column rotations)."""
        return False

    @property
    def merges(self) -> bool:
        """Whether :meth:`decide` may answer ``Merge`` (merged entries move to a new centre)."""
        return False

    @property
    def needs_raw_temporal(self) -> bool:
        """Whether the cache must keep the un-roped temporal channels of K.

        They are needed only when an entry's temporal position can change after it was
        written: merges (:attr:`merges`) or a position strategy that moves keys (``"packed"``
        re-indexes entries).  With ``"absolute"`` positions and no merging every key stays
        where it was roped, so the full cache and the windows store K and V only.
        """
        return self.merges or self.position_strategy().moves_keys

    def slot_bytes(self, geometry: KVGeometry) -> int:
        """Bytes of one memory slot of this policy's cache (K, V [+ raw temporal channels])."""
        return geometry.slot_bytes(self.needs_raw_temporal, bool(self.attention_needs))

    def memory_bytes(
        self, geometry: KVGeometry, chunk: int, max_frames: int | None = None
    ) -> int | None:
        """Bytes the cache allocates, exactly (None = unbounded).

        :meth:`make_cache` allocates :func:`~fademem_core.memory.cache.preallocated_slots`
        slots: ``history + chunk`` for a bounded policy, but no more than a ``max_frames`` video
        can fill; ``max(max_frames, chunk)`` for an unbounded one given the length.
        """
        chunk = check_int("chunk", chunk, 1)
        slots = preallocated_slots(self.history_frames(chunk), chunk, max_frames)
        return None if slots is None else slots * self.slot_bytes(geometry)

    def make_cache(
        self, geometry: KVGeometry, chunk: int, max_frames: int | None = None
    ) -> SlotCache:
        """Build an empty cache for chunks of at most ``chunk`` frames (the one constructor)."""
        return SlotCache(geometry, chunk, self, max_frames)
