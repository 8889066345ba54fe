"""Can a window model (DMD's teacher) draw the world's background, or only clean its input?  (CPU)

    python bench/bench_window_teacher.py teacher.safetensors ...   # from tinyworld.train --policy window

For 64 true 12-frame windows (:mod:`fademem_core.tinyworld.denoising`):

* the clean estimate's squared error per channel group (layout 0-3, texture 4 and 5) at
  sigma 0.3 / 0.6 / 0.8, with the scenes' own prompts and with the next family named;
* 16 windows drawn from pure noise (Euler 24): the off-world residual per channel group.

The texture is a function of the layout and the family.  A model that computes it keeps the
texture's error near the layout's as the noise grows, and errs with the wrong family; one that
only denoises rises to the channel's variance (0.5) and barely notices the family.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fademem_core import load_model  # noqa: E402
from fademem_core.tinyworld import denoising, world  # noqa: E402

SIGMAS = (0.3, 0.6, 0.8)
GROUPS = (("layout 0-3", slice(0, 4)), ("texture 4", slice(4, 5)), ("texture 5", slice(5, 6)))


def _groups(per_channel: np.ndarray) -> str:
    return "  ".join(f"{name} {per_channel[sl].mean():.3f}" for name, sl in GROUPS)


def report(path: Path) -> list[str]:
    """The printable lines for one window model."""
    model = load_model(path, device="cpu", dtype=torch.float32)
    t0 = time.process_time()
    rng = np.random.default_rng(9)
    scenes = [world.sample_scene(rng) for _ in range(64)]
    clips = torch.stack([world.render(s, 30, 12) for s in scenes])
    own = torch.cat([world.scene_prompt(s, model.text_dim) for s in scenes])
    lines = [f"{path.name}:"]
    for label, text in (("own prompts", own), ("next family", denoising.other_family(scenes, model.text_dim))):
        errs = denoising.x0_errors(model.transformer, clips, text, SIGMAS)
        lines += [f"  clean-estimate error, {label}, sigma {s:g}: {_groups(e)}" for s, e in zip(SIGMAS, errs)]
    drawn = denoising.sample_windows(model.transformer, own[:16], 12, 24)
    per = np.mean([denoising.channel_residuals(z) for z in drawn], axis=0)
    lines.append(f"  drawn from noise (Euler 24), off-world residual: {_groups(per)}")
    lines.append(f"  ({time.process_time() - t0:.0f} s CPU)")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", nargs="+", type=Path, help="window-model weights (.safetensors)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    for path in args.weights:
        print("\n".join(report(path)), flush=True)


if __name__ == "__main__":
    main()
