"""Peak memory of decoding a long latent video: one ``vae.decode`` vs the streaming decoder.

Each case runs in a fresh subprocess and reports its peak resident memory (ru_maxrss), so the
numbers do not leak into each other.  A reduced-width Wan VAE (random weights, real layer
structure and temporal causality) keeps this CPU-sized; the pixel side scales the same way for
the real one.  Prints the machine, then per case the peak RSS above the baseline (imports + VAE weights) and
the full/streaming ratio.  Times are wall clock and only comparable on an idle machine.

    python bench/bench_streaming_decode.py [--size 256] [--frames 24 96]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

CASE = r"""
import json, resource, sys, time, torch
from diffusers import AutoencoderKLWan
from fademem_core.rollout.video import Mp4Writer, StreamingVAEDecoder
mode, frames, size, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
torch.manual_seed(0)
vae = AutoencoderKLWan(base_dim=16, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                       temperal_downsample=[False, True, True]).eval()
h = size // 8
g = torch.Generator().manual_seed(1)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
with torch.no_grad(), Mp4Writer(out, fps=16) as mp4:
    if mode == "full":
        z = torch.randn(1, 16, frames, h, h, generator=g)
        mp4.write(vae.decode(z).sample[0])
    else:
        stream = StreamingVAEDecoder(vae)
        for _ in range(0, frames, 3):  # chunks arrive one by one, as from the sampler
            mp4.write(stream.decode(torch.randn(1, 16, 3, h, h, generator=g))[0])
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mib": peak / 1024, "base_mib": base / 1024,
                  "seconds": time.perf_counter() - t0, "frames": mp4.frames_written}))
"""


def run_case(mode: str, frames: int, size: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        res = subprocess.run([sys.executable, "-c", CASE, mode, str(frames), str(size),
                              os.path.join(d, "v.mp4")], capture_output=True, text=True, env=env,
                             check=True)
        return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=256, help="video height = width in pixels")
    ap.add_argument("--frames", type=int, nargs="+", default=[24, 96], help="latent frames")
    args = ap.parse_args()
    import torch

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"reduced Wan VAE (base_dim 16), {args.size}x{args.size}, chunks of 3 latent frames")
    print("peak RSS above the process's RSS once the VAE is built (imports + weights)")
    print(f"{'latent':>6} {'video':>6}  {'full MiB':>9} {'stream MiB':>10} {'ratio':>6}  "
          f"{'full s':>7} {'stream s':>8}")
    for n in args.frames:
        full = run_case("full", n, args.size)
        stream = run_case("stream", n, args.size)
        assert full["frames"] == stream["frames"]
        f = full["peak_mib"] - full["base_mib"]
        s = stream["peak_mib"] - stream["base_mib"]
        print(f"{n:>6} {full['frames']:>6}  {f:>9.0f} {s:>10.0f} {f / max(s, 1):>6.1f}  "
              f"{full['seconds']:>7.1f} {stream['seconds']:>8.1f}")


if __name__ == "__main__":
    main()
