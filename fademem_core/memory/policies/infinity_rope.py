"""Infinity-RoPE's memory (yesiltepe-hidir/infinity-rope, ``wan/modules/causal_model.py`` and
``pipeline/causal_inference.py``): a sink plus a short window whose keys are re-roped at
0, 1, 2, ... every step (block-relativistic RoPE), and a KV flush at a prompt switch."""
from __future__ import annotations

from dataclasses import dataclass

from ...checks import check_choice, check_int
from ..contract import Decision, Entry, MemoryView
from .base import CachePolicy
from .windows import evict_oldest_after


@dataclass(frozen=True)
class InfinityRope(CachePolicy):
    """Sink + window at block-relative positions; a prompt switch keeps sink + newest frames.

    Parameters
    ----------
    sink : int
        First frames that never leave; they sit at positions 0.. (release: ``sink_size`` 1).
    window : int
        Frames a chunk attends to, sink and chunk included (``local_attn_size`` 6).
    flush_keep : int
        Frames besides the sink kept at a prompt switch, none re-cached (its ``kv_flush``: 2).
    positions : str
        ``"packed"`` only: held frames at 0..n-1, the chunk right after them.
    The release's optional "RoPE cut" for hard scene cuts is not reproduced.  Source: Yesiltepe
    et al. 2025, Infinity-RoPE (arXiv 2511.20649), configs/self_forcing_dmd.yaml.
    """

    sink: int = 1
    window: int = 6
    flush_keep: int = 2
    positions: str = "packed"
    POSITIONS = ("packed",)

    def __post_init__(self) -> None:
        check_choice("positions", self.positions, self.POSITIONS)
        check_int("sink", self.sink, 0)
        check_int("window", self.window, self.sink + 1)
        check_int("flush_keep", self.flush_keep, 0)

    def history_frames(self, chunk: int = 3) -> int | None:
        chunk = check_int("chunk", chunk, 1)
        if chunk + self.sink > self.window:
            raise ValueError(f"chunk must be <= window - sink = {self.window - self.sink}, "
                             f"got {chunk}")
        return self.window - chunk

    def visible_frames(self, chunk: int) -> int | None:
        self.history_frames(chunk)
        return self.window

    def decide(self, memory: MemoryView) -> Decision:
        return evict_oldest_after(memory, self.sink)

    def on_prompt_switch(self, held: tuple[Entry, ...]) -> tuple[int, ...] | None:
        sink = [i for i, e in enumerate(held) if e.frame < self.sink]
        rest = [i for i, e in enumerate(held) if e.frame >= self.sink]
        return tuple(sink + rest[len(rest) - min(self.flush_keep, len(rest)):])
