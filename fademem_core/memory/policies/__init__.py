"""Cache policies behind one interface (``base.py``), registered by name.

Adding a policy: write one small file with a frozen dataclass subclassing
:class:`CachePolicy` (``history_frames``, ``visible_frames``, ``decide``), then list it in
``POLICIES`` below.
"""
from __future__ import annotations

import dataclasses

from ..contract import Decision, Entry, Evict, KVCache, KVGeometry, Keep, LayerKV, Merge, MemoryView
from ..positions import POSITION_STRATEGIES
from .base import CachePolicy
from .deep_forcing import DeepForcing
from .fademem import FadeMem
from .fademem_release import FadeMemRelease
from .full import FullCache
from .infinity_rope import InfinityRope
from .memflow import MemFlow
from .memrope import MemRope
from .windows import SinkWindow, SlidingWindow

# name accepted by policy_from_name -> class (names are matched without case, "_", "-", " ")
POLICIES: dict[str, type[CachePolicy]] = {
    "fademem": FadeMem,
    "sinkwindow": SinkWindow,
    "slidingwindow": SlidingWindow,
    "full": FullCache,
    "fadememrelease": FadeMemRelease,
    "infinityrope": InfinityRope,
    "memrope": MemRope,
    "deepforcing": DeepForcing,
    "memflow": MemFlow,
}
_ALIASES = {"fullcache": "full", "sink": "sinkwindow", "longlive": "sinkwindow",
            "window": "slidingwindow", "sliding": "slidingwindow",
            "fadememreleased": "fadememrelease", "fadememofficial": "fadememrelease"}
# a peer's memory that a registered policy already is: name -> (policy, that peer's defaults)
PRESETS: dict[str, tuple[str, dict[str, object]]] = {
    # Self-Forcing past 21 frames: its causal_model rolls a 21-frame KV FIFO (chunk included)
    # with keys at their absolute frame index, which is SlidingWindow (guandeh17/Self-Forcing)
    "selfforcing": ("slidingwindow", {"window": 21}),
}


def _resolve(name: object) -> tuple[type[CachePolicy], dict[str, object]]:
    """The class behind a policy or preset name and the preset's defaults."""
    if not isinstance(name, str):
        raise ValueError(f"policy name must be a string, got {name!r}")
    key = name.lower().replace("_", "").replace("-", "").replace(" ", "")
    key = _ALIASES.get(key, key)
    key, defaults = PRESETS.get(key, (key, {}))
    cls = POLICIES.get(key)
    if cls is None:
        raise ValueError(f"unknown cache policy {name!r}; expected one of "
                         f"{sorted(POLICIES) + sorted(PRESETS)}")
    return cls, defaults


def policy_parameters(name: str) -> tuple[str, ...]:
    """The keyword parameters :func:`policy_from_name` accepts for ``name`` (the policy's
    fields), e.g. ``("sink", "window", "positions")`` for ``"sink_window"``."""
    return tuple(f.name for f in dataclasses.fields(_resolve(name)[0]))


def policy_from_name(name: str, **kwargs: object) -> CachePolicy:
    """Build a policy from its name, e.g. ``policy_from_name("fademem", budget=12)``.

    Names: the keys of :data:`POLICIES` and :data:`PRESETS` (``self_forcing``), matched without
    case, ``_``, ``-`` or spaces; aliases ``longlive`` (sink_window), ``fademem_released``.
    A preset's defaults are overridden by ``kwargs``.
    """
    cls, defaults = _resolve(name)
    try:
        return cls(**{**defaults, **kwargs})  # type: ignore[arg-type]
    except TypeError as exc:  # unknown keyword
        raise ValueError(f"bad arguments for policy {name!r}: {exc}") from None


__all__ = [
    "POLICIES",
    "PRESETS",
    "FadeMemRelease",
    "InfinityRope",
    "MemRope",
    "DeepForcing",
    "MemFlow",
    "policy_parameters",
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
