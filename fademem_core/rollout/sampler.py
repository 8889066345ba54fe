"""Chunk-by-chunk few-step rollout of a causal Wan under a KV cache policy.

For every chunk of ``chunk`` latent frames: start from seeded Gaussian noise, run the warped
few-step schedule (``x0 = x - sigma * v``, fresh noise between steps), then one clean pass at
``context_noise`` writes the chunk's K/V into the memory (the policy decides what stays).

Random numbers come from one CPU ``torch.Generator`` seeded with ``seed``, drawn in this order:
chunk noise ``[B, 16, n, h, w]``, then one fresh draw of the same shape after every step but the
last, then (only when ``context_noise > 0``) one for the clean pass; a prompt-switch re-cache
with ``context_noise > 0`` draws one for the re-cached frames first.  Same seed, same video,
on any device.

Prompt schedules: ``text`` may be ``[(0, emb0), (start1, emb1), ...]`` (start in latent frames).
A switch takes effect at the first chunk that starts at or after ``start`` (switches happen at
chunk boundaries).  The memory is then either kept as is (``switch="keep"``) or re-cached
(``switch="recache"``, the default, as LongLive does): the frames the memory still holds exactly
are re-run at ``context_noise`` under the new prompt and their K/V replaced.  Consolidated
(merged) FadeMem entries have no single frame to re-run and are kept.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..model.causal_wan import CausalWan, TextKV
from ..memory.planner import check_int

# Wan 2.1 VAE per-channel statistics: model space = (raw - mean) / std.
WAN_LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
WAN_LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)
NUM_TRAIN_TIMESTEPS = 1000
SWITCH_MODES = ("recache", "keep")
DEFAULT_STEPS = (1000, 750, 500, 250)


class RolloutInterrupted(Exception):
    """Raise from a ``generate`` callback to stop a rollout (the memory is freed first)."""


@dataclass(frozen=True)
class StepInfo:
    """What a ``generate`` callback receives after every denoising step."""

    chunk: int  # chunk index, 0-based
    num_chunks: int
    step: int  # step index within the chunk, 0-based
    num_steps: int
    timestep: float  # warped timestep of this step
    frame_start: int  # first latent frame of the chunk
    x0: torch.Tensor  # current clean prediction of the chunk [B, 16, n, h, w] (float32)
    prompt: int  # index of the prompt in use
    kv_bytes: int  # KV bytes the cache has allocated now (cache.nbytes())
    memory_entries: int  # entries in the memory (frames or consolidated groups)
    held_bytes: int  # bytes of the entries held (memory_entries x one slot)

    @property
    def progress(self) -> float:
        """Fraction of all steps done, in (0, 1]."""
        return (self.chunk * self.num_steps + self.step + 1) / (self.num_chunks * self.num_steps)


# ---------------------------------------------------------------------------- latents
def _stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if x.ndim < 2 or x.shape[1] != len(WAN_LATENT_MEAN):
        raise ValueError(f"latents must be [B, 16, ...], got {tuple(x.shape)}")
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = torch.tensor(WAN_LATENT_MEAN, dtype=torch.float32, device=x.device).reshape(shape)
    std = torch.tensor(WAN_LATENT_STD, dtype=torch.float32, device=x.device).reshape(shape)
    return mean, std


def to_raw(latents: torch.Tensor) -> torch.Tensor:
    """Model-space latents -> raw Wan VAE latents (what ComfyUI's VAEDecode expects)."""
    mean, std = _stats(latents)
    return (latents.float() * std + mean).to(latents.dtype)


def from_raw(latents: torch.Tensor) -> torch.Tensor:
    """Raw Wan VAE latents -> model space (inverse of :func:`to_raw`)."""
    mean, std = _stats(latents)
    return ((latents.float() - mean) / std).to(latents.dtype)


# ---------------------------------------------------------------------------- schedule
def timestep_schedule(steps: Sequence[float] = DEFAULT_STEPS, shift: float = 5.0) -> list[float]:
    """Warp ``steps`` through the flow shift: ``s*sigma / (1 + (s-1)*sigma)`` with ``sigma = t/1000``.

    ``timestep_schedule((1000, 750, 500, 250), 5.0) == [1000.0, 937.5, 833.33..., 625.0]``.
    """
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence) or len(steps) == 0:
        raise ValueError(f"steps must be a non-empty sequence of timesteps in (0, 1000], got {steps!r}")
    vals = []
    for t in steps:
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 < t <= NUM_TRAIN_TIMESTEPS:
            raise ValueError(f"steps must be timesteps in (0, 1000], got {t!r} in {list(steps)!r}")
        vals.append(float(t))
    if any(b >= a for a, b in zip(vals, vals[1:])):
        raise ValueError(f"steps must be strictly decreasing, got {vals}")
    if isinstance(shift, bool) or not isinstance(shift, numbers.Real) or not math.isfinite(shift) or shift <= 0:
        raise ValueError(f"shift must be a positive number, got {shift!r}")
    out = []
    for t in vals:
        sigma = t / NUM_TRAIN_TIMESTEPS
        out.append(NUM_TRAIN_TIMESTEPS * shift * sigma / (1 + (shift - 1) * sigma))
    return out


