"""Train the tiny causal world model (seeded, reproducible, CPU).

    python -m fademem_core.tinyworld.train --out fademem_core/weights/tiny_world.safetensors --minutes 15

Teacher forcing (see :mod:`.forward`) on 21-frame clips of the procedural world, chunks of 3,
noise levels mostly from the sampler's few-step schedule (``[1000, 750, 500, 250]`` warped with
shift 5), flow-matching velocity target ``v = noise - x0``, light noise on the context frames,
an EMA of the weights is what gets saved.  ``--minutes`` times the first steps and fixes the
step count from them (recorded in the JSON next to the weights, so ``--steps N`` reproduces the
run exactly); ``--steps`` alone is fully deterministic.
"""
from __future__ import annotations

import argparse
import copy
import datetime as _dt
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..model.loading import build_transformer, save_model
from . import world
from .forward import masked_velocity, teacher_forcing_mask

# The architecture: a real diffusers WanTransformer3DModel at tiny size.
MODEL_CONFIG = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 3,
    "attention_head_dim": 32,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 32,
    "freq_dim": 32,
    "ffn_dim": 256,
    "num_layers": 4,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}
CLIP_FRAMES = 21
CHUNK = 3
SHIFT = 5.0
SAMPLER_TIMESTEPS = (1000.0, 750.0, 500.0, 250.0)
# sprite channels are few pixels: weight them up so identity is learned, not just background
CHANNEL_WEIGHT = torch.tensor([1.0] * 6 + [4.0] * 10)


def warp(sigma: torch.Tensor | float, shift: float = SHIFT) -> torch.Tensor:
    """Flow-matching timestep shift ``s*sigma / (1 + (s-1)*sigma)``."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    return shift * sigma / (1 + (shift - 1) * sigma)


def sampler_sigmas() -> torch.Tensor:
    """The few-step schedule's sigmas: ``[1.0, 0.9375, 0.8333, 0.625]``."""
    return warp(torch.tensor(SAMPLER_TIMESTEPS, dtype=torch.float64) / 1000.0)


def init_transformer(seed: int) -> torch.nn.Module:
    """A freshly initialised ``WanTransformer3DModel`` of the tiny config (seeded)."""
    torch.manual_seed(seed)
    return build_transformer(MODEL_CONFIG)


