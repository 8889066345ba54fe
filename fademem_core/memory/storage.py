"""Preallocated K/V slot buffers and the merge operators every bounded policy shares.

Storage: one tensor each for K (fully roped), V and, when the policy needs them, the canonical
*un-roped* temporal channels of K (``Tc = axis_dims(D)[0]`` channels), shaped
``[layers, batch, slots, tokens, heads, ch]``.  Those raw channels are only needed when an
entry's temporal position can change after it was written (merges, packed positions); without
them K is never re-encoded.  Bookkeeping (which entry sits in which slot) is
:class:`fademem_core.memory.cache.SlotCache`'s job; this module only moves numbers.
"""
from __future__ import annotations

import os

import torch

from ..rope import apply_rotary, rotate_into_
from .contract import KVGeometry

OPERATORS = ("weighted_average", "average", "select_nearest", "max_pool")


def check_operator(value: object) -> str:
    """Validate a merge operator name."""
    if value not in OPERATORS:
        raise ValueError(f"operator must be one of {OPERATORS}, got {value!r}")
    return str(value)


def device_memory_bytes(device: torch.device | str) -> int | None:
    """Physical memory of ``device`` (the machine's RAM for the CPU); None when unknown."""
    dev = torch.device(device)
    if dev.type == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError, AttributeError):  # not a POSIX system
            return None
    if dev.type == "cuda" and torch.cuda.is_available():
        return int(torch.cuda.get_device_properties(dev).total_memory)
    return None


def check_allocation(what: str, nbytes: int, device: torch.device | str) -> None:
    """ValueError, before allocating, when ``nbytes`` exceed all the memory ``device`` has."""
    limit = device_memory_bytes(device)
    if limit is not None and nbytes > limit:
        raise ValueError(f"{what} needs {nbytes} bytes ({nbytes / 2**30:.1f} GiB), more than the "
                         f"{limit} bytes ({limit / 2**30:.1f} GiB) {torch.device(device).type} "
                         f"memory holds: shorten the video, lower the resolution or use a "
                         f"bounded policy")


def allocation_failed(what: str, nbytes: int, error: BaseException) -> ValueError:
    """The ValueError for an allocation the device refused (out of memory right now)."""
    return ValueError(f"{what} needs {nbytes} bytes ({nbytes / 2**30:.1f} GiB), which could not "
                      f"be allocated: {str(error).splitlines()[0] if str(error) else error!r}")