# ---------------------------------------------------------------------------- validation
def _check_text(emb: object, text_dim: int, where: str) -> torch.Tensor:
    if not isinstance(emb, torch.Tensor):
        raise ValueError(f"{where} must be a tensor [B, L, {text_dim}], got {type(emb).__name__}")
    if emb.ndim != 3 or emb.shape[-1] != text_dim or emb.shape[0] < 1 or emb.shape[1] < 1:
        raise ValueError(f"{where} must be [B, L, {text_dim}] (the model's text_dim), got {tuple(emb.shape)}")
    if not emb.is_floating_point():
        raise ValueError(f"{where} must be a floating tensor, got {emb.dtype}")
    if not torch.isfinite(emb).all():
        raise ValueError(f"{where} contains NaN or inf values")
    return emb


def _parse_schedule(text: object, text_dim: int, num_frames: int) -> list[tuple[int, torch.Tensor]]:
    """``[(start, emb), ...]`` sorted, first at frame 0, all the same batch."""
    if isinstance(text, torch.Tensor):
        return [(0, _check_text(text, text_dim, "text"))]
    if not isinstance(text, Sequence) or isinstance(text, (str, bytes)) or len(text) == 0:
        raise ValueError(
            f"text must be a tensor [B, L, {text_dim}] or a prompt schedule [(start_frame, tensor), ...], "
            f"got {type(text).__name__}"
        )
    sched = []
    for i, item in enumerate(text):
        if not isinstance(item, (tuple, list)) or len(item) != 2:
            raise ValueError(f"prompt schedule entry {i} must be (start_frame, embeddings), got {item!r}")
        start = check_int(f"prompt schedule entry {i} start frame", item[0], 0)
        if start >= num_frames:
            raise ValueError(f"prompt schedule entry {i} starts at frame {start}, past the video's {num_frames} frames")
        sched.append((start, _check_text(item[1], text_dim, f"prompt schedule entry {i} embeddings")))
    starts = [s for s, _ in sched]
    if starts[0] != 0:
        raise ValueError(f"the first prompt of a schedule must start at frame 0, got {starts[0]}")
    if any(b <= a for a, b in zip(starts, starts[1:])):
        raise ValueError(f"prompt schedule start frames must be strictly increasing, got {starts}")
    batches = {e.shape[0] for _, e in sched}
    if len(batches) > 1:
        raise ValueError(f"all prompts of a schedule must have the same batch size, got {sorted(batches)}")
    return sched


def _resolve_policy(policy: object):
    from ..memory.policies import CachePolicy, policy_from_name

    if isinstance(policy, CachePolicy):
        return policy
    if isinstance(policy, str):
        return policy_from_name(policy)
    raise ValueError(f"unknown policy {policy!r}: expected a CachePolicy (FadeMem, SinkWindow, ...) or its name")


def _prompt_at(sched: list[tuple[int, torch.Tensor]], frame: int) -> int:
    """Index of the prompt in use for a chunk starting at ``frame``."""
    return max(i for i, (s, _) in enumerate(sched) if s <= frame)


