"""The cache contract between the memory, the model and the sampler (read docs/ARCHITECTURE.md).

:class:`KVGeometry` is the allocation unit; a :class:`KVCache` owns one :class:`LayerKV` per
transformer block (the model calls ``layer.attend`` inside self-attention, the sampler drives
``begin_chunk`` / ``commit``).  A policy sees the memory as plain host-side :class:`Entry`
records and answers with one :data:`Decision` per inserted frame.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch

from ..checks import check_int
from ..rope import axis_dims

if TYPE_CHECKING:  # pragma: no cover
    from .positions import PositionStrategy

__all__ = ["ATTENTION_INPUTS", "AttentionInputs", "Average", "Decision", "Entry", "Evict", "KVCache",
           "KVGeometry", "Keep", "LayerKV", "Merge", "MemoryRule", "MemoryView", "Retain", "Select"]

#: what attention has that a policy may declare it needs (``CachePolicy.attention_needs``)
ATTENTION_INPUTS = ("queries", "text_keys", "first_step")


@dataclass(frozen=True)
class Entry:
    """What a policy sees of one memory entry (host-side numbers, no tensors)."""

    mu: float  # temporal centre, in frames
    span: int  # frames it summarises
    frame: int  # first frame it covers
    aggregate: bool = False  # a moving average over frames (never exact, never re-cached)


@dataclass(frozen=True)
class MemoryView:
    """What a policy is shown after each inserted frame (plain host-side data, no tensors).

    Tensors never appear here: a policy that scores tokens declares the attention inputs it
    needs (:class:`AttentionInputs`), the cache hands them to its ``score`` and a
    :class:`Select` decision refers to those scores.
    """

    held: tuple[Entry, ...]  # oldest first; the newest frame is the last entry
    newest: int  # index of the frame just inserted
    history: int | None  # entries the memory may hold between chunks (None: unbounded)
    chunk_end: int = 0  # end of the chunk being inserted = start of the next (the release's t)
    chunk: int = 1  # the cache's chunk size (frames per chunk)


@dataclass(frozen=True)
class Keep:
    """Decision: change nothing."""


@dataclass(frozen=True)
class Evict:
    """Decision: drop entry ``index`` (oldest first); its slot becomes free."""

    index: int


@dataclass(frozen=True)
class Merge:
    """Decision: merge entries ``index`` and ``index + 1`` into one at ``mu`` covering ``span``
    frames, combining their K/V with ``operator`` (see ``storage.OPERATORS``)."""

    index: int
    mu: float
    span: int
    operator: str = "weighted_average"
    weight: float | None = None  # given: ``(1 - weight) * older + weight * newer`` instead


@dataclass(frozen=True)
class Average:
    """Decision: fold the token mean of entries ``sources`` into moving-average slots, then
    drop the sources.  ``updates``: ``(index, alpha, mu, span)`` per slot, ``slot <- (1 -
    alpha) * slot + alpha * mean`` (``alpha = 1`` replaces it; the slot becomes an aggregate
    at ``mu`` covering ``span`` frames).  The mean is over every token of the un-roped keys
    (and the values), repeated on each token and roped at its row/column (MemRoPE)."""

    updates: tuple[tuple[int, float, float, int], ...]
    sources: tuple[int, ...]


@dataclass(frozen=True)
class Retain:
    """Decision: keep only the entries ``indices`` (oldest first), drop the others."""

    indices: tuple[int, ...]


@dataclass(frozen=True)
class Select:
    """Decision: of entries ``sources`` (oldest first) keep ``keep`` entries' worth of content,
    chosen per layer and batch element by the scores the policy's ``score`` gave at the chunk's
    scoring pass: single tokens (``tokens=True``, Deep Forcing) or whole frames ranked by their
    mean token score (MemFlow).  The kept content fills the slots of the first ``keep`` sources
    in time order (source, then token) and those entries become aggregates (their content differs
    per layer; entry ``j`` keeps source ``j``'s centre and first frame, the last one also covers
    the dropped sources' frames); the other sources are dropped.  ``whole``: entries kept as they
    are (marked aggregates too: MemFlow's newest prototype)."""

    sources: tuple[int, ...]
    keep: int
    tokens: bool = True
    whole: tuple[int, ...] = ()


# what a policy answers after each inserted frame
Decision = Keep | Evict | Merge | Average | Retain | Select


@dataclass(frozen=True)
class AttentionInputs:
    """What attention has, passed to ``LayerKV.attend`` only as far as the cache asks
    (``KVCache.attention_needs``): the rest stays None / False."""

    queries: torch.Tensor | None = None  # [B, S_chunk, H, D] the chunk's queries, roped as k
    text_keys: torch.Tensor | None = None  # [B, H, L, D] this layer's cross-attention keys
    first_step: bool = False  # this pass is the chunk's first denoising step


@dataclass(frozen=True)
class KVGeometry:
    """Shapes of the self-attention keys/values of one model at one resolution."""

    num_layers: int
    batch: int
    tokens_per_frame: int
    num_heads: int
    head_dim: int
    dtype: torch.dtype = torch.float32
    device: torch.device | str = "cpu"
    grid: tuple[int, int] | None = None  # (rows, cols) of a frame's tokens, when known

    def __post_init__(self) -> None:
        for name in ("num_layers", "batch", "tokens_per_frame", "num_heads", "head_dim"):
            check_int(name, getattr(self, name), 1)
        axis_dims(self.head_dim)  # raises for odd head_dim
        g = self.grid
        if g is not None and (not isinstance(g, tuple) or len(g) != 2
                              or any(isinstance(x, bool) or not isinstance(x, int) or x < 1
                                     for x in g) or g[0] * g[1] != self.tokens_per_frame):
            raise ValueError(f"grid must be (rows, cols) with rows * cols == tokens_per_frame "
                             f"{self.tokens_per_frame}, got {g!r}")
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point:
            raise ValueError(f"dtype must be a floating torch.dtype, got {self.dtype!r}")

    @property
    def temporal_channels(self) -> int:
        """Tc: the leading channels of a head that carry the temporal RoPE axis."""
        return axis_dims(self.head_dim)[0]

    @property
    def itemsize(self) -> int:
        return torch.empty((), dtype=self.dtype).element_size()

    def bytes_per_frame(self) -> int:
        """K + V bytes of one latent frame over all layers (what attention reads)."""
        return (
            2 * self.num_layers * self.batch * self.tokens_per_frame * self.num_heads
            * self.head_dim * self.itemsize
        )

    def slot_bytes(self, raw_temporal: bool = True, scores: bool = False) -> int:
        """Bytes one memory slot allocates: K, V and, with ``raw_temporal``, the un-roped
        temporal channels of K (only policies whose positions move keep those; see
        :attr:`CachePolicy.needs_raw_temporal` and :meth:`CachePolicy.slot_bytes`); with
        ``scores``, one float32 score per token and layer (policies that select tokens)."""
        channels = 2 * self.head_dim + (self.temporal_channels if raw_temporal else 0)
        tokens = self.num_layers * self.batch * self.tokens_per_frame
        return tokens * self.num_heads * channels * self.itemsize + (4 * tokens if scores else 0)


class LayerKV(ABC):
    """One transformer block's view of the cache."""

    @abstractmethod
    def attend(
        self, k: torch.Tensor, v: torch.Tensor, k_temporal_raw: torch.Tensor, write: bool,
        inputs: AttentionInputs | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Place the chunk's keys/values and return the attention context ``(K_ctx, V_ctx)``.

        ``k``/``v`` are ``[B, S_chunk, H, D]`` (``k`` fully roped at the positions
        ``begin_chunk`` returned), ``k_temporal_raw`` is ``[B, S_chunk, H, Tc]``, the temporal
        channels of ``k`` before RoPE.  The context is ``[B, S_ctx, H, D]``: memory entries
        (keys at their positions) plus the chunk; key order is arbitrary (positions are
        explicit) and no mask is needed.  ``write=True`` marks the clean pass whose K/V
        ``commit`` will keep.  ``inputs``: the attention inputs the cache declared it needs
        (``KVCache.attention_needs``; None when it needs none).
        """


class KVCache(ABC):
    """The memory of one rollout: per-layer storage plus host-side bookkeeping."""

    layers: list[LayerKV]
    #: names in :data:`ATTENTION_INPUTS` the model must pass to ``attend`` (its policy's needs)
    attention_needs: frozenset[str] = frozenset()

    @abstractmethod
    def begin_chunk(self, start_frame: int, num_frames: int) -> list[float]:
        """Start a chunk of ``num_frames`` latent frames; return their temporal positions."""

    @abstractmethod
    def commit(self) -> None:
        """Insert the chunk written by the ``write=True`` pass (or end a re-cache)."""

    @abstractmethod
    def entries(self) -> list[tuple[float, int]]:
        """``(mu, span)`` per held entry, oldest first (mu = the entry's temporal centre)."""

    @abstractmethod
    def nbytes(self) -> int:
        """Bytes allocated right now (K, V and, if the policy needs them, the un-roped
        temporal channels of K)."""

    @abstractmethod
    def close(self) -> None:
        """Free the buffers; idempotent."""

    @abstractmethod
    def exact_frames(self) -> list[int]:
        """Frame indices of the entries that hold exactly one frame (span 1), oldest first."""

    def prompt_switch(self) -> list[int]:
        """Apply the policy's rule for a prompt switch; return the frames to re-cache under the
        new prompt (default, LongLive's: every exact frame)."""
        return self.exact_frames()

    @abstractmethod
    def begin_recache(self, frames: list[int], keep: list[int] | None = None) -> list[float]:
        """Start re-computing the K/V of ``frames`` (exact entries, or earlier frames no longer held).

        Returns their positions; the next ``write=True`` pass over those frames' latents
        replaces their K/V (they attend to each other and to the held entries that are kept)
        and ``commit()`` ends the re-cache, leaving the entries whose first frames are ``keep``
        (default: those held now).
        """


class MemoryRule(Protocol):
    """What the cache needs of a policy (every :class:`~fademem_core.memory.policies.CachePolicy`
    is one): its size, its storage needs, its position strategy and its decision."""

    positions: str

    @property
    def needs_raw_temporal(self) -> bool: ...

    @property
    def needs_grid(self) -> bool: ...

    def history_frames(self, chunk: int = 3) -> int | None: ...

    def position_strategy(self) -> "PositionStrategy": ...

    def decide(self, memory: MemoryView) -> Decision: ...

    def on_prompt_switch(self, held: tuple[Entry, ...]) -> tuple[int, ...] | None: ...

    @property
    def attention_needs(self) -> frozenset[str]: ...

    def score(self, inputs: AttentionInputs, keys: torch.Tensor) -> torch.Tensor: ...
