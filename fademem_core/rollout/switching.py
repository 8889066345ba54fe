"""What the memory does at a prompt switch: which frames are re-run, which entries stay.

Modes (``generate(..., switch=...)``):

* ``"recache"``: this pack's own re-cache.  The frames the memory holds exactly are re-run under
  the new prompt (at ``context_noise``, attending to each other and to the whole memory) and
  their K/V replaced; consolidated FadeMem entries are kept as they are.  It works for every
  policy, FadeMem included, and re-runs nothing the memory no longer holds.
* ``"longlive"``: LongLive's interactive pipeline with its shipped ``global_sink: true``
  (``pipeline/interactive_causal_inference.py``, LongLive v1.0).  LongLive re-runs its whole local
  window, the last ``sink + window`` generated frames, including the ``chunk`` frames its
  next roll evicts (which this pack's memory has already dropped: they are re-run as context for
  the others and dropped again).  Once the video is longer than that window the sink's K/V are
  left as they were under the old prompt; LongLive feeds the ``sink`` oldest frames of the window
  too, but protects the sink slots, so their K/V are never stored or attended to and the pack
  skips them.  While the video still fits in the window the re-run starts at frame 0 and the
  sink is re-encoded like every other frame.
* ``"longlive_resink"``: LongLive's ``global_sink: false``: the cache is cleared, the last
  ``sink + window`` frames are re-run and all of them stored, so the ``sink`` oldest of them
  become the sink from then on (switching at frame 15 with 3 + 9: frames 3-5).
* ``"keep"``: the memory is left as it is.
* ``"auto"`` (default): ``"longlive"`` for LongLive's own memory (``SinkWindow`` with absolute
  positions), ``"recache"`` for every other policy.

The LongLive modes describe LongLive's cache: a sink plus a rolling window with keys at absolute
positions.  They accept ``SinkWindow``, ``SlidingWindow`` (no sink) and ``FullCache`` (LongLive's
global attention: every frame is re-run, as ``"recache"`` does) with ``positions="absolute"``.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..checks import SWITCH_MODES, check_choice  # SWITCH_MODES re-exported
from ..memory.policies import CachePolicy, FullCache, SinkWindow, SlidingWindow

LONGLIVE_MODES = ("longlive", "longlive_resink")


@dataclass(frozen=True)
class RecachePlan:
    """One re-cache: the frames the pass runs (oldest first) and the entries held after it.

    ``keep`` lists first frames of entries; None keeps every entry held before the switch.
    """

    frames: tuple[int, ...]
    keep: tuple[int, ...] | None = None


def _longlive_window(policy: CachePolicy) -> tuple[int, int | None]:
    """``(sink, local window)`` of the LongLive cache ``policy`` describes (None: global)."""
    if isinstance(policy, SinkWindow):
        return policy.sink, policy.sink + policy.window
    if isinstance(policy, SlidingWindow):
        return 0, policy.window
    if isinstance(policy, FullCache):
        return 0, None
    raise ValueError(
        f"switch='longlive' / 'longlive_resink' reproduce LongLive's sink + window cache; they "
        f"need a SinkWindow, SlidingWindow or FullCache policy, got {type(policy).__name__} "
        "(use switch='recache' or 'keep')"
    )


def resolve_switch(switch: object, policy: CachePolicy) -> str:
    """The switch mode to use for ``policy``: validates ``switch`` and resolves ``"auto"``."""
    switch = check_choice("switch", switch, SWITCH_MODES)
    if switch == "auto":
        longlive = isinstance(policy, SinkWindow) and policy.positions == "absolute"
        return "longlive" if longlive else "recache"
    if switch in LONGLIVE_MODES:
        _longlive_window(policy)
        if policy.positions != "absolute":
            raise ValueError(
                f"switch={switch!r} reproduces LongLive, whose keys sit at absolute positions; "
                f"got a policy with positions={policy.positions!r} (use switch='recache')"
            )
    return switch


def recache_plan(mode: str, policy: CachePolicy, chunk: int, start: int,
                 exact_frames: list[int]) -> RecachePlan | None:
    """What to re-run when the prompt switches before frame ``start`` (None: nothing).

    ``mode`` is a resolved mode (:func:`resolve_switch`); ``exact_frames`` what the memory holds
    exactly now (used by ``"recache"``).
    """
    if mode == "keep" or start == 0:
        return None
    if mode == "recache":
        return RecachePlan(tuple(exact_frames)) if exact_frames else None
    sink, window = _longlive_window(policy)
    if window is None or start <= window:  # the re-run starts at frame 0: every frame is written
        return RecachePlan(tuple(range(start)))
    first = start - window  # LongLive re-runs frames first..start-1
    if mode == "longlive":
        return RecachePlan(tuple(range(first + sink, start)))
    frames = tuple(range(first, start))
    # LongLive stores them all; its next roll evicts the `chunk` frames after the new sink
    return RecachePlan(frames, frames[:sink] + frames[sink + chunk:])


__all__ = ["LONGLIVE_MODES", "SWITCH_MODES", "RecachePlan", "recache_plan", "resolve_switch"]
