"""Cost of the KV-cache operations per chunk vs the chunk's attention, at Wan 1.3B head shapes.

Run:  python bench/bench_cache.py [--layers 4] [--tokens 1560] [--threads 1]

Per chunk of 3 latent frames the sampler makes 5 forwards (4 denoising steps + the clean pass
that writes the memory), each calling ``attend`` in every layer, then ``commit``.  Everything is
linear in the number of layers, so the bench runs ``--layers`` layers (RAM on a shared box) and
scales per-layer figures to the model's 30.  Attention is timed on one head of one layer and
scaled by heads x layers x 5 forwards (heads are independent).  Figures compared:

* cache ops: begin_chunk + 5 x layers x attend (placing the chunk's K/V in the buffer) + commit
* commit alone (3 consolidations + re-encoding), vs the *minimal work*: three in-place
  span-weighted merges of K and V plus re-rotating the temporal channels of the merged entries
* attention: scaled_dot_product_attention of the chunk over its 15-frame context
* naive: per forward, re-rotate the whole memory in float64 and concatenate the context (what a
  straightforward implementation does), timed for one layer and forward, scaled.

Prints ratios from a single run; the machine is shared and noisy.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fademem_core.memory.policies import FadeMem, KVGeometry, SinkWindow  # noqa: E402
from fademem_core.rope import temporal_cos_sin  # noqa: E402

MODEL_LAYERS, HEADS, HEAD_DIM, CHUNK, PASSES = 30, 12, 128, 3, 5


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def chunk_tensors(n: int):
    s = CHUNK * n
    k = torch.randn(1, s, HEADS, HEAD_DIM)
    return k, torch.randn(1, s, HEADS, HEAD_DIM), k[..., :44].clone()


def run_chunk(cache, start: int, k, v, kt) -> None:
    cache.begin_chunk(start, CHUNK)
    for p in range(PASSES):
        for layer in cache.layers:
            layer.attend(k, v, kt, write=p == PASSES - 1)
    cache.commit()


def time_policy(policy, geo, k, v, kt, chunks: int) -> tuple[float, float]:
    """Steady-state seconds per chunk: (all cache ops, commit only), for geo's layers."""
    cache = policy.make_cache(geo, CHUNK)
    start = 0
    while len(cache.entries()) < policy.history_frames(CHUNK):  # fill the memory first
        run_chunk(cache, start, k, v, kt)
        start += CHUNK
    run_chunk(cache, start, k, v, kt)  # one more: merges/evictions now happen
    start += CHUNK
    totals, commits = [], []
    for _ in range(chunks):
        t0 = time.perf_counter()
        cache.begin_chunk(start, CHUNK)
        for p in range(PASSES):
            for layer in cache.layers:
                layer.attend(k, v, kt, write=p == PASSES - 1)
        t1 = time.perf_counter()
        cache.commit()
        t2 = time.perf_counter()
        totals.append(t2 - t0)
        commits.append(t2 - t1)
        start += CHUNK
    cache.close()
    return min(totals), min(commits)


def minimal_work(layers: int, n: int, repeat: int) -> float:
    """Three in-place span-weighted merges of K and V + re-rotating the merged temporal channels."""
    k = torch.randn(layers, 1, 15, n, HEADS, HEAD_DIM)
    v = torch.randn_like(k)
    cos, sin = temporal_cos_sin([1.0, 2.0, 3.0], HEAD_DIM)
    tmp = torch.empty(layers, 1, n, HEADS, 22)

    def work():
        for j, (a, b) in enumerate(((2, 3), (5, 6), (8, 9))):
            k[:, :, a].lerp_(k[:, :, b], 0.5)
            v[:, :, a].lerp_(v[:, :, b], 0.5)
            x1, x2 = k[:, :, a, ..., 0:44:2], k[:, :, a, ..., 1:44:2]
            torch.mul(x1, sin[j], out=tmp)
            x1.mul_(cos[j]).addcmul_(x2, sin[j], value=-1.0)
            x2.mul_(cos[j]).add_(tmp)

    t = best_of(work, repeat)
    del k, v
    return t


