"""The cache contract shared by every policy, the model and the sampler.

A :class:`CachePolicy` is a small frozen dataclass: it describes a memory (how many frames it
holds, how many a chunk sees, how many bytes it needs) and builds a :class:`KVCache` for one
rollout.  The cache owns one :class:`LayerKV` per transformer block; the model calls
``layer.attend`` inside self-attention and the sampler drives ``begin_chunk`` / ``commit``.
See ``docs/ARCHITECTURE.md`` for the full protocol.
"""
from __future__ import annotations

import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch

from ..rope import axis_dims

POSITION_STRATEGIES = ("absolute", "packed")


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an int, or raise ValueError naming it (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


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

    def slot_bytes(self) -> int:
        """Bytes one memory slot allocates: K, V and the un-roped temporal channels of K."""
        per_token = (2 * self.head_dim + self.temporal_channels) * self.num_heads
        return self.num_layers * self.batch * self.tokens_per_frame * per_token * self.itemsize


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
        """Bytes allocated right now (K, V and canonical temporal channels)."""

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

    def memory_bytes(self, geometry: KVGeometry, chunk: int) -> int | None:
        """Upper bound of the bytes the cache allocates (None = unbounded)."""
        history = self.history_frames(chunk)
        if history is None:
            return None
        return (history + chunk) * geometry.slot_bytes()

    @abstractmethod
    def make_cache(
        self, geometry: KVGeometry, chunk: int, max_frames: int | None = None
    ) -> KVCache:
        """Build an empty cache for chunks of at most ``chunk`` frames."""