# ---------------------------------------------------------------------------- rollout
def generate(
    model: CausalWan,
    text: torch.Tensor | Sequence[tuple[int, torch.Tensor]],
    policy,
    num_frames: int,
    height: int,
    width: int,
    seed: int = 0,
    steps: Sequence[float] = DEFAULT_STEPS,
    shift: float = 5.0,
    chunk: int = 3,
    context_noise: float = 0.0,
    callback: Callable[[StepInfo], None] | None = None,
    switch: str = "recache",
) -> torch.Tensor:
    """Generate ``num_frames`` latent frames chunk by chunk; returns model-space latents.

    ``text``: umT5 embeddings ``[B, L, text_dim]`` or a prompt schedule
    ``[(start_frame, embeddings), ...]``.  ``policy``: a cache policy (``FadeMem()``,
    ``SinkWindow()``, ``SlidingWindow()``, ``FullCache()``) or its name.  ``height``/``width``
    in pixels (multiples of 16).  Returns ``[B, 16, num_frames, height/8, width/8]`` float32
    on the CPU; use :func:`to_raw` before a Wan VAE decode.  ``callback(StepInfo)`` runs after
    every step; an exception raised from it (e.g. :class:`RolloutInterrupted`) frees the memory
    and propagates.  ``switch``: ``"recache"`` (default) or ``"keep"`` at prompt switches.
    Every argument is validated before any compute.
    """
    if not isinstance(model, CausalWan):
        raise ValueError(f"model must be a CausalWan (see load_model / tiny_model), got {type(model).__name__}")
    policy = _resolve_policy(policy)
    chunk = check_int("chunk", chunk, 1)
    num_frames = check_int("num_frames", num_frames, 1)
    if num_frames < chunk:
        raise ValueError(f"num_frames ({num_frames}) must be at least one chunk ({chunk} latent frames)")
    rows, cols = model.latent_grid(height, width)
    seed = check_int("seed", seed, 0)
    if seed >= 2**64:  # torch.Generator takes 64-bit seeds
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    times = timestep_schedule(steps, shift)
    if isinstance(context_noise, bool) or not isinstance(context_noise, numbers.Real) or not 0 <= context_noise < NUM_TRAIN_TIMESTEPS:
        raise ValueError(f"context_noise must be a timestep in [0, 1000), got {context_noise!r}")
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable or None, got {type(callback).__name__}")
    if switch not in SWITCH_MODES:
        raise ValueError(f"switch must be one of {SWITCH_MODES}, got {switch!r}")
    sched = _parse_schedule(text, model.text_dim, num_frames)
    batch = sched[0][1].shape[0]

    h, w = rows * model.patch_size[1], cols * model.patch_size[2]
    geometry = model.geometry(batch, height, width)
    cache = policy.make_cache(geometry, chunk, max_frames=num_frames)
    try:
        with torch.no_grad():
            return _rollout(model, cache, sched, batch, num_frames, h, w, seed, times, chunk,
                            float(context_noise), callback, switch, policy.slot_bytes(geometry))
    finally:
        cache.close()


def _rollout(
    model: CausalWan,
    cache,
    sched: list[tuple[int, torch.Tensor]],
    batch: int,
    num_frames: int,
    h: int,
    w: int,
    seed: int,
    times: list[float],
    chunk: int,
    context_noise: float,
    callback: Callable[[StepInfo], None] | None,
    switch: str,
    slot_bytes: int,
) -> torch.Tensor:
    dev = model.device
    gen = torch.Generator(device="cpu").manual_seed(seed)
    channels = model.in_channels
    out = torch.zeros(batch, channels, num_frames, h, w, dtype=torch.float32)
    sigmas = [t / NUM_TRAIN_TIMESTEPS for t in times]
    sigma_ctx = context_noise / NUM_TRAIN_TIMESTEPS
    num_chunks = -(-num_frames // chunk)

    def noise(n: int) -> torch.Tensor:
        x = torch.randn(batch, channels, n, h, w, generator=gen, dtype=torch.float32)
        if dev.type == "cuda":  # pinned + non_blocking: the copy queues, the host never waits
            return x.pin_memory().to(dev, non_blocking=True)
        return x.to(dev)

    def clean_input(x0: torch.Tensor) -> torch.Tensor:
        if context_noise == 0:
            return x0
        return (1 - sigma_ctx) * x0 + sigma_ctx * noise(x0.shape[2])

    prompt = -1
    text: TextKV | None = None
    for k in range(num_chunks):
        start = k * chunk
        n = min(chunk, num_frames - start)
        wanted = _prompt_at(sched, start)
        if wanted != prompt:
            text = None  # drop the previous prompt's K/V before encoding the next
            text = model.encode_text(sched[wanted][1])
            if prompt >= 0 and switch == "recache":
                _recache(model, cache, out, text, context_noise, clean_input)
            prompt = wanted

        positions = cache.begin_chunk(start, n)
        x = noise(n)
        x0 = x
        for j, (t, sigma) in enumerate(zip(times, sigmas)):
            v = model.forward_chunk(x, t, text, cache, positions, write=False)
            x0 = x - sigma * v
            if j + 1 < len(times):
                nxt = sigmas[j + 1]
                x = (1 - nxt) * x0 + nxt * noise(n)
            if callback is not None:
                held = len(cache.entries())
                callback(StepInfo(k, num_chunks, j, len(times), t, start, x0, prompt,
                                  int(cache.nbytes()), held, held * slot_bytes))
        model.forward_chunk(clean_input(x0), context_noise, text, cache, positions, write=True)
        cache.commit()
        out[:, :, start:start + n] = x0.float().cpu()
    return out


def _recache(model: CausalWan, cache, out: torch.Tensor, text: TextKV, context_noise: float, clean_input) -> None:
    """Re-run the frames the memory holds exactly under the new prompt (LongLive-style)."""
    frames = list(cache.exact_frames())
    if not frames:
        return
    positions = cache.begin_recache(frames)
    x = out[:, :, frames].to(model.device)
    model.forward_chunk(clean_input(x), context_noise, text, cache, positions, write=True)
    cache.commit()


__all__ = [
    "RolloutInterrupted",
    "StepInfo",
    "WAN_LATENT_MEAN",
    "WAN_LATENT_STD",
    "from_raw",
    "generate",
    "timestep_schedule",
    "to_raw",
]
