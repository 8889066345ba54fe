"""FadeMem as the official release codes it (aniki-ly/FadeMem, ``wan/modules/fademem_memory.py``).

The FadeMem-FT checkpoint was fine-tuned with this memory, not with the paper's Algorithm 1, so
it is offered as its own policy (facts: ``shared/reference/official-release.md``):

* the chunk's frames enter the bank when the next chunk starts, all aged against that start;
* a full bank merges the adjacent pair closest in warped age ``(t - mu) ** beta``, the pair that
  holds the newest entry excluded (ties: the oldest pair);
* ``mu`` is rounded to an integer (Python's ``round``), K/V are averaged with weights
  ``s ** span_gamma`` (0.5: not the spans themselves);
* the first-frame anchor is not protected: when its pair is chosen it keeps its own K/V and
  ``mu = 0`` and only the spans add;
* positions: absolute until the chunk start is >= 18 with a full bank, then the 21-frame window
  of :class:`~fademem_core.memory.positions.ReleaseWindow` (``positions="release"``).
"""
from __future__ import annotations

from dataclasses import dataclass

from ...checks import check_beta, check_choice, check_int, check_real
from ..contract import Decision, Keep, Merge, MemoryView
from ..planner import closest_pair
from ..positions import RELEASE_CHUNK, RELEASE_MOST_ENTRIES, PositionStrategy, ReleaseWindow, \
    position_strategy
from .base import CachePolicy


@dataclass(frozen=True)
class FadeMemRelease(CachePolicy):
    """FadeMem exactly as released (the memory the FadeMem-FT LoRA was trained with).

    Parameters
    ----------
    budget : int
        Bank entries (12); a chunk sees ``budget + chunk`` frames.  Release:
        ``fademem_summary_slots`` in ``configs/inference.yaml``.
    beta : float
        Power-law age warp in (0, 1] (``warp_beta`` 0.3).
    span_gamma : float
        K/V merge weights ``s ** span_gamma`` (``span_gamma`` 0.5).
    anchor : bool
        Frame 0 is an anchor that keeps its own K/V when merged (``anchor_slots=1``).
    positions : str
        ``"release"``: the 21-frame window layout once full (needs chunks of 3, budget <= 18),
        or ``"absolute"``: every entry at its integer centre.
    Source: aniki-ly/FadeMem (Apache-2.0), built on LongLive v1.0.
    """

    budget: int = 12
    beta: float = 0.3
    span_gamma: float = 0.5
    anchor: bool = True
    positions: str = "release"
    POSITIONS = ("release", "absolute")

    def __post_init__(self) -> None:
        if not isinstance(self.anchor, bool):
            raise ValueError(f"anchor must be True or False, got {self.anchor!r}")
        check_choice("positions", self.positions, self.POSITIONS)
        budget = check_int("budget", self.budget, 2)
        most = RELEASE_MOST_ENTRIES + self.anchor
        if self.positions == "release" and budget > most:
            raise ValueError(f"budget must be <= {most} with positions='release' (the window "
                             f"has no more unique positions), got {self.budget!r}")
        check_beta(self.beta)
        check_real("span_gamma", self.span_gamma, 0.0, float("inf"), low_open=True,
                   expected="a number > 0")

    def history_frames(self, chunk: int = 3) -> int | None:
        if self.positions == "release" and check_int("chunk", chunk, 1) != RELEASE_CHUNK:
            raise ValueError(f"chunk must be {RELEASE_CHUNK} with positions='release' (the "
                             f"release's window layout), got {chunk}")
        return self.budget

    def visible_frames(self, chunk: int) -> int | None:
        return self.history_frames(chunk) + chunk

    @property
    def merges(self) -> bool:
        return True

    def position_strategy(self) -> PositionStrategy:
        if self.positions == "release":
            return ReleaseWindow(self.budget, self.beta, self.anchor)
        return position_strategy(self.positions)

    def decide(self, memory: MemoryView) -> Decision:
        held = memory.held
        if len(held) <= self.budget:
            return Keep()
        # the anchor competes like any entry (anchor=False here); only the newest is left out,
        # and every age counts from the next chunk's start (so it is >= 1)
        i = closest_pair([e.mu for e in held], memory.chunk_end, self.beta, anchor=False)
        a, b = held[i], held[i + 1]
        span = a.span + b.span
        if self.anchor and a.frame == 0:  # the anchor keeps its own K/V; spans add
            return Merge(i, 0.0, span, weight=0.0)
        mu = float(round(a.span / span * a.mu + b.span / span * b.mu))
        wa, wb = a.span ** self.span_gamma, b.span ** self.span_gamma
        return Merge(i, mu, span, weight=wb / (wa + wb))
