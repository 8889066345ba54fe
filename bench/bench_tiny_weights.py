"""How well does a tiny-world weights file render its world?  One-step precision and rollout drift (CPU).

    python bench/bench_tiny_weights.py                      # both shipped files
    python bench/bench_tiny_weights.py my.safetensors ...   # candidates from tinyworld.train

The instrument used to choose between training recipes (never between cache policies):

* **one step** (:func:`~fademem_core.tinyworld.quality.one_step_errors`): every chunk of 12
  two-sprite videos sampled from the true memory (60 frames): sprite centre error, detail
  error, drift error, off-world residual.  What the model can copy from its memory.
* **continuation**: 32 two-sprite videos primed with 48 / 96 / 150 true frames, FullCache: the
  mean visibility the model gives, over the next chunk, the sprites that the world keeps fully
  in view (1.0 is the world; a model that drops what its memory shows reads near 0).  The
  number that showed session 6's first-chunk stages had unlearned it (README).
* **lookup** (:mod:`~fademem_core.tinyworld.lookup`): 64 videos, each with a sprite forced to
  return at frame 150, the true past in the memory: does the estimate from pure noise put the
  returning sprite's own codebook detail under it (chance 0.25)?  FullCache against
  SlidingWindow(15), and their paired difference with its 95 % bootstrap half-width.  Whether
  the model reads the far past at all, with every video a return (the benchmark's rollouts
  draw about one return per video).
* **rollout**: 8 videos of the demo's prompt primed with their first true chunk, continued to
  120 frames with FadeMem(12, 0.3): the demo's render check (residual, class, sprite speed,
  contrast) and the residual per 24-frame bin.  How fast its own errors grow.

The sampler is the one the weights record (their JSON), as in the demo and the nodes.
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

from fademem_core import FadeMem, FullCache, SlidingWindow, generate, load_model, sampler_options  # noqa: E402
from fademem_core.cli.demo import DEMO_PROMPT  # noqa: E402
from fademem_core.tinyworld import WEIGHTS, WEIGHTS_FT, lookup, quality, world  # noqa: E402
from fademem_core.tinyworld.probes import read_frames  # noqa: E402
from fademem_core.tinyworld.rollout import primed_rollout  # noqa: E402
from bench_consistency import BUDGET, CHUNK, CONTROL_FULL, CONTROL_NONE, ci, paired_gap  # noqa: E402

BIN = 24
PRIMES = (48, 96, 150)


def continuation(model, kw: dict, videos: int = 32) -> list[float]:
    """Per prefix length in ``PRIMES``: the mean visibility the model draws, over the chunk
    after the prefix (FullCache), for the sprites the world keeps fully in view from the
    prefix's last frame through that chunk."""
    scenes = [world.sample_scene(700 + i, num_sprites=2) for i in range(videos)]
    text = torch.cat([world.scene_prompt(s, model.text_dim) for s in scenes])
    truth = torch.stack([world.render(s, 0, max(PRIMES) + 3) for s in scenes])
    seen = np.stack([read_frames(v).visibility for v in truth]) >= quality.FULL  # [N, F, S]
    out = []
    for p in PRIMES:
        z = primed_rollout(model, text, FullCache(), truth[:, :, :p], p + 3, steps=len(kw["steps"]),
                           shift=kw["shift"], sampler=kw["sampler"])
        drawn = np.stack([read_frames(v).visibility for v in z[:, :, p:p + 3]])
        keep = seen[:, p - 1:p, :] & seen[:, p:p + 3, :]
        out.append(float(drawn[keep].mean()) if keep.any() else float("nan"))
    return out


def lookups(model) -> dict[str, np.ndarray]:
    """:func:`~fademem_core.tinyworld.lookup.lookup` hits on 64 forced returns at frame 150,
    FullCache against SlidingWindow(15)."""
    return lookup.lookup(model, {CONTROL_FULL: FullCache(), CONTROL_NONE: SlidingWindow(window=BUDGET + CHUNK)})


def report(path: Path, rollout_frames: int = 120) -> list[str]:
    """The printable lines for one weights file."""
    model = load_model(path, device="cpu", dtype=torch.float32)
    kw = sampler_options(model.sampler_record, "auto" if model.sampler_record else "euler", 12)
    steps = len(kw["steps"])
    t0 = time.process_time()
    scenes = [world.sample_scene(500 + i, num_sprites=2) for i in range(12)]
    one = quality.one_step_errors(*quality.teacher_forced_samples(model, scenes, 60, steps, kw["shift"],
                                                                sampler=kw["sampler"]))
    demo = [world.sample_scene(s, **DEMO_PROMPT) for s in range(32)]
    text = torch.cat([world.scene_prompt(s, model.text_dim) for s in demo[:8]])
    first = torch.stack([world.render(s, 0, 3) for s in demo[:8]])
    video = generate(model, text, FadeMem(budget=12, beta=0.3), rollout_frames - 3, 64, 64, seed=1,
                     prefix=first, include_prefix=True, **kw)
    teacher = quality.teacher_forced_residual(model, demo[:8], 30, steps, kw["shift"],  # the demo's bar
                                              sampler=kw["sampler"])
    check = quality.check_rendering(video, demo[:8], teacher, world=demo)
    cont = continuation(model, kw)
    hits = lookups(model)
    gap = paired_gap(hits[CONTROL_FULL], hits[CONTROL_NONE])
    resid = np.stack([read_frames(v).residual for v in video]).mean(0)
    bins = resid[: len(resid) // BIN * BIN].reshape(-1, BIN).mean(1)
    return [
        f"{path.name}: sampler {kw['sampler']} {steps} steps, shift {kw['shift']:g}; "
        f"{time.process_time() - t0:.0f} s CPU",
        f"  one step from the true memory: sprite centre error {one.sprite_dx:.3f} px (median, "
        f"{one.sprite_frames} frames), detail error {one.detail:.3f}, drift error {one.shift:.3f} px, "
        f"residual {one.residual:.4f}",
        "  continuation (FullCache, sprites the world keeps in view): visibility drawn after "
        + ", ".join(f"{p} true frames {c:.2f}" for p, c in zip(PRIMES, cont)),
        f"  lookup (64 returns forced at frame 150, estimate from noise): own detail drawn under "
        f"FullCache {ci(hits[CONTROL_FULL])['mean']:.2f}, SlidingWindow(15) "
        f"{ci(hits[CONTROL_NONE])['mean']:.2f} (chance 0.25); paired gap {gap['mean']:.2f} ± {gap['half']:.2f}",
        f"  rollout (first chunk true, FadeMem(12, 0.3), {rollout_frames} frames): residual per "
        f"{BIN} frames " + " ".join(f"{b:.3f}" for b in bins),
        *(f"    {line}" for line in check.lines()),
    ]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights", nargs="*", type=Path, help="weights files (default: the shipped two)")
    ap.add_argument("--frames", type=int, default=120, help="rollout length in latent frames (>= 27)")
    args = ap.parse_args(argv)
    paths = args.weights or [WEIGHTS, WEIGHTS_FT]
    for p in paths:
        if not p.is_file():
            ap.error(f"weights file not found: {str(p)!r}")
    if args.frames < 27 or args.frames % 3:
        ap.error(f"--frames must be a multiple of 3 and >= 27, got {args.frames}")
    torch.set_num_threads(1)
    for p in paths:
        print("\n".join(report(p, args.frames)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
