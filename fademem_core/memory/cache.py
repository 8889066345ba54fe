"""The KV memory of one rollout: preallocated slots plus host-side bookkeeping.

A slot holds one memory entry (or one frame of the current chunk); the buffers and the merge
operators live in :mod:`fademem_core.memory.storage`.  Because attention is permutation invariant
once positions are explicit, slot order need not be time order: the attention context of a
layer is simply ``K[layer].view(B, slots * N, H, D)[:, :ctx * N]``, a view, never a
concatenation.

Bookkeeping lives in :class:`SlotCache` as plain Python numbers on the host, so a merge or
eviction never waits for the device.  After every inserted frame the cache asks its policy
(``policy.decide(MemoryView(held, newest, history, chunk_end))``, a pure function of plain
records) and applies the answer; the policy never calls back.  ``mu``/``span`` live here only.
"""
from __future__ import annotations

import math
import torch

from ..checks import check_int
from ..rope import grid_cos_sin, temporal_cos_sin
from .contract import (AttentionInputs, Average, Decision, Entry, Evict, KVCache, KVGeometry, Keep,
                       LayerKV, Merge, MemoryRule, MemoryView, Retain, Select)
from .records import HeldEntry, PendingChunk, SlotBuffers, preallocated_slots
from .storage import OPERATORS, SlotStorage, check_operator

__all__ = ["OPERATORS", "SlotBuffers", "SlotCache", "SlotStorage", "check_operator",
           "preallocated_slots"]


