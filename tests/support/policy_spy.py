"""A cache policy test double: wraps a policy and keeps the caches it builds."""
from __future__ import annotations

from dataclasses import dataclass, field

from fademem_core.memory.policies import CachePolicy, FullCache


@dataclass(frozen=True, eq=False)
class Spy(CachePolicy):
    """Behaves as ``inner``; ``made`` lists every cache built (to read them or check they closed)."""

    inner: CachePolicy = field(default_factory=FullCache)
    made: list = field(default_factory=list)

    @property
    def merges(self) -> bool:
        return self.inner.merges

    @property
    def needs_raw_temporal(self) -> bool:
        return self.inner.needs_raw_temporal

    def decide(self, memory):
        return self.inner.decide(memory)

    def history_frames(self, chunk: int = 3):
        return self.inner.history_frames(chunk)

    def visible_frames(self, chunk: int):
        return self.inner.visible_frames(chunk)

    def make_cache(self, geometry, chunk, max_frames=None):
        cache = self.inner.make_cache(geometry, chunk, max_frames)
        self.made.append(cache)
        return cache
