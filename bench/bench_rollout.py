"""Per-chunk time and KV memory of a long rollout under every registered cache policy.

Run:  python bench/bench_rollout.py [--frames 240] [--height 128] [--width 128] [--layers 2]
      python bench/bench_rollout.py --policies deep_forcing,memflow   # some policies only
      python bench/bench_rollout.py --real   # Wan2.1-1.3B shapes, random weights (GPU)

A CPU-sized Wan with the real head shape (head_dim 128; ``--heads`` heads, ``--layers`` layers)
generates ``--frames`` latent frames in chunks of 3 (5 forwards per chunk).  The chunk time is
the wall time between the last-step callbacks of consecutive chunks.  Printed:

* late/early: median chunk time over the last 10 chunks / chunks 5-14, pooled over
  ``--repeats`` interleaved runs (bounded policies should
  stay flat: goal <= 1.10; the full cache grows with the history);
* every policy / SinkWindow at the same visible context (e.g. FadeMem(budget=12) and
  SinkWindow(sink=3, window=12) both show 15 frames to a chunk): steady-state chunk time,
  best (smallest median over chunks 5+) of ``--repeats`` interleaved runs; goal <= 1.10 for the
  peer memories, <= 1.05 for FadeMem;
* KV memory of every policy at 480x832 in bf16 on Wan2.1-1.3B shapes, from ``memory_bytes``
  (exact, what the cache allocates);
* with ``--real`` on CUDA: frames per second and peak memory at 480x832.

On CPU with one thread the clock is the process's CPU time (robust to a busy shared machine),
on CUDA the synchronised wall clock.
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

from fademem_core import KVGeometry, SinkWindow, generate, policy_from_name, tiny_model  # noqa: E402
from fademem_core.memory.policies import POLICIES, PRESETS  # noqa: E402
from fademem_core.model.loading import build_transformer  # noqa: E402
from fademem_core.model.causal_wan import CausalWan  # noqa: E402

REAL_1_3B = dict(num_layers=30, num_attention_heads=12, attention_head_dim=128, ffn_dim=8960,
                 text_dim=4096, freq_dim=256)
# Wan2.1-1.3B at 480x832 in bf16: 30 layers, 12 heads of 128, 30 x 52 = 1560 tokens per frame
GEOMETRY_480P = KVGeometry(num_layers=30, batch=1, tokens_per_frame=1560, num_heads=12,
                           head_dim=128, dtype=torch.bfloat16, grid=(30, 52))


def policies_under_test(chunk: int, names: list[str] | None = None) -> dict[str, tuple[object, object]]:
    """name -> (policy at its defaults, SinkWindow showing a chunk as many frames); every
    registered policy and preset, or only ``names``."""
    out = {}
    for name in names or sorted(POLICIES) + sorted(PRESETS):
        policy = policy_from_name(name)
        visible = policy.visible_frames(chunk)
        if visible is None:
            out[name] = (policy, None)
            continue
        sink = min(3, visible - chunk)
        out[name] = (policy, SinkWindow(sink=sink, window=visible - sink))
    return out


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
    ap.add_argument("--policies", default=None,
                    help="comma-separated policy names (default: every registered one)")
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

    pairs = policies_under_test(3, args.policies.split(",") if args.policies else None)
    if args.real and not args.full:
        pairs.pop("full", None)  # 240 frames of 1.3B K/V is ~76 GiB: more than one GPU holds
    policies: dict[str, object] = {}
    for name, (policy, same) in pairs.items():
        policies[name] = policy
        if same is not None:
            policies[f"sink_window({same.sink}+{same.window})"] = same
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

    def best(name: str) -> float:  # steady state (every memory is full from chunk 5 on)
        return min(statistics.median(run[5:]) for run in runs[name])

    for name in policies:
        early, late = med(name, 5, 15), med(name, -10, None)
        total = statistics.median(totals[name])
        extra = ""
        if cuda:
            extra = f", {args.frames * 4 / total:.1f} video frames/s, peak {peaks[name]:.1f} GiB"
        print(f"{name:18s} early {early * 1e3:8.2f} ms  late {late * 1e3:8.2f} ms  late/early {late / early:5.2f}"
              f"  rollout {total:6.1f} s{extra}")
    print(f"\nsteady-state chunk time / SinkWindow's at the same visible context "
          f"(best of {args.repeats} interleaved runs, chunks 5+), and KV memory at 480x832 bf16 "
          f"(Wan2.1-1.3B shapes, from memory_bytes):")
    for name, (policy, same) in pairs.items():
        kv = policy.memory_bytes(GEOMETRY_480P, 3, max_frames=args.frames)
        visible = policy.visible_frames(3)
        ratio = "" if same is None else \
            f"{best(name) / best(f'sink_window({same.sink}+{same.window})'):6.3f}"
        print(f"  {name:18s} visible {str(visible or 'all'):>4s}  ratio {ratio:>6s}  "
              f"KV {kv / 2**30:6.2f} GiB")


if __name__ == "__main__":
    main()