class _SlotLayer(LayerKV):
    def __init__(self, cache: "SlotCache", index: int) -> None:
        self._cache = cache
        self._index = index

    def attend(
        self, k: torch.Tensor, v: torch.Tensor, k_temporal_raw: torch.Tensor, write: bool,
        inputs: AttentionInputs | None = None,
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
        if cache.attention_needs:
            cache._score(self._index, inputs, write)
        if k.requires_grad or v.requires_grad:
            return cache._grad_context(self._index, k, v, write)
        storage.write(self._index, pending.slots, k, v, k_temporal_raw if write else None)
        if write:
            pending.written.add(self._index)
        return storage.context(self._index, pending.context)


class SlotCache(KVCache):
    """A KV memory in preallocated slots, kept as ``policy`` decides.

    ``policy`` (a :class:`~fademem_core.memory.contract.MemoryRule`, i.e. any cache policy)
    fixes the size (``history_frames``), whether the un-roped temporal channels of K are kept
    (``needs_raw_temporal``: merges and moving positions need them), the position strategy
    (``positions``) and, after each inserted frame, what to keep, evict or merge.  An unbounded
    policy preallocates ``max_frames`` slots when given, else grows by doubling; a bounded one
    allocates no more than ``max_frames`` can use and grows (to ``history + chunk`` at most) only
    if fed past that promise.
    """

    def __init__(self, geometry: KVGeometry, chunk: int, policy: MemoryRule,
                 max_frames: int | None = None) -> None:
        self._strategy = policy.position_strategy()
        if policy.needs_grid and geometry.grid is None:
            raise ValueError(f"{type(policy).__name__} needs KVGeometry.grid (rows, cols) of a "
                             f"frame's tokens; CausalWan.geometry fills it in")
        raw_temporal = bool(policy.needs_raw_temporal)
        if not raw_temporal and self._strategy.moves_keys:
            raise ValueError(
                f"raw_temporal must be kept with positions={policy.positions!r} (entries are "
                f"re-indexed and re-encoded); the policy reports needs_raw_temporal=False"
            )
        self.geometry = geometry
        self.policy = policy
        self.attention_needs = frozenset(policy.attention_needs)
        self.chunk = check_int("chunk", chunk, 1)
        self.history = policy.history_frames(self.chunk)
        slots = preallocated_slots(self.history, self.chunk, max_frames)
        self._storage: SlotStorage | None = SlotStorage(geometry, slots or self.chunk, raw_temporal,
                                                        bool(self.attention_needs))
        self._held: list[HeldEntry] = []
        self._pending: PendingChunk | None = None
        self._frames_seen = 0
        self._hw: tuple[torch.Tensor, torch.Tensor] | None = None  # row/column rotations
        self.layers: list[LayerKV] = [_SlotLayer(self, i) for i in range(geometry.num_layers)]

    # ----------------------------------------------------------------- policy decisions
    def held(self) -> tuple[Entry, ...]:
        """The entries, oldest first, as the policy sees them (plain records)."""
        return tuple(e.entry() for e in self._held)

    def _apply(self, decision: Decision) -> None:
        """Carry out one decision of the policy on the metadata and the tensors."""
        if isinstance(decision, Keep):
            return
        if isinstance(decision, Evict):
            del self._held[decision.index]
            return
        if isinstance(decision, Retain):
            self._held = [self._held[i] for i in decision.indices]
            return
        if isinstance(decision, Average):
            self._average(decision)
            return
        if isinstance(decision, Select):
            self._select(decision)
            return
        if not isinstance(decision, Merge):
            raise TypeError(f"a policy must decide Keep, Evict, Merge, Average, Retain or Select, "
                            f"got {decision!r}")
        i = decision.index
        a, b = self._held[i], self._held[i + 1]
        storage = self._live_storage()
        if decision.weight is None:
            slot = storage.merge(a.slot, b.slot, a.span, b.span, check_operator(decision.operator))
        else:
            slot = storage.blend(a.slot, b.slot, decision.weight)
        kept = decision.weight == 0 and decision.mu == a.mu  # the older's key, where it was
        self._held[i : i + 2] = [HeldEntry(decision.mu, decision.span, a.frame, slot,
                                       a.pos if kept else math.nan)]

    def _average(self, decision: Average) -> None:
        g = self.geometry
        if self._hw is None:  # checked at construction: the policy declared needs_grid
            self._hw = grid_cos_sin([0.0], g.grid[0], g.grid[1], g.head_dim, device=g.device)
        storage = self._live_storage()
        slots = [self._held[i].slot for i in decision.sources]
        for index, alpha, mu, span in decision.updates:
            target = self._held[index]
            storage.average_into(target.slot, slots, alpha, *self._hw)
            self._held[index] = HeldEntry(mu, span, target.frame, target.slot, math.nan, True)
        for i in sorted(decision.sources, reverse=True):
            del self._held[i]

    def _select(self, decision: Select) -> None:
        """Keep the best-scoring tokens (or frames) of the sources in the first ``keep`` sources'
        slots; the sources and ``whole`` entries (contiguous, in order) become aggregates."""
        first = decision.sources[0] if decision.sources else decision.whole[0]
        run = list(decision.sources) + list(decision.whole)
        keep = decision.keep
        if run != list(range(first, first + len(run))) or not 0 <= keep <= len(decision.sources):
            raise ValueError(f"Select needs contiguous sources then whole entries and 0 <= keep <= "
                             f"{len(decision.sources)}, got {decision!r}")
        src = [self._held[i] for i in decision.sources]
        if keep:
            self._live_storage().select([e.slot for e in src], [e.slot for e in src[:keep]],
                                        decision.tokens)
        kept = []
        for j, e in enumerate(src[:keep]):
            span = e.span if j + 1 < keep else sum(x.span for x in src[j:])
            # tokens of several frames share the slot: its key is re-encoded at the slot's
            # position; whole frames keep the (per layer different) position they were roped at
            pos = math.nan if decision.tokens else e.pos
            kept.append(HeldEntry(e.mu, span, e.frame, e.slot, pos, True))
        kept += [HeldEntry(e.mu, e.span, e.frame, e.slot, e.pos, True)
                 for e in (self._held[i] for i in decision.whole)]
        self._held[first : first + len(run)] = kept

    def _score(self, layer: int, inputs: AttentionInputs | None, write: bool) -> None:
        """At the chunk's first denoising step (or, for a chunk without one, its write pass):
        the policy scores every held token of ``layer`` from the attention inputs it declared."""
        pending = self._pending
        if pending.recache or layer in pending.scored:
            return
        needs = self.attention_needs
        missing = [n for n in sorted(needs - {"first_step"})
                   if inputs is None or getattr(inputs, n) is None]
        if missing:
            raise ValueError(f"{type(self.policy).__name__} needs {missing} passed to attend "
                             f"(AttentionInputs); got {inputs!r:.80}")
        if not (inputs.first_step or write or "first_step" not in needs):
            return
        pending.scored.add(layer)
        storage = self._live_storage()
        # every slot at once, a view (no gather): only the held entries' scores are ever read,
        # and the chunk's slots are scored again when they are held
        storage.scores[layer].copy_(self.policy.score(inputs, storage.k[layer]))

    def prompt_switch(self) -> list[int]:
        """Apply the policy's prompt-switch rule; return the frames to re-cache under the new
        prompt (LongLive's every exact frame, unless the policy flushes instead)."""
        self._live_storage()
        keep = self.policy.on_prompt_switch(self.held())
        if keep is None:
            return self.exact_frames()
        self._apply(Retain(tuple(keep)))
        self._encode_positions(self._frames_seen)
        return []

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
        context = len(self._held) + num_frames
        if context > storage.capacity:
            wanted = max(context, 2 * storage.capacity)
            bound = None if self.history is None else self.history + self.chunk
            storage.grow(wanted if bound is None else min(wanted, bound))
        free = self._pack_into(context)
        self._encode_positions(start_frame)  # a strategy may place entries by the chunk start
        positions = self._strategy.chunk_positions(self.held(), start_frame, num_frames)
        self._pending = PendingChunk(free[:num_frames], positions, context, start_frame, False)
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
            self._end_recache(pending)
            return
        end = pending.start + len(pending.slots)
        for j, (slot, pos) in enumerate(zip(pending.slots, pending.positions)):
            frame = pending.start + j
            self._held.append(HeldEntry(float(frame), 1, frame, slot, pos))
            self._frames_seen += 1
            self._apply(self.policy.decide(MemoryView(self.held(), frame, self.history, end,
                                                      self.chunk)))
        self._encode_positions(self._frames_seen)

    def entries(self) -> list[tuple[float, int]]:
        return [(e.mu, e.span) for e in self._held]

    def encoded_positions(self) -> list[float]:
        """The temporal position each entry's key is encoded at, oldest first."""
        return [e.pos for e in self._held]

    def buffers(self) -> SlotBuffers:
        """The K, V (and raw temporal) buffers, for inspection; change them only through the
        contract (``attend`` / ``commit``)."""
        storage = self._live_storage()
        return SlotBuffers(storage.k, storage.v, storage.kt)

    def entry_kv(
        self, layer: int, index: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Views ``(K, V, K_temporal_raw)`` ``[B, N, H, *]`` of entry ``index`` (oldest first).

        ``K_temporal_raw`` is None when the cache keeps no raw temporal channels.
        """
        storage = self._live_storage()
        slot = self._held[index].slot
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
        return [e.frame for e in self._held if e.span == 1 and not e.aggregate]

    def begin_recache(self, frames: list[int], keep: list[int] | None = None) -> list[float]:
        """Start re-computing the K/V of ``frames``; returns their positions.

        ``frames``: exact entries, or (absolute positions only) earlier frames the memory no
        longer holds, which the pass runs again so the others can attend to them.  ``keep``:
        first frames of the entries held after :meth:`commit` (default: every entry held now,
        at most the policy's history); a held entry outside ``frames`` is visible to the pass
        only if it is kept.  The memory is rebuilt at ``commit()``; a re-cache that is never
        committed leaves it unusable.
        """
        storage = self._live_storage()
        frames = list(frames)
        exact = {e.frame: e for e in self._held if e.span == 1 and not e.aggregate}
        held = [e.frame for e in self._held]
        if not frames or len(set(frames)) != len(frames):
            raise ValueError(f"frames must be distinct frame indices, at least one, got {frames}")
        for f in frames:
            if f not in exact:
                self._check_rerun(f)
        keep = held if keep is None else list(keep)
        if len(set(keep)) != len(keep) or not set(keep) <= set(held) | set(frames):
            raise ValueError(
                f"keep must name distinct held entries {held} or re-run frames {frames}, got {keep}"
            )
        if self.history is not None and len(keep) > self.history:
            # the policy evicts one entry per inserted frame: it must start within its bound
            raise ValueError(
                f"keep must name at most the policy's history of {self.history} entries, "
                f"got {len(keep)}: {keep}"
            )
        running, kept = set(frames), set(keep)
        fixed = [e for e in self._held if e.frame in kept and e.frame not in running]
        context = len(fixed) + len(frames)
        if context > storage.capacity:
            storage.grow(context)
        free = self._pack_into(context, fixed + [exact[f] for f in frames if f in exact])
        slots, positions = [], []
        for f in frames:
            if f in exact:
                slots.append(exact[f].slot)
                positions.append(exact[f].pos)
            else:
                slots.append(free.pop(0))
                positions.append(float(f))
        self._pending = PendingChunk(slots, positions, context, -1, True, frames=frames, keep=keep)
        return list(positions)

    # ----------------------------------------------------------------- internals
    def _grad_context(
        self, layer: int, k: torch.Tensor, v: torch.Tensor, write: bool
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context of a pass that is being differentiated (training with the memory in the loop).

        Writing the chunk into the shared buffers would be an in-place change of a tensor the
        earlier layers' attention saved for backward, so the chunk's K/V stay out of the
        storage: the context is the held entries (no gradient, as in FadeMem-FT, where the
        memory is built without it) followed by the chunk.  Same keys as :meth:`attend`'s
        view, in another order, which attention does not see.  Such a pass cannot commit.
        """
        if write:
            raise RuntimeError("a write=True pass must run without gradient (under torch.no_grad())")
        storage = self._live_storage()
        g = self.geometry
        slots = [e.slot for e in self._held]
        if not slots:
            return k, v
        index = torch.tensor(slots, device=storage.k.device)
        shape = (g.batch, len(slots) * g.tokens_per_frame, g.num_heads, g.head_dim)
        k_mem = storage.k[layer].index_select(1, index).reshape(shape)
        v_mem = storage.v[layer].index_select(1, index).reshape(shape)
        return torch.cat([k_mem, k.to(k_mem.dtype)], 1), torch.cat([v_mem, v.to(v_mem.dtype)], 1)

    def _live_storage(self) -> SlotStorage:
        if self._storage is None:
            raise RuntimeError("the cache was closed")
        return self._storage

    def _check_rerun(self, frame: object) -> None:
        """A frame the memory no longer holds exactly may be re-run only if nothing covers it."""
        if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame < self._frames_seen:
            raise ValueError(
                f"frames must be exact_frames() {self.exact_frames()} or earlier frames in "
                f"[0, {self._frames_seen}), got {frame!r}"
            )
        if any(e.frame <= frame < e.frame + e.span for e in self._held):
            raise ValueError(f"frame {frame} is inside a consolidated entry; it cannot be re-run")
        if self.policy.positions != "absolute":
            raise ValueError(
                f"re-running frame {frame}, which the memory no longer holds, needs "
                f"positions='absolute', got {self.policy.positions!r}"
            )

    def _end_recache(self, pending: PendingChunk) -> None:
        """Rebuild the entry list from the re-cache's ``keep`` (time order), new frames included."""
        by_frame = {e.frame: e for e in self._held}
        for f, slot, pos in zip(pending.frames, pending.slots, pending.positions):
            by_frame.setdefault(f, HeldEntry(float(f), 1, f, slot, pos))
        self._held = sorted((by_frame[f] for f in pending.keep), key=lambda e: e.frame)
        self._encode_positions(self._frames_seen)

    def _pack_into(self, context: int, entries: list[HeldEntry] | None = None) -> list[int]:
        """Move ``entries`` (default all) into slots < ``context``; return the free slots there.

        Slots of entries left out count as free (a re-cache drops or overwrites them).
        """
        storage = self._live_storage()
        entries = self._held if entries is None else entries
        used = {e.slot for e in entries}
        free = [s for s in range(context) if s not in used]
        for e in entries:
            if e.slot >= context:  # only after a short final chunk or a re-cache
                dst = free.pop(0)
                storage.move(dst, e.slot)
                e.slot = dst
        return free

    def _encode_positions(self, start_frame: int) -> None:
        """Re-rotate the temporal channels of entries whose position changed (for the chunk
        starting at ``start_frame``)."""
        wanted = self._strategy.entry_positions(self.held(), start_frame)
        todo = [(e, want) for e, want in zip(self._held, wanted) if e.pos != want]  # nan != all
        if not todo:
            return
        storage = self._live_storage()
        cos, sin = temporal_cos_sin([want for _, want in todo], self.geometry.head_dim,
                                    device=self.geometry.device)
        for j, (e, want) in enumerate(todo):
            storage.encode(e.slot, cos[j], sin[j])
            e.pos = want
