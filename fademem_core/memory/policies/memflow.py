"""MemFlow's memory, training-free use (KlingTeam/MemFlow, ``wan/modules/causal_model.py``,
``configs/inference.yaml``): LongLive's sink + window plus a bank of prototype frames that the
text prompt's keys refresh by relevance."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ...checks import check_choice, check_int
from ..contract import AttentionInputs, Decision, Evict, Keep, MemoryView, Select
from .base import CachePolicy


@dataclass(frozen=True)
class MemFlow(CachePolicy):
    """Sink + bank of prototype frames + recent window (absolute positions).

    A chunk sees the ``sink`` first frames, up to ``bank`` prototype frames and the newest
    ``window - sink`` frames (itself included).  A frame leaving the window is dropped unless it
    is a prototype: the first frame of every ``interval``-th chunk (chunks ``interval - 1``,
    ``2 * interval - 1``, ...).  A prototype joins the bank while it has room; with the bank full,
    per layer and batch element the ``bank - 1`` bank frames most relevant to the prompt stay
    and the prototype takes the freed place.  Relevance of a frame: the mean over text tokens,
    heads and the frame's tokens of ``k_text . k / sqrt(D)`` (the layer's cross-attention keys
    of the prompt against the frame's key as stored, roped at its frame index).  Bank frames keep
    their keys where they were roped.

    Interpretations (see the README): a prototype enters the bank when it leaves the window (the
    release copies it in at the next chunk, so for a few chunks it is attended twice); the
    release's bank index runs past its size once full, so it then refreshes at every chunk,
    here every ``interval`` chunks throughout; relevance is scored at the first denoising step
    of the chunk that commits the prototype (the release: the next chunk's first step).

    Parameters
    ----------
    sink : int
        First frames kept forever (``sink_size`` 3).
    bank : int
        Prototype frames (``bank_size`` 3).
    window : int
        Frames a chunk sees besides the bank, sink and itself included (``local_attn_size`` 12:
        LongLive's ``SinkWindow(sink=3, window=9)``).
    interval : int
        Chunks per prototype (``record_interval`` 3).
    positions : str
        ``"absolute"`` only.
    Source: MemFlow (KlingTeam, 2025), its release's configs/inference.yaml and
    ``compress_kv_bank`` in wan/modules/causal_model.py.
    """

    sink: int = 3
    bank: int = 3
    window: int = 12
    interval: int = 3
    positions: str = "absolute"
    POSITIONS = ("absolute",)
    fills_to_visible = False  # the bank fills one prototype per interval, not every frame

    def __post_init__(self) -> None:
        check_choice("positions", self.positions, self.POSITIONS)
        check_int("sink", self.sink, 0)
        check_int("bank", self.bank, 0)
        check_int("window", self.window, self.sink + 1)
        check_int("interval", self.interval, 1)

    def history_frames(self, chunk: int = 3) -> int | None:
        chunk = check_int("chunk", chunk, 1)
        if chunk + self.sink > self.window:
            raise ValueError(f"chunk must be <= window - sink = {self.window - self.sink}, "
                             f"got {chunk}")
        return self.window + self.bank - chunk

    def visible_frames(self, chunk: int) -> int | None:
        return self.history_frames(chunk) + chunk

    @property
    def attention_needs(self) -> frozenset[str]:
        return frozenset({"text_keys", "first_step"})

    def score(self, inputs: AttentionInputs, keys: torch.Tensor) -> torch.Tensor:
        # mean over text tokens of k_text . k == (mean k_text) . k; then the mean over heads
        heads, dim = keys.shape[-2], keys.shape[-1]
        text = inputs.text_keys.float().mean(dim=2).flatten(1) / (heads * math.sqrt(dim))
        return (keys.float().flatten(3) @ text[:, None, :, None]).squeeze(-1)  # [B, n, N]

    def is_prototype(self, frame: int, chunk: int) -> bool:
        """Whether ``frame`` is the first frame of an ``interval``-th chunk."""
        return frame % chunk == 0 and (frame // chunk) % self.interval == self.interval - 1

    def decide(self, memory: MemoryView) -> Decision:
        held = memory.held
        recent = [i for i in range(min(self.sink, len(held)), len(held)) if not held[i].aggregate]
        if len(recent) <= memory.history - self.sink - self.bank:
            return Keep()
        i = recent[0]  # the oldest window frame leaves the window
        if self.bank == 0 or not self.is_prototype(held[i].frame, memory.chunk):
            return Evict(i)
        banked = tuple(j for j, e in enumerate(held) if e.aggregate)
        if len(banked) < self.bank:
            return Select((), 0, tokens=False, whole=(i,))
        return Select(banked, self.bank - 1, tokens=False, whole=(i,))
