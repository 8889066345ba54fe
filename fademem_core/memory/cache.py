"""The KV memory of one rollout: preallocated slots plus host-side bookkeeping.

A slot holds one memory entry (or one frame of the current chunk); the buffers and the merge
operators live in :mod:`fademem_core.memory.storage`.  Because attention is permutation invariant
once positions are explicit, slot order need not be time order: the attention context of a
layer is simply ``K[layer].view(B, slots * N, H, D)[:, :ctx * N]``, a view, never a
concatenation.

Bookkeeping lives in :class:`SlotCache` as plain Python numbers on the host, so a merge or
eviction never waits for the device.  A policy passes an ``admit(cache)`` rule, called after
every inserted frame, that calls :meth:`SlotCache.evict` or :meth:`SlotCache.merge`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .policies.base import KVCache, KVGeometry, LayerKV, check_int, check_positions
from ..rope import inv_freq
from .storage import OPERATORS, SlotStorage, check_operator

__all__ = ["OPERATORS", "Entry", "SlotCache", "SlotStorage", "check_operator"]


@dataclass
class Entry:
    """Host-side metadata of one memory entry."""

    mu: float  # temporal centre (frame units)
    span: int  # frames summarised
    slot: int  # storage slot
    frame: int  # first frame it covers
    pos: float  # position its key's temporal channels are encoded at (nan: stale)


@dataclass
class _Pending:
    """The chunk (or re-cache) between begin_* and commit."""

    slots: list[int]
    positions: list[float]
    context: int  # slots visible to attention
    start: int
    recache: bool
    written: set[int] = field(default_factory=set)


class _SlotLayer(LayerKV):
    def __init__(self, cache: "SlotCache", index: int) -> None:
        self._cache = cache
        self._index = index

    def attend(
        self, k: torch.Tensor, v: torch.Tensor, k_temporal_raw: torch.Tensor, write: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        cache = self._cache
        pending = cache._pending
        if pending is None or cache._storage is None:
            raise RuntimeError("attend() outside a chunk: call begin_chunk() first")
        g = cache.geometry
        s = len(pending.slots) * g.tokens_per_frame
        want = (g.batch, s, g.num_heads, g.head_dim)
        want_t = want[:3] + (g.temporal_channels,)
        if tuple(k.shape) != want or tuple(v.shape) != want:
            raise ValueError(f"k and v must be {want}, got {tuple(k.shape)} and {tuple(v.shape)}")
        if tuple(k_temporal_raw.shape) != want_t:
            raise ValueError(f"k_temporal_raw must be {want_t}, got {tuple(k_temporal_raw.shape)}")
        storage = cache._storage
        storage.write(self._index, pending.slots, k, v, k_temporal_raw if write else None)
        if write:
            pending.written.add(self._index)
        return storage.context(self._index, pending.context)


class SlotCache(KVCache):
    """A KV memory in preallocated slots; subclasses decide what to evict or merge.

    ``history`` is the number of entries held between chunks (None: unbounded, the storage
    grows by doubling).  Positions: ``"absolute"`` encodes an entry at its centre ``mu`` and a
    chunk at its frame indices; ``"packed"`` encodes entries at 0..n-1 and the chunk after them.
    ``raw_temporal`` keeps the un-roped temporal channels of K; it is required for ``"packed"``
    and for any ``admit`` rule that merges (a merge without it raises RuntimeError).
    """

    def __init__(
        self,
        geometry: KVGeometry,
        chunk: int,
        history: int | None,
        positions: str,
        operator: str = "weighted_average",
        max_frames: int | None = None,
        admit: Callable[["SlotCache"], None] | None = None,
        raw_temporal: bool = True,
    ) -> None:
        check_positions(positions)
        if not raw_temporal and positions == "packed":
            raise ValueError(
                "raw_temporal must be True with positions='packed' (entries are re-indexed and "
                f"re-encoded), got raw_temporal={raw_temporal!r}"
            )
        self.geometry = geometry
        self._admit_rule = admit
        self.chunk = check_int("chunk", chunk, 1)
        self.positions_mode = positions
        self.operator = check_operator(operator)
        if history is not None:
            capacity = history + chunk
        elif max_frames is not None:
            capacity = max(check_int("max_frames", max_frames, 1), chunk)
        else:
            capacity = chunk
        self._storage: SlotStorage | None = SlotStorage(geometry, capacity, raw_temporal)
        self._entries: list[Entry] = []
        self._pending: _Pending | None = None
        self._frames_seen = 0
        # temporal inverse frequencies, float64, where the angles are computed: on CUDA a
        # Python-float position times this tensor needs no host->device copy (no sync)
        device = torch.device(geometry.device)
        self._angle_device = device if device.type == "cuda" else torch.device("cpu")
        self._inv_freq = inv_freq(geometry.temporal_channels).to(self._angle_device)
        self.layers: list[LayerKV] = [_SlotLayer(self, i) for i in range(geometry.num_layers)]

    # ----------------------------------------------------------------- policy hooks
    @property
    def held(self) -> list[Entry]:
        """The entries, oldest first (read them; change them only through evict/merge)."""
        return self._entries

    def evict(self, index: int) -> None:
        """Drop entry ``index`` (its slot becomes free)."""
        del self._entries[index]

    def merge(self, index: int, mu: float | None = None, span: int | None = None) -> None:
        """Merge entries ``index`` and ``index + 1`` into one (applies the operator)."""
        a, b = self._entries[index], self._entries[index + 1]
        new_span = a.span + b.span if span is None else span
        new_mu = (a.span * a.mu + b.span * b.mu) / (a.span + b.span) if mu is None else mu
        slot = self._live_storage().merge(a.slot, b.slot, a.span, b.span, self.operator)
        self._entries[index : index + 2] = [Entry(new_mu, new_span, slot, a.frame, math.nan)]

    # ----------------------------------------------------------------- contract
    def begin_chunk(self, start_frame: int, num_frames: int) -> list[float]:
        storage = self._live_storage()
        check_int("start_frame", start_frame, 0)
        check_int("num_frames", num_frames, 1)
        if num_frames > self.chunk:
            raise ValueError(
                f"num_frames must be <= the cache's chunk size {self.chunk}, got {num_frames}"
            )
        if start_frame != self._frames_seen:
            raise ValueError(
                f"start_frame must be {self._frames_seen} (the next frame to insert), "
                f"got {start_frame}"
            )
        n = len(self._entries)
        context = n + num_frames
        if context > storage.capacity:
            storage.grow(max(context, 2 * storage.capacity))
        free = self._pack_into(context)
        if self.positions_mode == "absolute":
            positions = [float(start_frame + j) for j in range(num_frames)]
        else:
            positions = [float(n + j) for j in range(num_frames)]
        self._pending = _Pending(free[:num_frames], positions, context, start_frame, False)
        return list(positions)

    def commit(self) -> None:
        pending = self._pending
        if pending is None:
            raise RuntimeError("commit() without a pending chunk: call begin_chunk() first")
        if len(pending.written) != self.geometry.num_layers:
            raise RuntimeError(
                f"commit() needs a write=True pass over all {self.geometry.num_layers} layers; "
                f"{len(pending.written)} were written"
            )
        self._pending = None
        if pending.recache:
            return
        for j, (slot, pos) in enumerate(zip(pending.slots, pending.positions)):
            frame = pending.start + j
            self._entries.append(Entry(float(frame), 1, slot, frame, pos))
            self._frames_seen += 1
            if self._admit_rule is not None:
                self._admit_rule(self)
        self._encode_positions()

    def entries(self) -> list[tuple[float, int]]:
        return [(e.mu, e.span) for e in self._entries]

    def positions(self) -> list[float]:
        """The temporal position each entry's key is encoded at, oldest first."""
        return [e.pos for e in self._entries]

    def entry_kv(
        self, layer: int, index: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Views ``(K, V, K_temporal_raw)`` ``[B, N, H, *]`` of entry ``index`` (oldest first).

        ``K_temporal_raw`` is None when the cache keeps no raw temporal channels.
        """
        storage = self._live_storage()
        slot = self._entries[index].slot
        kt = None if storage.kt is None else storage.kt[layer, :, slot]
        return storage.k[layer, :, slot], storage.v[layer, :, slot], kt

    @property
    def frames_seen(self) -> int:
        """Frames committed so far."""
        return self._frames_seen

    def nbytes(self) -> int:
        return 0 if self._storage is None else self._storage.nbytes()

    def close(self) -> None:
        self._storage = None
        self._pending = None

    def exact_frames(self) -> list[int]:
        return [e.frame for e in self._entries if e.span == 1]

    def begin_recache(self, frames: list[int]) -> list[float]:
        self._live_storage()
        by_frame = {e.frame: e for e in self._entries if e.span == 1}
        frames = list(frames)
        if not frames:
            raise ValueError("frames must name at least one exact frame, got []")
        if len(set(frames)) != len(frames) or any(f not in by_frame for f in frames):
            raise ValueError(
                f"frames must be distinct members of exact_frames() {sorted(by_frame)}, "
                f"got {frames}"
            )
        self._pack_into(len(self._entries))
        chosen = [by_frame[f] for f in frames]
        self._pending = _Pending(
            [e.slot for e in chosen], [e.pos for e in chosen], len(self._entries), -1, True
        )
        return [e.pos for e in chosen]

    # ----------------------------------------------------------------- internals
    def _live_storage(self) -> SlotStorage:
        if self._storage is None:
            raise RuntimeError("the cache was closed")
        return self._storage

    def _pack_into(self, context: int) -> list[int]:
        """Move entries so all sit in slots < ``context``; return the free slots there."""
        storage = self._live_storage()
        used = {e.slot for e in self._entries}
        free = [s for s in range(context) if s not in used]
        for e in self._entries:
            if e.slot >= context:  # only after a short final chunk or a re-cache
                dst = free.pop(0)
                storage.move(dst, e.slot)
                e.slot = dst
        return free

    def _encode_positions(self) -> None:
        """Re-rotate the temporal channels of entries whose position changed."""
        todo = []
        for i, e in enumerate(self._entries):
            want = e.mu if self.positions_mode == "absolute" else float(i)
            if e.pos != want:  # nan (merged) never equals
                todo.append((e, want))
        if not todo:
            return
        storage = self._live_storage()
        device = self.geometry.device
        for e, want in todo:
            angles = self._inv_freq * want  # float64, same formula as rope.axis_angles
            storage.encode(e.slot, angles.cos().float().to(device), angles.sin().float().to(device))
            e.pos = want
