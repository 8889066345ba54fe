"""Deep Forcing's memory (Yi et al. 2025, arXiv 2512.05081; cvlab-kaist/DeepForcing, whose
public repository holds only the project page, no code): a deep sink re-positioned just before
the recent frames, and participative compression of what lies between them."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...checks import check_choice, check_int
from ..contract import AttentionInputs, Decision, Keep, MemoryView, Select
from .base import CachePolicy


@dataclass(frozen=True)
class DeepForcing(CachePolicy):
    """Deep sink + top-C tokens by the chunk's attention + recent frames, sink RoPE shifted.

    Between chunks the memory holds ``window`` frames' worth of tokens: the first ``sink``
    frames, ``C = window - sink - recent`` frames' worth of compressed tokens and the ``recent``
    newest frames; a chunk sees those plus itself.  Until full every frame is kept.  Once a
    chunk's frames push it past ``window``, the entries between the sink and the ``recent``
    newest frames (the compressed slots and the frames leaving the recent window) compete:
    per layer and batch element the ``C * N`` tokens with the largest ``sum_q q . k`` (``q``
    the chunk's queries at its first denoising step, all its tokens, summed over heads; ``k``
    each candidate key as attention saw it) are kept, in time order, in ``C`` slots; the rest
    is dropped.  With ``positions="sink_shifted"`` the held entries sit contiguously just before
    the chunk, which keeps its absolute frame indices (the sink's RoPE follows the timeline, the
    compressed tokens are re-positioned contiguously between sink and recent frames).

    Interpretations (the paper's code is not public; see the README): the scoring queries are
    those of the chunk being generated (the most recent tokens attention has), at its first
    denoising step (a chunk without one, a prefix, is scored at its clean pass); raw ``q . k``
    without softmax, summed over query tokens and heads, one choice per layer; the candidates are
    scored where they sit at that step; ``window`` is the held budget ``sink + C + recent``.

    Parameters
    ----------
    sink : int
        First frames kept forever, ~half the budget (paper: 10).
    window : int
        Frames' worth of tokens held between chunks, sink, compressed tokens and recent frames
        included (the budget: 16, so ``C = 2`` frames of tokens).
    recent : int
        Newest frames kept exactly (4); at least the chunk.
    positions : str
        ``"sink_shifted"`` (Deep Sink's temporal RoPE adjustment) or ``"packed"`` (the same
        relative layout starting at 0).
    Source: Yi et al. 2025, Deep Forcing (arXiv 2512.05081), Sec. Deep Sink / Participative
    Compression; defaults as issue 14 states them for Self-Forcing's 21-frame model.
    """

    sink: int = 10
    window: int = 16
    recent: int = 4
    positions: str = "sink_shifted"
    POSITIONS = ("sink_shifted", "packed")

    def __post_init__(self) -> None:
        check_choice("positions", self.positions, self.POSITIONS)
        check_int("sink", self.sink, 0)
        check_int("recent", self.recent, 1)
        check_int("window", self.window, self.sink + self.recent)

    @property
    def compressed(self) -> int:
        """C: frames' worth of tokens kept by participative compression."""
        return self.window - self.sink - self.recent

    def history_frames(self, chunk: int = 3) -> int | None:
        chunk = check_int("chunk", chunk, 1)
        if chunk > self.recent:
            raise ValueError(f"chunk must be <= recent {self.recent} (a chunk's own frames are "
                             f"not scored before they are compressed), got {chunk}")
        return self.window

    def visible_frames(self, chunk: int) -> int | None:
        return self.history_frames(chunk) + chunk

    @property
    def attention_needs(self) -> frozenset[str]:
        return frozenset({"queries", "first_step"})

    def score(self, inputs: AttentionInputs, keys: torch.Tensor) -> torch.Tensor:
        # sum_q q . k == (sum_q q) . k: one matrix-vector product per layer, not the q k^T matrix
        q_sum = inputs.queries.float().sum(dim=1).flatten(1)  # [B, H * D]
        return (keys.float().flatten(3) @ q_sum[:, None, :, None]).squeeze(-1)

    def decide(self, memory: MemoryView) -> Decision:
        held = memory.held
        if memory.newest != memory.chunk_end - 1 or len(held) <= self.window:
            return Keep()  # compresses once per chunk, when its frames are all in
        return Select(tuple(range(self.sink, len(held) - self.recent)), self.compressed)