def attention_one_head(n: int, visible: int, repeat: int) -> float:
    q = torch.randn(1, 1, CHUNK * n, HEAD_DIM)
    k = torch.randn(1, 1, visible * n, HEAD_DIM)
    v = torch.randn_like(k)
    return best_of(lambda: F.scaled_dot_product_attention(q, k, v), repeat)


def naive_one_forward(n: int, repeat: int) -> float:
    """One layer, one forward: re-rotate the 12-entry memory in float64, then concatenate."""
    mem_k = torch.randn(1, 12 * n, HEADS, HEAD_DIM)
    mem_v = torch.randn_like(mem_k)
    k, v, _ = chunk_tensors(n)
    pos = torch.arange(12, dtype=torch.float64).repeat_interleave(n)
    inv = 1.0 / (10000.0 ** (torch.arange(0, 44, 2, dtype=torch.float64) / 44))

    def work():
        ang = pos[:, None] * inv[None, :]
        c, s = ang.cos()[None, :, None, :], ang.sin()[None, :, None, :]
        x = mem_k[..., :44].double()
        x1, x2 = x[..., 0::2], x[..., 1::2]
        rot = torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), -1).flatten(-2).float()
        full = torch.cat([rot, mem_k[..., 44:]], -1)
        return torch.cat([full, k], 1), torch.cat([mem_v, v], 1)

    return best_of(work, repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4, help="layers actually allocated")
    parser.add_argument("--tokens", type=int, default=1560, help="tokens per latent frame")
    parser.add_argument("--chunks", type=int, default=3, help="timed steady-state chunks")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (1: on a shared box, idle-spinning threads distort)")
    args = parser.parse_args()
    if args.layers < 1 or args.tokens < 1 or args.chunks < 1:
        raise ValueError("--layers, --tokens and --chunks must be >= 1")
    torch.set_num_threads(args.threads)
    n, layers = args.tokens, args.layers
    scale = MODEL_LAYERS / layers
    geo = KVGeometry(num_layers=layers, batch=1, tokens_per_frame=n, num_heads=HEADS,
                     head_dim=HEAD_DIM, dtype=torch.float32)
    torch.manual_seed(0)
    k, v, kt = chunk_tensors(n)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"shapes: {HEADS} heads x {HEAD_DIM}, N={n} tokens/frame, chunk {CHUNK}, "
          f"{PASSES} forwards/chunk, fp32 CPU; ran {layers} layers, scaled to {MODEL_LAYERS}")

    results = {}
    for name, policy in [("FadeMem(12) absolute", FadeMem()),
                         ("FadeMem(12) packed", FadeMem(positions="packed")),
                         ("SinkWindow(3,9)", SinkWindow())]:
        total, commit = time_policy(policy, geo, k, v, kt, args.chunks)
        results[name] = (total * scale, commit * scale)
    minimal = minimal_work(layers, n, args.chunks) * scale
    attn = attention_one_head(n, 15, 2) * HEADS * MODEL_LAYERS * PASSES
    naive = naive_one_forward(n, 2) * MODEL_LAYERS * PASSES

    print(f"\nper chunk, {MODEL_LAYERS} layers (seconds):")
    print(f"  attention of the chunk (15-frame context): {attn:8.2f}")
    print(f"  minimal consolidation work:                {minimal:8.3f}")
    print(f"  naive re-rotate + concat every forward:    {naive:8.2f}")
    for name, (total, commit) in results.items():
        print(f"  {name:22s} all cache ops {total:7.3f}  commit {commit:7.3f}  "
              f"| ops/attention {100 * total / attn:5.2f}%  commit/minimal "
              f"{commit / minimal:5.2f}x  naive/ops {naive / total:6.1f}x")


if __name__ == "__main__":
    main()
