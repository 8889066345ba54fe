"""Train the tiny causal world model through the inference engine, the memory in the loop (CPU).

    python -m fademem_core.tinyworld.train --out fademem_core/weights/tiny_world.safetensors \\
        --episodes 60 --threads 2                                         # base (full memory)
    python -m fademem_core.tinyworld.train --out fademem_core/weights/tiny_world_ft.safetensors \\
        --init fademem_core/weights/tiny_world.safetensors --policy fademem --episodes 20 --lr 3e-4

One *episode* walks a batch of long ground-truth clips (240 latent frames) chunk by chunk with
the engine's own :class:`~fademem_core.model.CausalWan` and a KV cache built by the cache
policy, exactly as a rollout does.  Per chunk:

1. a noisy forward WITH gradient at one continuous noise level per clip (the flow-matching
   velocity target ``v = noise - x0``, sigma from the shifted-uniform law the Euler sampler
   visits, plus a uniform share), attending to the memory as it stands;
2. backward and an optimizer step (the memory carries no gradient, so each chunk is its own
   small step, as in FadeMem-FT's light fine-tuning);
3. the clean context pass under ``no_grad`` that commits the chunk to the memory (the policy
   decides what stays: the full cache keeps all 240 frames, so every relative distance the
   benchmark asks for is in the training distribution).

An EMA of the weights is saved with a JSON record (command, seed, threads, torch, final loss,
seconds).  ``--minutes`` times the first episode and fixes the episode count from it (the
JSON records it, so ``--episodes N`` reproduces the run); ``--episodes`` alone is exact.
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
from typing import Sequence

import numpy as np
import torch

from ..model.loading import build_transformer, save_model
from ..rollout.sampler import denoise_chunk, even_timesteps, timestep_schedule
from . import world
from .forward import memory_teacher_forcing_mask

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
CLIP_FRAMES = 240
CHUNK = 3
SHIFT = 5.0
SAMPLER = "euler"
SAMPLER_STEPS = 12  # Euler steps per chunk the demo and the benchmark use
CONTEXT_NOISE = 0.1  # most committed chunks carry up to this much noise (robustness to own output)
# sprite channels are few pixels: weight them up so identity is learned, not just background
CHANNEL_WEIGHT = torch.tensor([1.0] * 6 + [4.0] * 10)
TRAIN_POLICIES = ("full", "fademem", "teacher_forcing")


def warp(sigma: torch.Tensor | float, shift: float = SHIFT) -> torch.Tensor:
    """Flow-matching timestep shift ``s*sigma / (1 + (s-1)*sigma)``."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    return shift * sigma / (1 + (shift - 1) * sigma)


def init_transformer(seed: int) -> torch.nn.Module:
    """A freshly initialised ``WanTransformer3DModel`` of the tiny config (seeded)."""
    torch.manual_seed(seed)
    return build_transformer(MODEL_CONFIG)