class SlotStorage:
    """K, V (and optionally un-roped temporal channels) for ``capacity`` frame slots.

    ``raw_temporal=False`` allocates no ``kt`` (it is None): merging and re-encoding are then
    impossible, which is fine for caches whose keys never move.
    """

    def __init__(self, geometry: KVGeometry, capacity: int, raw_temporal: bool = True,
                 scores: bool = False) -> None:
        self.geometry = geometry
        self.capacity = 0
        self.raw_temporal = bool(raw_temporal)
        self.k = self.v = torch.empty(0)
        self.kt: torch.Tensor | None = torch.empty(0) if self.raw_temporal else None
        # float32 token scores [layers, batch, slots, tokens] of a policy that selects tokens
        self.scores: torch.Tensor | None = torch.empty(0) if scores else None
        self._allocate(capacity)

    def _tensors(self) -> tuple[torch.Tensor, ...]:
        """Every allocated K/V buffer (K, V and kt when kept), all slot-indexed alike."""
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
        nbytes = capacity * g.slot_bytes(self.raw_temporal, self.scores is not None)
        what = f"a KV cache of {capacity} frame slots"
        check_allocation(what, nbytes, g.device)  # computed from the geometry, nothing allocated
        shape = (g.num_layers, g.batch, capacity, g.tokens_per_frame, g.num_heads)
        opts = {"dtype": g.dtype, "device": g.device}
        try:
            k = torch.zeros(shape + (g.head_dim,), **opts)
            v = torch.zeros(shape + (g.head_dim,), **opts)
            kt = torch.zeros(shape + (g.temporal_channels,), **opts) if self.raw_temporal else None
            sc = None if self.scores is None else torch.zeros(
                shape[:4], dtype=torch.float32, device=g.device)
        except (torch.OutOfMemoryError, RuntimeError) as e:  # the CPU allocator raises RuntimeError
            raise allocation_failed(what, nbytes, e) from None
        if self.capacity:
            n = self.capacity
            for new, old in ((k, self.k), (v, self.v), (kt, self.kt), (sc, self.scores)):
                if new is not None:
                    new[:, :, :n].copy_(old)
        self.k, self.v, self.kt, self.scores, self.capacity = k, v, kt, sc, capacity

    def grow(self, capacity: int) -> None:
        """Reallocate to ``capacity`` slots keeping the contents (unbounded caches only)."""
        if capacity > self.capacity:
            self._allocate(capacity)

    def nbytes(self) -> int:
        extra = () if self.scores is None else (self.scores,)
        return sum(t.numel() * t.element_size() for t in self._tensors() + extra)

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
        # one copy per tensor only for an ascending run: a re-cache may name its frames in any
        # slot order, and [0, 2, 1, 3] spans 4 slots without being that run
        if slots == list(range(first, first + num)):
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
        temporal channels are left stale: the caller re-encodes them from ``kt``.  The
        averages commute with rotation, so merging the stored (height/width-roped) K equals
        merging un-roped keys; ``max_pool`` is the elementwise max of the stored K and V.
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

    def blend(self, a: int, b: int, weight: float) -> int:
        """``a <- (1 - weight) * a + weight * b`` over K, V and the raw temporal channels (all
        layers); returns ``a``.  ``weight = 0`` keeps ``a`` untouched (the release's anchor)."""
        self._need_kt("merge")
        if weight:
            for t in self._tensors():
                t[:, :, a].lerp_(t[:, :, b], weight)
        return a

    def average_into(self, slot: int, sources: list[int], alpha: float,
                     hw_cos: torch.Tensor, hw_sin: torch.Tensor) -> None:
        """Moving average of the sources' token mean into ``slot`` (all layers).

        The mean is taken over every token of every source of the *un-roped* keys (height and
        width rotations undone with ``hw_cos/hw_sin [N, D/2]``, the grid's angles at temporal
        position 0; temporal channels from ``kt``), broadcast to every token and roped back at
        each token's own row and column, then ``slot <- (1 - alpha) * slot + alpha * mean``.
        K's temporal channels are left stale: the caller re-encodes them.
        """
        kt = self._need_kt("a moving average")
        tc = kt.shape[-1]
        src = torch.tensor(sources, device=self.k.device)
        keys = apply_rotary(self.k.index_select(2, src).float(), hw_cos, -hw_sin)
        mean_k = keys.mean(dim=(2, 3), keepdim=True)  # temporal pairs saw angle 0: unchanged
        mean_k[..., :tc] = kt.index_select(2, src).float().mean(dim=(2, 3), keepdim=True)
        mean_v = self.v.index_select(2, src).float().mean(dim=(2, 3), keepdim=True)
        tokens = mean_k.shape[:3] + (self.geometry.tokens_per_frame,)
        target_k = apply_rotary(mean_k.expand(tokens + mean_k.shape[4:]), hw_cos, hw_sin)[:, :, 0]
        targets = ((self.k, target_k), (self.v, mean_v.expand(tokens + mean_v.shape[4:])[:, :, 0]),
                   (kt, target_k[..., :tc]))
        for buf, target in targets:
            buf[:, :, slot].lerp_(target.to(buf.dtype), alpha)

    def move(self, dst: int, src: int) -> None:
        """Copy slot ``src`` into slot ``dst`` over all layers."""
        extra = () if self.scores is None else (self.scores,)
        for t in self._tensors() + extra:
            t[:, :, dst].copy_(t[:, :, src])

    def select(self, sources: list[int], targets: list[int], tokens: bool) -> None:
        """Keep the best-scoring content of slots ``sources`` in slots ``targets`` (all layers,
        each layer and batch element on its own scores).

        ``tokens``: the ``len(targets) * N`` best single tokens, else the ``len(targets)`` frames
        of best mean score; kept in time order (source, then token) and written into ``targets``
        (a copy is gathered first, so targets may be sources).  Ties go to the older token.
        """
        scores = self.scores
        if scores is None:
            raise RuntimeError("select needs token scores, which this storage does not keep")
        n = self.geometry.tokens_per_frame
        src = torch.tensor(sources, device=scores.device)
        dst = torch.tensor(targets, device=scores.device)
        cand = scores.index_select(2, src)  # [L, B, S, N]
        if tokens:
            flat = cand.flatten(2)
            # stable descending sort: equal scores keep the older token first
            best = flat.argsort(dim=-1, descending=True, stable=True)[..., : len(targets) * n]
            index = best.sort(dim=-1).values  # time order
        else:
            frames = cand.mean(-1).argsort(dim=-1, descending=True, stable=True)[..., : len(targets)]
            frames = frames.sort(dim=-1).values
            index = (frames[..., None] * n + torch.arange(n, device=scores.device)).flatten(2)
        for t in self._tensors() + (scores,):
            picked = t.index_select(2, src).flatten(2, 3)  # [L, B, S*N, ...]
            idx = index.reshape(index.shape + (1,) * (picked.dim() - 3)).expand(
                index.shape + picked.shape[3:])
            kept = picked.gather(2, idx).unflatten(2, (len(targets), n))
            t.index_copy_(2, dst, kept)

    def encode(self, slot: int, cos: torch.Tensor, sin: torch.Tensor) -> None:
        """Rebuild K's temporal channels of ``slot`` from ``kt`` rotated by ``cos/sin [Tc/2]``."""
        kt = self._need_kt("re-encoding a key at a new position")
        rotate_into_(self.k[:, :, slot, ..., : kt.shape[-1]], kt[:, :, slot], cos, sin)
