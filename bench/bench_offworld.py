"""Which part of the tiny world's picture leaves the world in a long rollout, and when?  (CPU)

    python bench/bench_offworld.py [weights.safetensors ...]   # default: the shipped base and FT

For 8 videos of the demo's prompt, 240 latent frames under FadeMem(12, 0.3) with the sampler
the weights record, once from the prompt alone (the demo) and once primed with one true chunk
of the scene (the first chunk taken out of the question): the probes' off-world residual per
part of the picture (:mod:`fademem_core.tinyworld.offworld`), the drifting wave's amplitude
(1 on renders) and the background's drift speed, per 60-frame bin, averaged over the videos.
Reads the world's probes only; no policy is compared.
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
from fademem_core.cli.demo import DEMO_PROMPT  # noqa: E402
from fademem_core.memory.policies import FadeMem  # noqa: E402
from fademem_core.model.recorded import embedded_weights  # noqa: E402
from fademem_core.rollout.sampler import generate  # noqa: E402
from fademem_core.rollout.timesteps import sampler_options  # noqa: E402
from fademem_core.tinyworld import offworld, world  # noqa: E402
from fademem_core.tinyworld.scores import binned  # noqa: E402
from fademem_core.tinyworld.spec import CHUNK  # noqa: E402

VIDEOS, FRAMES, BIN = 8, 240, 60


def rollouts(model, primed: bool) -> torch.Tensor:
    """``[VIDEOS, 16, FRAMES, 8, 8]``: the demo prompt's scenes 0..7, seed 0, FadeMem()."""
    scenes = [world.sample_scene(s, **DEMO_PROMPT) for s in range(VIDEOS)]
    text = torch.cat([world.scene_prompt(s, model.text_dim) for s in scenes])
    kw = sampler_options(model.sampler_record)
    if not primed:
        return generate(model, text, FadeMem(), FRAMES, 64, 64, seed=0, **kw)
    prefix = torch.stack([world.render(s, 0, CHUNK) for s in scenes])
    return generate(model, text, FadeMem(), FRAMES - CHUNK, 64, 64, seed=0, prefix=prefix,
                    include_prefix=True, **kw)


def bins(per_video: list[np.ndarray], fmt: str) -> str:
    """Mean over the videos and each BIN frames of ``per_video`` (one ``[FRAMES]`` array each)."""
    return " ".join(format(v, fmt) for v in binned(np.stack(per_video), BIN))


def report(path: Path) -> list[str]:
    model = load_model(path, device="cpu", dtype=torch.float32)
    t0 = time.process_time()
    lines = [f"{path.name} (frames {' / '.join(f'{a}-{a + BIN - 1}' for a in range(0, FRAMES, BIN))}):"]
    for primed in (False, True):
        reads = [offworld.off_world(z) for z in rollouts(model, primed)]
        lines.append(f"  {'primed with one true chunk' if primed else 'from the prompt (the demo)'}:")
        for name in offworld.PARTS:
            lines.append(f"    {name:<16}{bins([o.parts[name] for o in reads], '.3f')}")
        lines.append(f"    {'wave amplitude':<16}{bins([o.amplitude for o in reads], '.2f')}")
        speeds = [o.drift_speed for o in reads]
        lines.append(f"    drift speed, median over videos {np.nanmedian(speeds):.3f} px/frame "
                     f"(read in {int(np.isfinite(speeds).sum())} of {VIDEOS}; the world draws 0.03-0.06)")
    lines.append(f"  ({time.process_time() - t0:.0f} s CPU)")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights", nargs="*", type=Path, help="tiny-world weights (default: the shipped base and FT)")
    args = p.parse_args()
    torch.set_num_threads(2)
    for path in args.weights or [embedded_weights("tiny_world"), embedded_weights("tiny_world_ft")]:
        print("\n".join(report(path)), flush=True)


if __name__ == "__main__":
    main()