def make_episode(rng: np.random.Generator, batch: int, frames: int, text_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean clips ``[B, 16, F, 8, 8]`` from frame 0 of random scenes + their prompts."""
    scenes = [world.sample_scene(rng) for _ in range(batch)]
    clips = torch.stack([world.render(s, 0, frames) for s in scenes])
    return clips, torch.cat([world.scene_prompt(s, text_dim) for s in scenes])


def train_policy(name: str):
    """The memory in the training loop: ``full`` (base), ``fademem`` (FadeMem-FT: 12, 0.3,
    anchor) or ``teacher_forcing`` (no cache: one masked pass per clip; None)."""
    from ..memory.policies import FadeMem, FullCache

    if name not in TRAIN_POLICIES:
        raise ValueError(f"policy must be one of {TRAIN_POLICIES}, got {name!r}")
    if name == "teacher_forcing":
        return None
    return FullCache() if name == "full" else FadeMem(budget=12, beta=0.3, anchor=True)


def noise_levels(gen: torch.Generator, batch: int) -> torch.Tensor:
    """One sigma per clip: 75 % shifted-uniform (the Euler grid's law), 25 % uniform."""
    u = torch.rand(batch, generator=gen, dtype=torch.float64)
    sig = torch.where(torch.rand(batch, generator=gen) < 0.75, warp(u), u)
    return sig.clamp(1e-3, 1.0).float()


def chunk_loss(model, clip: torch.Tensor, text: torch.Tensor, cache, positions, gen: torch.Generator) -> torch.Tensor:
    """Weighted velocity loss of one noisy chunk ``clip [B, 16, n, h, w]`` against the memory."""
    b = clip.shape[0]
    sig = noise_levels(gen, b)
    noise = torch.randn(clip.shape, generator=gen)
    s = sig[:, None, None, None, None]
    v = model.forward_chunk((1 - s) * clip + s * noise, sig * 1000.0, model.encode_text(text), cache,
                            positions, write=False)
    err = (v - (noise - clip)) ** 2
    return (err.mean(dim=(0, 2, 3, 4)) * CHANNEL_WEIGHT).sum() / CHANNEL_WEIGHT.sum()


@torch.no_grad()
def commit_chunk(model, clip: torch.Tensor, text: torch.Tensor, cache, positions, gen: torch.Generator) -> None:
    """The clean context pass: write the ground-truth chunk (lightly noised) into the memory."""
    sig = _context_noise(gen, (clip.shape[0],))
    s = sig[:, None, None, None, None]
    x = (1 - s) * clip + s * torch.randn(clip.shape, generator=gen)
    model.forward_chunk(x, sig * 1000.0, model.encode_text(text), cache, positions, write=True)
    cache.commit()


OWN_STEPS = 6  # Euler steps of the model's own chunks in the loop (the benchmark's setting)


@torch.no_grad()
def own_chunk(model, like: torch.Tensor, text: torch.Tensor, cache, positions, gen: torch.Generator) -> torch.Tensor:
    """The model's own sample of a chunk shaped ``like`` (Euler, OWN_STEPS) against the memory."""
    times = timestep_schedule(even_timesteps(OWN_STEPS), SHIFT)
    x = torch.randn(like.shape, generator=gen)
    return denoise_chunk(model, x, model.encode_text(text), cache, positions, times, euler=True).float()


def walk_episode(model, ema, opt, clips, text, policy, gen, lr_of, own: float = 0.0) -> list[float]:
    """One episode: every chunk of ``clips`` trained against the memory, then committed to it.

    ``own``: the share of chunks committed as the model's own sample instead of the truth (the
    loss of every chunk still targets the truth), so the memory holds what a rollout would
    write and the model learns to pull a drifting video back to the world instead of
    amplifying its own errors (Self-Forcing's point, with the world's truth as the target).
    """
    b, _, f, h, w = clips.shape
    cache = policy.make_cache(model.geometry(b, h * 8, w * 8), CHUNK, max_frames=f)
    params = [p for p in model.transformer.parameters()]
    losses = []
    try:
        for start in range(0, f, CHUNK):
            n = min(CHUNK, f - start)
            positions = cache.begin_chunk(start, n)
            part = clips[:, :, start:start + n]
            for g in opt.param_groups:
                g["lr"] = lr_of(len(losses))
            loss = chunk_loss(model, part, text, cache, positions, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # before the clean pass writes into the memory's buffers
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            ema.update(params)
            if own and float(torch.rand(1, generator=gen)) < own:
                part = own_chunk(model, part, text, cache, positions, gen)
            commit_chunk(model, part, text, cache, positions, gen)
            losses.append(loss.item())
    finally:
        cache.close()
    return losses


def _context_noise(gen: torch.Generator, shape: tuple[int, int]) -> torch.Tensor:
    """Per-frame (or per-chunk) context noise: up to CONTEXT_NOISE, exactly 0 for 30 %."""
    csig = torch.rand(*shape, generator=gen) * CONTEXT_NOISE
    return torch.where(torch.rand(*shape, generator=gen) < 0.3, torch.zeros_like(csig), csig)


def teacher_forcing_loss(model, clips: torch.Tensor, text: torch.Tensor, gen: torch.Generator,
                         memory: torch.Tensor | None = None, start: int = 0,
                         memory_positions: Sequence[int] = (), corrupt: float = 0.0) -> torch.Tensor:
    """Weighted velocity loss of every chunk of ``clips`` at once (the engine's masked forward).

    Same noise laws as the in-loop walk (one sigma per chunk, light context noise), but the
    whole clip is one differentiable pass, gradients reaching the context's keys and values:
    the sample-efficient way to first learn to render and to copy from the recent past.
    ``clips`` may be a window starting at latent frame ``start`` of longer videos, with
    ``memory [B, 16, K, h, w]``: K clean frames of the far past at ``memory_positions`` that
    every chunk of the window sees (:func:`~.forward.memory_teacher_forcing_mask`), so relative
    distances up to the whole video are trained at the price of a short window.
    ``corrupt``: the share of chunks whose context copy is the model's own one-step estimate
    (:func:`_own_estimates`) instead of the truth, the targets staying the truth: a model that
    only copies its context learns to copy its own errors; this one learns to correct them.
    """
    b, _, f, _, _ = clips.shape
    k = 0 if memory is None else memory.shape[2]
    if len(memory_positions) != k:
        raise ValueError(f"need {k} memory positions, got {len(memory_positions)}")
    nch = -(-f // CHUNK)
    sig = noise_levels(gen, b * nch).reshape(b, nch).repeat_interleave(CHUNK, 1)[:, :f]
    csig = _context_noise(gen, (b, nch)).repeat_interleave(CHUNK, 1)[:, :f]
    noise = torch.randn(clips.shape, generator=gen)
    s, cs = sig[:, None, :, None, None], csig[:, None, :, None, None]
    context = clips
    past: list[torch.Tensor] = []
    if k:
        msig = _context_noise(gen, (b, k))
        ms = msig[:, None, :, None, None]
        past = [(1 - ms) * memory + ms * torch.randn(memory.shape, generator=gen)]
    positions = [float(p) for p in memory_positions] + list(range(start, start + f)) * 2
    mask = memory_teacher_forcing_mask(k, f, CHUNK)
    text_kv = model.encode_text(text)
    ts = torch.cat(([msig] if k else []) + [csig, sig], 1) * 1000.0
    if corrupt > 0:
        own = _own_estimates(model, clips, past, text_kv, positions, mask, gen)
        pick = (torch.rand(b, nch, generator=gen) < corrupt).repeat_interleave(CHUNK, 1)[:, :f]
        context = torch.where(pick[:, None, :, None, None], own, clips)
    clean = (1 - cs) * context + cs * torch.randn(clips.shape, generator=gen)
    x = torch.cat(past + [clean, (1 - s) * clips + s * noise], 2)
    v = model.forward_masked(x, ts, text_kv, positions, mask)[:, :, k + f:]
    err = (v - (noise - clips)) ** 2
    return (err.mean(dim=(0, 2, 3, 4)) * CHANNEL_WEIGHT).sum() / CHANNEL_WEIGHT.sum()


@torch.no_grad()
def _own_estimates(model, clips, past, text_kv, positions, mask, gen) -> torch.Tensor:
    """The model's one-step estimate of every chunk from a noisy copy (sigma 0.3-0.9 per chunk)
    given the true context: blurred, slightly wrong frames like the ones a rollout feeds back."""
    b, _, f, _, _ = clips.shape
    nch = -(-f // CHUNK)
    sig = (0.3 + 0.6 * torch.rand(b, nch, generator=gen)).repeat_interleave(CHUNK, 1)[:, :f]
    s = sig[:, None, :, None, None]
    noisy = (1 - s) * clips + s * torch.randn(clips.shape, generator=gen)
    k = sum(p.shape[2] for p in past)
    ts = torch.cat([torch.zeros(b, k + f), sig], 1) * 1000.0
    v = model.forward_masked(torch.cat(past + [clips, noisy], 2), ts, text_kv, positions, mask)[:, :, k + f:]
    return noisy - s * v


def memory_window(rng: np.random.Generator, frames: int, window: int, memory: int) -> tuple[int, list[int]]:
    """A chunk-aligned window start in a clip of ``frames`` and up to ``memory`` sorted frames
    of the past before it (uniformly drawn).  A quarter of the windows start at frame 0 (the
    first chunk, generated from the prompt alone, is 1 in 4 trained chunks, not 1 in 80)."""
    starts = (frames - window) // CHUNK + 1
    start = 0 if rng.random() < 0.25 else int(rng.integers(starts)) * CHUNK
    k = min(memory, start)
    return start, sorted(int(i) for i in rng.choice(start, size=k, replace=False)) if k else []


def teacher_forcing_step(model, ema, opt, clips, text, gen, lr: float, window: int | None = None,
                         memory: int = 0, rng: np.random.Generator | None = None,
                         corrupt: float = 0.0) -> float:
    """One optimizer step of :func:`teacher_forcing_loss` on a batch of clips: the whole clips,
    or (``window``) a window of them drawn by :func:`memory_window` with ``memory`` past frames."""
    for g in opt.param_groups:
        g["lr"] = lr
    params = list(model.transformer.parameters())
    if window is None:
        loss = teacher_forcing_loss(model, clips, text, gen, corrupt=corrupt)
    else:
        start, past = memory_window(rng, clips.shape[2], window, memory)
        loss = teacher_forcing_loss(model, clips[:, :, start:start + window], text, gen,
                                    clips[:, :, past] if past else None, start, past, corrupt)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    ema.update(params)
    return loss.item()


class Ema:
    """Exponential moving average of the weights (decay ramps up from 0)."""

    def __init__(self, transformer: torch.nn.Module, decay: float) -> None:
        self.module = copy.deepcopy(transformer).requires_grad_(False)
        self.decay = decay
        self.steps = 0

    @torch.no_grad()
    def update(self, params: list[torch.nn.Parameter]) -> None:
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        self.steps += 1
        for pe, p in zip(self.module.parameters(), params):
            pe.lerp_(p, 1 - d)


def lr_at(step: int, total: int, peak: float) -> float:
    """Linear warm-up over the first tenth (at most 200 steps), then cosine down to peak / 10."""
    warmup = min(200, max(1, total // 10))
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


def _start_model(init: Path | None, seed: int):
    from ..model.loading import load_model
    from ..model.causal_wan import CausalWan

    if init is None:
        model = CausalWan(init_transformer(seed))
    else:
        model = load_model(init, device="cpu", dtype=torch.float32)
    model.transformer.requires_grad_(True).train()
    return model


def train(
    out: Path,
    episodes: int | None = None,
    minutes: float | None = None,
    seed: int = 0,
    batch: int = 16,
    lr: float = 1e-3,
    policy: str = "full",
    init: Path | None = None,
    frames: int = CLIP_FRAMES,
    threads: int | None = None,
    ema_decay: float = 0.999,
    window: int | None = None,
    memory: int = 0,
    corrupt: float = 0.0,
    own: float = 0.0,
) -> dict:
    """Run the training; returns the info dict written next to the weights."""
    if episodes is None and minutes is None:
        raise ValueError("give --episodes or --minutes")
    if episodes is not None and episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes!r}")
    if minutes is not None and minutes <= 0:
        raise ValueError(f"minutes must be > 0, got {minutes!r}")
    if frames < CHUNK or frames % CHUNK:
        raise ValueError(f"frames must be a positive multiple of {CHUNK}, got {frames!r}")
    if window is not None and (policy != "teacher_forcing" or window < CHUNK or window % CHUNK
                               or window > frames):
        raise ValueError(f"window needs --policy teacher_forcing and a multiple of {CHUNK} in "
                         f"[{CHUNK}, frames={frames}], got {window!r} with policy {policy!r}")
    if not 0.0 <= corrupt <= 1.0 or (corrupt and policy != "teacher_forcing"):
        raise ValueError(f"corrupt must be in [0, 1] with --policy teacher_forcing, got {corrupt!r}")
    if not 0.0 <= own <= 1.0 or (own and policy == "teacher_forcing"):
        raise ValueError(f"own must be in [0, 1] with a memory in the loop (--policy full/fademem), got {own!r}")
    if memory < 0 or (memory and window is None):
        raise ValueError(f"memory frames must be >= 0 and need a window, got {memory!r}")
    if init is not None and not Path(init).is_file():
        raise ValueError(f"init weights not found: {str(init)!r}")
    pol = train_policy(policy)
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _train(out, episodes, minutes, seed, batch, lr, policy, pol, init, frames, ema_decay,
                      window, memory, corrupt, own)
    finally:
        torch.set_num_threads(before)


def _train(out, episodes, minutes, seed, batch, lr, policy, pol, init, frames, ema_decay,
           window, memory, corrupt, own) -> dict:
    model = _start_model(init, seed)
    tr = model.transformer
    ema = Ema(tr, ema_decay)
    opt = torch.optim.AdamW(tr.parameters(), lr=lr, weight_decay=0.01, betas=(0.9, 0.99))
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    per_episode = 1 if pol is None else frames // CHUNK
    total = episodes
    t0 = time.time()
    losses: list[float] = []
    done = 0
    while total is None or done < total:
        clips, text = make_episode(rng, batch, frames, model.text_dim)
        lr_of = lambda j: lr_at(len(losses) + j, (total or 10**6) * per_episode, lr)  # noqa: E731
        if pol is None:
            losses.append(teacher_forcing_step(model, ema, opt, clips, text, gen, lr_of(0), window, memory, rng,
                                               corrupt))
        else:
            losses += walk_episode(model, ema, opt, clips, text, pol, gen, lr_of, own)
        done += 1
        if total is None:  # fix the episode count from the measured speed
            total = max(1, int(minutes * 60 / (time.time() - t0)))
            print(f"{time.time() - t0:.1f} s/episode -> {total} episodes", flush=True)
        if pol is not None or done % 25 == 0 or done == total:
            print(f"episode {done}/{total} loss {np.mean(losses[-max(per_episode, 25):]):.4f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    seconds = round(time.time() - t0, 1)
    command = (f"python -m fademem_core.tinyworld.train --out {out} --episodes {done} --seed {seed} "
               f"--batch {batch} --lr {lr} --policy {policy} --frames {frames} "
               f"--threads {torch.get_num_threads()} --ema {ema_decay}"
               + (f" --window {window} --memory {memory}" if window is not None else "")
               + (f" --corrupt {corrupt}" if corrupt else "") + (f" --own {own}" if own else "")
               + (f" --init {init}" if init is not None else ""))
    info = {
        "what": ("tiny causal Wan (diffusers WanTransformer3DModel), a base flow model trained on "
                 "fademem_core.tinyworld " + ("by teacher forcing (masked full-sequence pass)" if pol is None
                                              else f"through the engine with {pol!r} memory in the loop")),
        "sampler": {"name": SAMPLER, "steps": SAMPLER_STEPS, "shift": SHIFT},
        "world": {
            "latent": [16, 8, 8], "pixels_equivalent": [64, 64], "classes": world.NUM_CLASSES,
            "families": world.NUM_FAMILIES, "max_sprites": world.MAX_SPRITES,
            "absence_frames": [world.MIN_ABSENCE, world.MAX_ABSENCE],
            "first_entry": list(world.FIRST_ENTRY), "prompt_length": world.PROMPT_LENGTH,
        },
        "config": MODEL_CONFIG,
        "training": {
            "clip_frames": frames, "chunk": CHUNK, "shift": SHIFT, "policy": "teacher_forcing (masked forward, no cache)" if pol is None else repr(pol),
            "window": window, "memory_frames": memory, "corrupt": corrupt, "own_chunks": own,
            "init": None if init is None else Path(init).name,
            "episodes": done, "steps": len(losses), "batch": batch, "lr": lr, "seed": seed,
            "ema": ema_decay, "context_noise": CONTEXT_NOISE,
            "final_loss": float(np.mean(losses[-max(per_episode * min(done, 3), 25):])), "seconds": seconds,
            "threads": torch.get_num_threads(), "torch": torch.__version__,
        },
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": command,
        # a fine-tune or continued run: how its starting weights were made
        "init_record": None if init is None else _read_record(Path(init)),
        "parameters": sum(p.numel() for p in tr.parameters()),
    }
    save_weights(ema.module, out, info)
    return info


def _read_record(weights: Path) -> dict | None:
    path = weights.with_suffix(".json")
    try:
        rec = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {k: rec.get(k) for k in ("command", "training", "init_record")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True, type=Path, help="output .safetensors path")
    ap.add_argument("--episodes", type=int, default=None, help="exact number of episodes (reproducible)")
    ap.add_argument("--minutes", type=float, default=None, help="time budget; fixes the episode count after one")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--policy", default="full", choices=TRAIN_POLICIES, help="memory in the loop")
    ap.add_argument("--init", type=Path, default=None, help="start from these weights (fine-tuning)")
    ap.add_argument("--frames", type=int, default=CLIP_FRAMES, help="latent frames per clip")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (recorded)")
    ap.add_argument("--ema", type=float, default=0.999, help="EMA decay of the saved weights")
    ap.add_argument("--window", type=int, default=None,
                    help="teacher forcing on a window of this many frames of each clip (default: whole clip)")
    ap.add_argument("--memory", type=int, default=0,
                    help="with --window: frames of the clip's past before the window every chunk sees")
    ap.add_argument("--corrupt", type=float, default=0.0,
                    help="teacher forcing: share of chunks whose context is the model's own one-step estimate")
    ap.add_argument("--own", type=float, default=0.0,
                    help="memory in the loop: share of chunks committed as the model's own sample")
    args = ap.parse_args(argv)
    if args.out.suffix != ".safetensors":
        ap.error(f"--out must end in .safetensors, got {str(args.out)!r}")
    info = train(args.out, args.episodes, args.minutes, args.seed, args.batch, args.lr, args.policy,
                 args.init, args.frames, args.threads, args.ema, args.window, args.memory,
                 args.corrupt, args.own)
    print(json.dumps(info["training"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
