"""Cache policies behind one interface (``base.py``), registered by name.

Adding a policy: write one small file with a frozen dataclass subclassing
:class:`CachePolicy` (``history_frames``, ``visible_frames``, ``decide``), then list it in
``POLICIES`` below.
"""
from __future__ import annotations

from ..contract import Decision, Entry, Evict, KVCache, KVGeometry, Keep, LayerKV, Merge, MemoryView
from ..positions import POSITION_STRATEGIES
from .base import CachePolicy
from .fademem import FadeMem
from .full import FullCache
from .windows import SinkWindow, SlidingWindow

# name accepted by policy_from_name -> class (names are matched without case, "_", "-", " ")
POLICIES: dict[str, type[CachePolicy]] = {
    "fademem": FadeMem,
    "sinkwindow": SinkWindow,
    "slidingwindow": SlidingWindow,
    "full": FullCache,
}
_ALIASES = {"fullcache": "full", "sink": "sinkwindow", "longlive": "sinkwindow",
            "window": "slidingwindow", "sliding": "slidingwindow"}


def policy_from_name(name: str, **kwargs: object) -> CachePolicy:
    """Build a policy from its name, e.g. ``policy_from_name("fademem", budget=12)``.

    Names: ``fademem``, ``sink_window`` (alias ``longlive``), ``sliding_window``, ``full``.
    """
    if not isinstance(name, str):
        raise ValueError(f"policy name must be a string, got {name!r}")
    key = name.lower().replace("_", "").replace("-", "").replace(" ", "")
    key = _ALIASES.get(key, key)
    cls = POLICIES.get(key)
    if cls is None:
        raise ValueError(f"unknown cache policy {name!r}; expected one of {sorted(POLICIES)}")
    try:
        return cls(**kwargs)  # type: ignore[arg-type]
    except TypeError as exc:  # unknown keyword
        raise ValueError(f"bad arguments for policy {name!r}: {exc}") from None


__all__ = [
    "POLICIES",
    "POSITION_STRATEGIES",
    "CachePolicy",
    "Decision",
    "Entry",
    "Evict",
    "FadeMem",
    "FullCache",
    "KVCache",
    "KVGeometry",
    "Keep",
    "LayerKV",
    "Merge",
    "MemoryView",
    "SinkWindow",
    "SlidingWindow",
    "policy_from_name",
]
