"""Peak memory and time to the first playable file: FadeMem Sampler + Streaming Save vs
FadeMem Sampler -> VAE Decode (all latents at once) -> one mp4, the graph users build today.

Both run the pack's nodes in plain Python (no ComfyUI; the VAE Decode step is diffusers'
one-shot ``vae.decode``, what core VAE Decode does) on the tiny model, for 240 latent frames
(a 60 s run's length) with a reduced-width Wan VAE (random weights, real layer structure),
each case in a fresh subprocess so peak RSS (ru_maxrss) does not leak between them.  Times are
process CPU time.  The streaming case writes 10 s files, so its first file is playable after
160 frames; the one-shot graph has nothing playable before it ends.

    python bench/bench_streaming_save.py [--size 128] [--frames 240]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile

CASE = r"""
import json, os, resource, sys, time, torch
sys.path.insert(0, os.environ["FADEMEM_ROOT"])
from diffusers import AutoencoderKLWan
from tests.support.pack import load_pack
from fademem_core.rollout.video import Mp4Writer
mode, frames, size, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
os.environ["FADEMEM_OUTPUT_DIR"] = out
nodes = load_pack().NODE_CLASS_MAPPINGS
from fademem_core.model.loading import tiny_model
torch.manual_seed(0)
vae = AutoencoderKLWan(base_dim=16, z_dim=16, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                       temperal_downsample=[False, True, True]).eval()
model = tiny_model(0)
cond = [[torch.randn(1, 8, 32, generator=torch.Generator().manual_seed(1)), {}]]
cache = nodes["FadeMemCache"]().build(12, 0.3, True, "weighted_average", "absolute")[0]
length = 1 + 4 * (frames - 1)
first = []
real_close = Mp4Writer.close
def close(self, to=None):  # the moment a file becomes playable
    first.append(time.process_time() - t0)
    return real_close(self, to)
Mp4Writer.close = close
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.process_time()
with torch.no_grad():
    if mode == "oneshot":
        latent = nodes["FadeMemSampler"]().sample(model, cond, cache, size, size, length, 3, 4, 5.0, 0, 0.0)[0]
        pixels = vae.decode(latent["samples"]).sample[0]
        with Mp4Writer(os.path.join(out, "v.mp4")) as mp4:
            mp4.write(pixels)
    else:
        nodes["FadeMemStreamingSave"]().save(model, cond, cache, size, size, length, 3, 4, 5.0, 0, 0.0,
                                             False, vae, "v", 10)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"peak_mib": peak / 1024, "base_mib": base / 1024, "first_s": first[0],
                  "cpu_s": time.process_time() - t0, "files": len(first)}))
"""


def run_case(mode: str, frames: int, size: int) -> dict:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, FADEMEM_ROOT=root)
        res = subprocess.run([sys.executable, "-c", CASE, mode, str(frames), str(size), d],
                             capture_output=True, text=True, env=env, check=True)
        return json.loads(res.stdout.strip().splitlines()[-1])


def arguments(doc: str) -> argparse.Namespace:
    """--size, --frames, --repeat (this bench's and bench_comfy_streaming_save.py's)."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=128, help="video height = width in pixels")
    ap.add_argument("--frames", type=int, default=240, help="latent frames")
    ap.add_argument("--repeat", type=int, default=2, help="runs per case (best is reported)")
    return ap.parse_args()


def main() -> None:
    args = arguments(__doc__)
    import torch

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"tiny model + reduced Wan VAE (base_dim 16), {args.frames} latent frames at "
          f"{args.size}x{args.size}; peak RSS above the process's RSS before sampling")
    results = {m: [] for m in ("oneshot", "stream")}
    for _ in range(args.repeat):  # interleaved
        for mode in results:
            results[mode].append(run_case(mode, args.frames, args.size))
    for mode, label in (("oneshot", "Sampler -> VAE Decode -> mp4"), ("stream", "Streaming Save")):
        peak = min(r["peak_mib"] - r["base_mib"] for r in results[mode])
        first = min(r["first_s"] for r in results[mode])
        cpu = min(r["cpu_s"] for r in results[mode])
        print(f"{label:>30}: peak {peak:7.0f} MiB, first playable file after {first:6.1f} s CPU, "
              f"total {cpu:6.1f} s CPU, {results[mode][0]['files']} file(s)")


if __name__ == "__main__":
    main()
