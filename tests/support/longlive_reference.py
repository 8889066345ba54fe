"""Independent reference of LongLive v1.0's interactive rollout (prompt switches), not the code under test.

Written out from LongLive's ``pipeline/interactive_causal_inference.py`` and the KV handling of
``wan/modules/causal_model.py`` (read for facts, none of it copied): one K/V buffer of ``local``
frames per layer whose first ``sink`` slots are the sink, two pointers (``global_end``: frames
generated, ``local_end``: slots filled).  A forward of ``n`` frames starting at frame ``start``:

* ``recompute = start + n <= global_end and start > 0`` (it rewrites frames seen before);
* new frames that do not fit roll the buffer: the oldest frames after the sink are evicted and
  the rest shift left; otherwise ``local_end`` grows by the new frames;
* the frames' K/V land in ``[local_end - n, local_end)``, except that a recompute leaves the
  sink slots alone, unless the forward is a switch re-cache with ``global_sink: false``;
* attention sees the sink slots plus the ``local - sink`` slots ending at ``local_end``, no mask;
* the pointers advance unless it was a recompute.

Every forward writes (denoising passes too; the clean pass overwrites them).  At a switch before
frame ``S``: with ``global_sink: false`` the buffers are zeroed; then frames
``max(0, S - local) .. S-1`` run in one forward at the context timestep under the new prompt.
The model forward itself is the pack's ``CausalWan`` (checked against diffusers elsewhere); this
file replaces only the cache and the rollout loop.
"""
from __future__ import annotations

import torch


class LongLiveCache:
    """LongLive's rolling sink + window buffers behind the pack's ``cache.layers`` contract."""

    def __init__(self, num_layers: int, batch: int, tokens: int, heads: int, head_dim: int,
                 sink: int, local: int) -> None:
        self.tokens, self.sink, self.local = tokens, sink, local
        self.start = 0  # frame the next forward starts at (LongLive's current_start)
        self.sink_recache = False
        self.layers = [_Layer(self, batch, heads, head_dim) for _ in range(num_layers)]

    def zero(self) -> None:
        for layer in self.layers:
            layer.k.zero_()
            layer.v.zero_()


class _Layer:
    def __init__(self, cache: LongLiveCache, batch: int, heads: int, head_dim: int) -> None:
        self.c = cache
        size = cache.local * cache.tokens
        self.k = torch.zeros(batch, size, heads, head_dim)
        self.v = torch.zeros(batch, size, heads, head_dim)
        self.global_end = 0
        self.local_end = 0

    def attend(self, k, v, k_temporal_raw, write):
        c, t = self.c, self.c.tokens
        n = k.shape[1] // t
        start, end = c.start, c.start + n
        recompute = end <= self.global_end and start > 0
        local_end = self.local_end
        if end > self.global_end and local_end + n > c.local:  # roll
            evicted = n + local_end - c.local
            rolled = local_end - evicted - c.sink
            src = slice((c.sink + evicted) * t, (c.sink + evicted + rolled) * t)
            dst = slice(c.sink * t, (c.sink + rolled) * t)
            self.k[:, dst] = self.k[:, src].clone()
            self.v[:, dst] = self.v[:, src].clone()
            local_end = local_end + end - self.global_end - evicted
            write_from = max(local_end - n, c.sink) if recompute else local_end - n
        else:
            local_end = local_end + end - self.global_end
            write_from = max(local_end - n, c.sink) if recompute else local_end - n
            if c.sink_recache:
                write_from = local_end - n
        skip = write_from - (local_end - n)
        self.k[:, write_from * t:local_end * t] = k[:, skip * t:]
        self.v[:, write_from * t:local_end * t] = v[:, skip * t:]
        window_from = max(c.sink, local_end - (c.local - c.sink))
        k_ctx = torch.cat([self.k[:, :c.sink * t], self.k[:, window_from * t:local_end * t]], 1)
        v_ctx = torch.cat([self.v[:, :c.sink * t], self.v[:, window_from * t:local_end * t]], 1)
        if not recompute:
            self.global_end, self.local_end = end, local_end
        return k_ctx, v_ctx


def _warped(steps, shift: float) -> list[float]:
    return [1000.0 * shift * (t / 1000.0) / (1.0 + (shift - 1.0) * t / 1000.0) for t in steps]


@torch.no_grad()
def longlive_rollout(model, schedule, num_frames: int, h: int, w: int, seed: int, sink: int,
                     local: int, global_sink: bool = True, chunk: int = 3,
                     steps=(1000, 750, 500, 250), shift: float = 5.0) -> torch.Tensor:
    """Latents ``[B, 16, num_frames, h, w]`` of LongLive's interactive rollout of ``schedule``
    (``[(start_frame, embeddings), ...]``), context timestep 0, the pack's random-number order."""
    batch = schedule[0][1].shape[0]
    tokens = (h // model.patch_size[1]) * (w // model.patch_size[2])
    cache = LongLiveCache(model.num_layers, batch, tokens, model.heads, model.head_dim, sink, local)
    gen = torch.Generator().manual_seed(seed)
    times = _warped(steps, shift)
    out = torch.zeros(batch, 16, num_frames, h, w)
    prompt, text = None, None
    for start in range(0, num_frames, chunk):
        n = min(chunk, num_frames - start)
        wanted = max(i for i, (s, _) in enumerate(schedule) if s <= start)
        if wanted != prompt:
            text = model.encode_text(schedule[wanted][1])
            if prompt is not None:
                if not global_sink:
                    cache.zero()
                first = start - min(local, start)
                cache.start, cache.sink_recache = first, not global_sink
                model.forward_chunk(out[:, :, first:start], 0.0, text, cache,
                                    [float(f) for f in range(first, start)], write=True)
            prompt = wanted
        cache.start, cache.sink_recache = start, False
        positions = [float(f) for f in range(start, start + n)]
        x = torch.randn(batch, 16, n, h, w, generator=gen)
        x0 = x
        for j, t in enumerate(times):
            v = model.forward_chunk(x, t, text, cache, positions, write=False)
            x0 = x - t / 1000.0 * v
            if j + 1 < len(times):
                s = times[j + 1] / 1000.0
                x = (1 - s) * x0 + s * torch.randn(batch, 16, n, h, w, generator=gen)
        model.forward_chunk(x0, 0.0, text, cache, positions, write=True)
        out[:, :, start:start + n] = x0
    return out
