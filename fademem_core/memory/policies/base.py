"""The cache contract shared by every policy, the model and the sampler.

A :class:`CachePolicy` is a small frozen dataclass: it describes a memory (how many frames it
holds, how many a chunk sees, how many bytes it needs) and builds a :class:`KVCache` for one
rollout.  The cache owns one :class:`LayerKV` per transformer block; the model calls
``layer.attend`` inside self-attention and the sampler drives ``begin_chunk`` / ``commit``.
See ``docs/ARCHITECTURE.md`` for the full protocol.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from ...rope import axis_dims
from ..planner import check_int  # re-exported: the policies and the memory validate with it

POSITION_STRATEGIES = ("absolute", "packed")


def check_positions(value: object) -> str:
    """Validate a position strategy name."""
    if value not in POSITION_STRATEGIES:
        raise ValueError(f"positions must be one of {POSITION_STRATEGIES}, got {value!r}")
    return str(value)


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

    def __post_init__(self) -> None:
        for name in ("num_layers", "batch", "tokens_per_frame", "num_heads", "head_dim"):
            check_int(name, getattr(self, name), 1)
        axis_dims(self.head_dim)  # raises for odd head_dim
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

    def slot_bytes(self, raw_temporal: bool = True) -> int:
        """Bytes one memory slot allocates: K, V and, with ``raw_temporal``, the un-roped
        temporal channels of K (only policies whose positions move keep those; see
        :attr:`CachePolicy.needs_raw_temporal` and :meth:`CachePolicy.slot_bytes`)."""
        channels = 2 * self.head_dim + (self.temporal_channels if raw_temporal else 0)
        return (self.num_layers * self.batch * self.tokens_per_frame * self.num_heads * channels
                * self.itemsize)


class LayerKV(ABC):
    """One transformer block's view of the cache."""

    @abstractmethod
    def attend(
        self, k: torch.Tensor, v: torch.Tensor, k_temporal_raw: torch.Tensor, write: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Place the chunk's keys/values and return the attention context ``(K_ctx, V_ctx)``.

        ``k``/``v`` are ``[B, S_chunk, H, D]`` (``k`` fully roped at the positions
        ``begin_chunk`` returned), ``k_temporal_raw`` is ``[B, S_chunk, H, Tc]``, the temporal
        channels of ``k`` before RoPE.  The context is ``[B, S_ctx, H, D]``: memory entries
        (keys at their positions) plus the chunk; key order is arbitrary (positions are
        explicit) and no mask is needed.  ``write=True`` marks the clean pass whose K/V
        ``commit`` will keep.
        """


class KVCache(ABC):
    """The memory of one rollout: per-layer storage plus host-side bookkeeping."""

    layers: list[LayerKV]

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

    @abstractmethod
    def begin_recache(self, frames: list[int]) -> list[float]:
        """Start re-computing the K/V of ``frames`` (a subset of :meth:`exact_frames`).

        Returns their positions; the next ``write=True`` pass over those frames' latents
        replaces their K/V in place (they attend to the whole memory, themselves included) and
        ``commit()`` ends the re-cache.
        """


class CachePolicy(ABC):
    """A frozen, hashable description of a KV memory.

    Subclasses are ``@dataclass(frozen=True)`` with a ``positions`` field
    (``"absolute"``: entries at their temporal centre, the chunk at its frame indices;
    ``"packed"``: entries at 0..n-1 in order, the chunk right after them).
    """

    positions: str = "absolute"

    @abstractmethod
    def history_frames(self, chunk: int = 3) -> int | None:
        """Entries held between chunks (None = unbounded).  Window sizes depend on ``chunk``."""

    @abstractmethod
    def visible_frames(self, chunk: int) -> int | None:
        """Frames one chunk attends to, itself included (None = unbounded)."""

    @property
    def needs_raw_temporal(self) -> bool:
        """Whether the cache must keep the un-roped temporal channels of K.

        They are needed only when an entry's temporal position can change after it was
        written: merges (FadeMem overrides this) or ``"packed"`` positions (entries are
        re-indexed).  With ``"absolute"`` positions and no merging every key stays where it was
        roped, so the full cache and the windows store K and V only.
        """
        return self.positions == "packed"

    def slot_bytes(self, geometry: KVGeometry) -> int:
        """Bytes of one memory slot of this policy's cache (K, V [+ raw temporal channels])."""
        return geometry.slot_bytes(self.needs_raw_temporal)

    def memory_bytes(
        self, geometry: KVGeometry, chunk: int, max_frames: int | None = None
    ) -> int | None:
        """Bytes the cache allocates, exactly (None = unbounded).

        Bounded policies allocate ``history + chunk`` slots whatever ``max_frames`` is.  An
        unbounded policy given ``max_frames`` (as :meth:`make_cache` is) preallocates
        ``max(max_frames, chunk)`` slots: that many bytes are returned.
        """
        chunk = check_int("chunk", chunk, 1)
        history = self.history_frames(chunk)
        if history is not None:
            return (history + chunk) * self.slot_bytes(geometry)
        if max_frames is None:
            return None
        return max(check_int("max_frames", max_frames, 1), chunk) * self.slot_bytes(geometry)

    @abstractmethod
    def make_cache(
        self, geometry: KVGeometry, chunk: int, max_frames: int | None = None
    ) -> KVCache:
        """Build an empty cache for chunks of at most ``chunk`` frames."""
