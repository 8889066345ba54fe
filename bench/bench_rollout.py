"""Per-chunk time of a long rollout under FullCache, SinkWindow and FadeMem.

Run:  python bench/bench_rollout.py [--frames 240] [--height 128] [--width 128] [--layers 2]
      python bench/bench_rollout.py --real   # Wan2.1-1.3B shapes, random weights (GPU)

A CPU-sized Wan with the real head shape (head_dim 128; ``--heads`` heads, ``--layers`` layers)
generates ``--frames`` latent frames in chunks of 3 (5 forwards per chunk).  The chunk time is
the wall time between the last-step callbacks of consecutive chunks.  Printed:

* late/early: median chunk time over the last 10 chunks / chunks 5-14, pooled over
  ``--repeats`` interleaved runs (bounded policies should
  stay flat: goal <= 1.10; the full cache grows with the history);
* FadeMem / SinkWindow at the same visible context (FadeMem(budget=12) and
  SinkWindow(sink=3, window=12) both show 15 frames to a chunk; goal <= 1.05);
* with ``--real`` on CUDA: frames per second and peak memory at 480x832.

Ratios come from medians of single runs; on CPU with one thread the clock is the process's CPU
time (robust to a busy shared machine), on CUDA the synchronised wall clock.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from fademem_core import FadeMem, FullCache, SinkWindow, generate, tiny_model  # noqa: E402
from fademem_core.model.loading import build_transformer  # noqa: E402
from fademem_core.model.causal_wan import CausalWan  # noqa: E402

REAL_1_3B = dict(num_layers=30, num_attention_heads=12, attention_head_dim=128, ffn_dim=8960,
                 text_dim=4096, freq_dim=256)


def machine() -> str:
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
            f"(torch threads {torch.get_num_threads()}), torch {torch.__version__}, {dev}")


def chunk_times(model, text, policy, frames, height, width, sync, clock) -> list[float]:
    stamps: list[float] = []

    def cb(info):
        if info.step == info.num_steps - 1:
            sync()
            stamps.append(clock())

    sync()
    t0 = clock()
    generate(model, text, policy, frames, height, width, seed=0, callback=cb)
    sync()
    # the clean pass of chunk k runs after its last-step callback: include it in chunk k+1's
    # interval; the final interval adds the last clean pass
    end = clock()
    edges = [t0] + stamps[:-1] + [end]
    return [b - a for a, b in zip(edges, edges[1:])]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=240)
    ap.add_argument("--height", type=int, default=128)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--heads", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--real", action="store_true", help="Wan2.1-1.3B shapes at 480x832 (needs a big GPU)")
    ap.add_argument("--full", action="store_true", help="with --real, also run FullCache (needs the memory)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    if args.real:
        dev = "cuda"
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            tr = build_transformer(REAL_1_3B, device=dev)
        model = CausalWan(tr).to(dtype=torch.bfloat16)
        height, width, text_len = 480, 832, 512
    else:
        model = tiny_model(seed=0, layers=args.layers, heads=args.heads, head_dim=128,
                           ffn_dim=4 * 128 * args.heads, text_dim=64, freq_dim=64)
        height, width, text_len = args.height, args.width, 16
    cuda = model.device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    # on a shared CPU box wall time measures the neighbours: time this process's CPU instead
    # (one torch thread), on CUDA the synchronised wall clock
    clock = time.perf_counter if cuda or args.threads > 1 else time.process_time
    text = torch.randn(1, text_len, model.text_dim)
    tokens = model.tokens_per_frame(height, width)
    print(f"machine: {machine()}; clock: {clock.__name__}")
    print(f"model: {model}, {tokens} tokens/frame at {height}x{width}, {args.frames} latent frames "
          f"({-(-args.frames // 3)} chunks of 3)")

    policies = {"FullCache": FullCache(), "SinkWindow(3+12)": SinkWindow(sink=3, window=12),
                "FadeMem(12)": FadeMem(budget=12)}
    if args.real and not args.full:
        del policies["FullCache"]  # 240 frames of 1.3B K/V is ~76 GiB: more than one GPU holds
    runs: dict[str, list[list[float]]] = {name: [] for name in policies}
    totals: dict[str, list[float]] = {name: [] for name in policies}
    peaks: dict[str, float] = {}
    for _ in range(args.repeats):  # interleaved, so a busy spell on the machine hits every policy
        for name, policy in policies.items():
            if cuda:
                torch.cuda.reset_peak_memory_stats()
            t0 = clock()
            runs[name].append(chunk_times(model, text, policy, args.frames, height, width, sync, clock))
            totals[name].append(clock() - t0)
            if cuda:
                peaks[name] = torch.cuda.max_memory_allocated() / 2**30

    def med(name: str, lo: int, hi: int | None) -> float:
        return statistics.median(t for run in runs[name] for t in run[lo:hi])

    for name in policies:
        early, late = med(name, 5, 15), med(name, -10, None)
        total = statistics.median(totals[name])
        extra = ""
        if cuda:
            extra = f", {args.frames * 4 / total:.1f} video frames/s, peak {peaks[name]:.1f} GiB"
        print(f"{name:18s} early {early * 1e3:8.2f} ms  late {late * 1e3:8.2f} ms  late/early {late / early:5.2f}"
              f"  rollout {total:6.1f} s{extra}")
    # steady state: both memories are full from chunk 5 on
    ratio = med("FadeMem(12)", 5, None) / med("SinkWindow(3+12)", 5, None)
    print(f"FadeMem / SinkWindow chunk time at 15 visible frames (chunks 5+, {args.repeats} runs each): {ratio:.3f}")


if __name__ == "__main__":
    main()