def make_batch(rng: np.random.Generator, batch: int, frames: int, text_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean clips ``[B, 16, F, 8, 8]`` at random times of random scenes + their prompts."""
    clips, prompts = [], []
    for _ in range(batch):
        scene = world.sample_scene(rng)
        start = int(rng.integers(0, 400))
        clips.append(world.render(scene, start, frames))
        prompts.append(world.scene_prompt(scene, text_dim))
    return torch.stack(clips), torch.cat(prompts)


def training_step_inputs(
    x0: torch.Tensor, gen: torch.Generator, chunk: int = CHUNK, context_noise: float = 0.12
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns ``(x [B,16,2F,h,w], timesteps [B,2F], target velocity of the noisy half)``."""
    b, c, f, h, w = x0.shape
    nchunks = math.ceil(f / chunk)
    # noisy half: one sigma per chunk, 75% from the sampler's schedule, else a warped uniform
    table = sampler_sigmas().float()
    pick = table[torch.randint(len(table), (b, nchunks), generator=gen)]
    cont = warp(torch.rand(b, nchunks, generator=gen, dtype=torch.float64)).float()
    sig = torch.where(torch.rand(b, nchunks, generator=gen) < 0.75, pick, cont)
    sig = sig.repeat_interleave(chunk, 1)[:, :f]
    noise = torch.randn(x0.shape, generator=gen)
    s = sig[:, None, :, None, None]
    noisy = (1 - s) * x0 + s * noise
    # clean half: most chunks get a little noise (robustness to the model's own outputs)
    csig = torch.rand(b, nchunks, generator=gen) * context_noise
    csig = torch.where(torch.rand(b, nchunks, generator=gen) < 0.3, torch.zeros_like(csig), csig)
    csig = csig.repeat_interleave(chunk, 1)[:, :f]
    cs = csig[:, None, :, None, None]
    clean = (1 - cs) * x0 + cs * torch.randn(x0.shape, generator=gen)
    x = torch.cat([clean, noisy], dim=2)
    timesteps = torch.cat([csig, sig], dim=1) * 1000.0
    return x, timesteps, noise - x0


def loss_fn(transformer: torch.nn.Module, x0: torch.Tensor, text: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Weighted flow-matching loss of one teacher-forced clip batch."""
    f = x0.shape[2]
    x, ts, target = training_step_inputs(x0, gen)
    mask = teacher_forcing_mask(f, CHUNK)
    v = masked_velocity(transformer, x, ts, text, list(range(f)) * 2, mask)[:, :, f:]
    err = (v - target) ** 2
    return (err.mean(dim=(0, 2, 3, 4)) * CHANNEL_WEIGHT).sum() / CHANNEL_WEIGHT.sum()


def lr_at(step: int, total: int, peak: float, warmup: int = 100) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, p))))


def save_weights(transformer: torch.nn.Module, out: Path, info: dict) -> None:
    """Write the safetensors (the engine's writer, config in metadata) and the JSON record,
    atomically."""
    save_model(transformer, out, metadata={"trained_on": "fademem_core.tinyworld"})
    js = out.with_suffix(".json")
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(info, fh, indent=2)
        fh.write("\n")
    os.replace(tmp, js)


def train(
    out: Path,
    steps: int | None = None,
    minutes: float | None = None,
    seed: int = 0,
    batch: int = 8,
    lr: float = 1e-3,
    log_every: int = 50,
) -> dict:
    """Run the training; returns the info dict written next to the weights."""
    if steps is None and minutes is None:
        raise ValueError("give --steps or --minutes")
    if steps is not None and steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps!r}")
    if minutes is not None and minutes <= 0:
        raise ValueError(f"minutes must be > 0, got {minutes!r}")
    tr = init_transformer(seed)
    tr.train()
    ema = copy.deepcopy(tr).requires_grad_(False)
    opt = torch.optim.AdamW(tr.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.99))
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    text_dim = MODEL_CONFIG["text_dim"]
    total = steps
    t0 = time.time()
    losses = []
    step = 0
    while total is None or step < total:
        x0, text = make_batch(rng, batch, CLIP_FRAMES, text_dim)
        # extra first chunks (no context): cheap, and the hardest case for a few-step sampler
        f0, text0 = make_batch(rng, 2 * batch, CHUNK, text_dim)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total or 10**9, lr)
        loss = loss_fn(tr, x0, text, gen) + 0.5 * loss_fn(tr, f0, text0, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(tr.parameters(), 1.0)
        opt.step()
        decay = min(0.998, (1 + step) / (10 + step))
        with torch.no_grad():
            for pe, p in zip(ema.parameters(), tr.parameters()):
                pe.lerp_(p, 1 - decay)
        losses.append(loss.item())
        step += 1
        if total is None and step == 20:  # fix the step count from the measured speed
            per_step = (time.time() - t0) / 20
            total = max(21, int(minutes * 60 / per_step))
            print(f"{per_step:.3f} s/step -> {total} steps", flush=True)
        if step % log_every == 0 or step == total:
            print(f"step {step}/{total} loss {np.mean(losses[-log_every:]):.4f} ({time.time() - t0:.0f} s)", flush=True)
    info = {
        "what": "tiny causal Wan (diffusers WanTransformer3DModel) trained on fademem_core.tinyworld",
        "world": {
            "latent": [16, 8, 8], "pixels_equivalent": [64, 64], "classes": world.NUM_CLASSES,
            "families": world.NUM_FAMILIES, "max_sprites": world.MAX_SPRITES,
            "absence_frames": [world.MIN_ABSENCE, world.MAX_ABSENCE], "prompt_length": world.PROMPT_LENGTH,
        },
        "config": MODEL_CONFIG,
        "training": {
            "clip_frames": CLIP_FRAMES, "chunk": CHUNK, "shift": SHIFT, "timesteps": list(SAMPLER_TIMESTEPS),
            "steps": step, "batch": batch, "lr": lr, "seed": seed, "ema": 0.998,
            "final_loss": float(np.mean(losses[-50:])), "seconds": round(time.time() - t0, 1),
            "threads": torch.get_num_threads(), "torch": torch.__version__,
        },
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": f"python -m fademem_core.tinyworld.train --out {out} --steps {step} --seed {seed} --batch {batch}",
        "parameters": sum(p.numel() for p in tr.parameters()),
    }
    save_weights(ema, out, info)
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output .safetensors path")
    ap.add_argument("--steps", type=int, default=None, help="exact number of steps (reproducible)")
    ap.add_argument("--minutes", type=float, default=None, help="time budget; fixes the step count after 20 steps")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1e-3)
    args = ap.parse_args(argv)
    if args.out.suffix != ".safetensors":
        ap.error(f"--out must end in .safetensors, got {str(args.out)!r}")
    info = train(args.out, args.steps, args.minutes, args.seed, args.batch, args.lr)
    print(json.dumps(info["training"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
