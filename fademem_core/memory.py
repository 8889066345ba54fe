"""Preallocated KV slot storage and the merge operators every bounded policy shares.

Storage: one tensor each for K (fully roped), V and, when the policy needs them, the canonical
*un-roped* temporal channels of K (``Tc = axis_dims(D)[0]`` channels), shaped
``[layers, batch, slots, tokens, heads, ch]``.  Those raw channels are only needed when an
entry's temporal position can change after it was written (merges, packed positions); without
them K is never re-encoded.
A slot holds one memory entry (or one frame of the current chunk).  Because attention is
permutation invariant once positions are explicit, slot order need not be time order: the
attention context of a layer is simply ``K[layer].view(B, slots * N, H, D)[:, :ctx * N]``, a
view, never a concatenation.

Bookkeeping lives in :class:`SlotCache` as plain Python numbers on the host, so a merge or
eviction never waits for the device.  A policy passes an ``admit(cache)`` rule, called after
every inserted frame, that calls :meth:`SlotCache.evict` or :meth:`SlotCache.merge`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch

from .policies.base import KVCache, KVGeometry, LayerKV, check_int
from .rope import inv_freq

OPERATORS = ("weighted_average", "average", "select_nearest", "max_pool")


def check_operator(value: object) -> str:
    """Validate a merge operator name."""
    if value not in OPERATORS:
        raise ValueError(f"operator must be one of {OPERATORS}, got {value!r}")
    return str(value)


class SlotStorage:
    """K, V (and optionally un-roped temporal channels) for ``capacity`` frame slots.

    ``raw_temporal=False`` allocates no ``kt`` (it is None): merging and re-encoding are then
    impossible, which is fine for caches whose keys never move.
    """

    def __init__(self, geometry: KVGeometry, capacity: int, raw_temporal: bool = True) -> None:
        self.geometry = geometry
        self.capacity = 0
        self.raw_temporal = bool(raw_temporal)
        self.k = self.v = torch.empty(0)
        self.kt: torch.Tensor | None = torch.empty(0) if self.raw_temporal else None
        self._allocate(capacity)

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        """Every allocated buffer (K, V and kt when kept), all slot-indexed alike."""
        return (self.k, self.v) if self.kt is None else (self.k, self.v, self.kt)

    def _need_kt(self, what: str) -> torch.Tensor:
        if self.kt is None:
            raise RuntimeError(
                f"{what} needs the un-roped temporal channels, which this storage does not keep "
                f"(raw_temporal=False); the policy must report needs_raw_temporal=True"
            )
        return self.kt

    def _allocate(self, capacity: int) -> None:
        g = self.geometry
        shape = (g.num_layers, g.batch, capacity, g.tokens_per_frame, g.num_heads)
        opts = {"dtype": g.dtype, "device": g.device}
        k = torch.zeros(shape + (g.head_dim,), **opts)
        v = torch.zeros(shape + (g.head_dim,), **opts)
        kt = torch.zeros(shape + (g.temporal_channels,), **opts) if self.raw_temporal else None
        if self.capacity:
            n = self.capacity
            k[:, :, :n].copy_(self.k)
            v[:, :, :n].copy_(self.v)
            if kt is not None:
                kt[:, :, :n].copy_(self.kt)
        self.k, self.v, self.kt, self.capacity = k, v, kt, capacity

    def grow(self, capacity: int) -> None:
        """Reallocate to ``capacity`` slots keeping the contents (unbounded caches only)."""
        if capacity > self.capacity:
            self._allocate(capacity)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tensors())

    def write(
        self,
        layer: int,
        slots: list[int],
        k: torch.Tensor,
        v: torch.Tensor,
        kt: torch.Tensor | None,
    ) -> None:
        """Copy a chunk's ``[B, len(slots) * N, H, *]`` tensors into ``slots`` of ``layer``.

        ``kt`` is ignored when this storage keeps no raw temporal channels.
        """
        num = len(slots)
        parts = [(self.k, k), (self.v, v)]
        if kt is not None and self.kt is not None:
            parts.append((self.kt, kt))
        first = slots[0]
        if slots[-1] - first == num - 1:  # contiguous run: one copy per tensor
            for buf, src in parts:
                buf[layer, :, first : first + num].copy_(src.unflatten(1, (num, -1)))
        else:
            for buf, src in parts:
                frames = src.unflatten(1, (num, -1))
                for j, slot in enumerate(slots):
                    buf[layer, :, slot].copy_(frames[:, j])

    def context(self, layer: int, num_slots: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Views ``[B, num_slots * N, H, D]`` of the first ``num_slots`` slots of ``layer``."""
        g = self.geometry
        shape = (g.batch, self.capacity * g.tokens_per_frame, g.num_heads, g.head_dim)
        stop = num_slots * g.tokens_per_frame
        return self.k[layer].view(shape)[:, :stop], self.v[layer].view(shape)[:, :stop]

    def merge(self, a: int, b: int, span_a: int, span_b: int, operator: str) -> int:
        """Merge slot ``b`` (the newer entry) with slot ``a`` in place, over all layers.

        Returns the slot that holds the result (the other one is free afterwards).  K's
        temporal channels are left stale: the caller re-encodes them from ``kt``.
        """
        self._need_kt("merge")  # the merged entry moves: its key must be re-encoded
        if operator == "select_nearest":
            return b  # the newer entry's K/V survive untouched
        tensors = self._tensors()
        if operator == "max_pool":
            for t in tensors:
                torch.maximum(t[:, :, a], t[:, :, b], out=t[:, :, a])
            return a
        weight = 0.5 if operator == "average" else span_b / (span_a + span_b)
        for t in tensors:
            t[:, :, a].lerp_(t[:, :, b], weight)
        return a

    def move(self, dst: int, src: int) -> None:
        """Copy slot ``src`` into slot ``dst`` over all layers."""
        for t in self._tensors():
            t[:, :, dst].copy_(t[:, :, src])

    def encode(self, slot: int, cos: torch.Tensor, sin: torch.Tensor) -> None:
        """Rebuild K's temporal channels of ``slot`` from ``kt`` rotated by ``cos/sin [Tc/2]``."""
        kt = self._need_kt("re-encoding a key at a new position")
        tc = kt.shape[-1]
        x = kt[:, :, slot]
        x1, x2 = x[..., 0::2], x[..., 1::2]
        even = self.k[:, :, slot, ..., 0:tc:2]
        odd = self.k[:, :, slot, ..., 1:tc:2]
        torch.mul(x1, cos, out=even)
        even.addcmul_(x2, sin, value=-1.0)
        torch.mul(x1, sin, out=odd)
        odd.addcmul_(x2, cos)


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
        if not raw_temporal and positions == "packed":
            raise ValueError(
                "raw_temporal must be True with positions='packed' (entries are re-indexed and "
                f"re-encoded), got raw_temporal={raw_temporal!r}"
            )
        self.geometry = geometry
        self._admit_rule = admit
        self.chunk = check_int("chunk", chunk, 1)
        self.history = history
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
