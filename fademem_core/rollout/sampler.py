"""Chunk-by-chunk few-step rollout of a causal Wan under a KV cache policy.

For every chunk of ``chunk`` latent frames: start from seeded Gaussian noise, run the warped
few-step schedule (``x0 = x - sigma * v``, fresh noise between steps), then one clean pass at
``context_noise`` writes the chunk's K/V into the memory (the policy decides what stays).

The clean pass is labelled with timestep ``context_noise``.  ``context_input="clean"``
(default) feeds it the clean x0, as Self-Forcing's and LongLive's inference pipelines do;
``"noised"`` first noises x0 to that timestep, as Self-Forcing's training rollout does, with the
noise level rounded to the peers' 1000-step grid (:func:`context_sigma`: t = 100 -> 0.10110).

Two samplers share that loop (``sampler=``):

* ``"few_step"`` (default, what the distilled Self-Forcing / LongLive / FadeMem-FT generators
  are trained for): each step predicts ``x0`` and re-noises it with fresh noise to the next
  level.  A base flow model trained with a regression loss returns posterior means (blur)
  under it.
* ``"euler"``: the deterministic Euler ODE of a base flow-matching model,
  ``x <- x + (sigma_next - sigma) * v`` from ``sigma = 1`` through every (warped) step to
  ``sigma = 0``; :func:`even_timesteps` spaces ``n`` steps evenly before the shift.  The tiny
  world model is such a base model.

Random numbers come from one CPU ``torch.Generator`` seeded with ``seed``, drawn in this order:
chunk noise ``[B, 16, n, h, w]``, then (``few_step`` only) one fresh draw of the same shape after
every step but the last, then (only with ``context_input="noised"`` and ``context_noise > 0``) one for the clean
pass; such a noised prompt-switch re-cache draws one for the re-run frames first.  Same seed,
same video, on any device.

Prompt schedules: ``text`` may be ``[(0, emb0), (start1, emb1), ...]`` (start in latent frames).
A switch takes effect at the first chunk that starts at or after ``start`` (switches happen at
chunk boundaries).  What the memory does then is ``switch`` (see
:mod:`fademem_core.rollout.switching`): ``"longlive"`` / ``"longlive_resink"`` reproduce
LongLive's re-cache, ``"recache"`` re-runs what this pack's memory holds exactly, ``"keep"``
leaves it; ``"auto"`` (default) picks ``"longlive"`` for LongLive's ``SinkWindow`` and
``"recache"`` otherwise.

Prefix (continue a video, start from an image): ``prefix`` latents are frames ``0..P-1`` of the
video; they enter the memory chunk by chunk without denoising (see
:mod:`fademem_core.rollout.priming`, which also states the seed rule) and the ``num_frames`` new
frames follow at ``P``.  Prompt schedule start frames count from the first prefix frame.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable, Sequence

import torch

from ..checks import CONTEXT_INPUTS, SAMPLERS, check_choice, check_int, check_real
from ..memory.policies import CachePolicy, policy_from_name
from ..memory.storage import check_allocation
from ..model.causal_wan import CausalWan, TextKV
from ..wan import WAN_LATENT_MEAN, WAN_LATENT_STD, from_raw, to_raw  # re-exported
from .priming import check_prefix, check_prefix_batch, chunk_spans, skip_noise
from .prompts import parse_prompt_schedule, prompt_at
from .switching import RecachePlan, recache_plan, resolve_switch
from .timesteps import DEFAULT_STEPS, NUM_TRAIN_TIMESTEPS, context_sigma, even_timesteps, timestep_schedule



class RolloutInterrupted(Exception):
    """Raise from a ``generate`` callback to stop a rollout (the memory is freed first)."""


@dataclass(frozen=True)
class StepInfo:
    """What a ``generate`` callback receives after every denoising step."""

    chunk: int  # chunk index, 0-based
    num_chunks: int | None  # None: the rollout runs until stopped (num_frames=None)
    step: int  # step index within the chunk, 0-based
    num_steps: int
    timestep: float  # warped timestep of this step
    frame_start: int  # first latent frame of the chunk
    x0: torch.Tensor  # current clean prediction of the chunk [B, 16, n, h, w] (float32)
    prompt: int  # index of the prompt in use
    kv_bytes: int  # KV bytes the cache has allocated now (cache.nbytes())
    memory_entries: int  # entries in the memory (frames or consolidated groups)
    held_bytes: int  # bytes of the entries held (memory_entries x one slot)
    # a prefix chunk: no denoising ran, x0 is the given prefix, reported once as the chunk's
    # last step (so "after the last step" code handles prefix and new chunks alike)
    primed: bool = False

    @property
    def progress(self) -> float | None:
        """Fraction of all steps done, in (0, 1]; None for a rollout without an end."""
        if self.num_chunks is None:
            return None
        return (self.chunk * self.num_steps + self.step + 1) / (self.num_chunks * self.num_steps)


def _resolve_policy(policy: object) -> CachePolicy:
    if isinstance(policy, CachePolicy):
        return policy
    if isinstance(policy, str):
        return policy_from_name(policy)
    raise ValueError(f"unknown policy {policy!r}: expected a CachePolicy (FadeMem, SinkWindow, ...) or its name")


def _context_noise_level(context_noise: object, context_input: object, shift: float) -> float:
    """Validate ``context_noise`` / ``context_input``; the sigma the clean pass's input gets."""
    t = check_real("context_noise", context_noise, 0.0, NUM_TRAIN_TIMESTEPS, high_open=True,
                   expected="a timestep in [0, 1000)")
    if check_choice("context_input", context_input, CONTEXT_INPUTS) == "clean":
        return 0.0
    return context_sigma(t, float(shift))


# ---------------------------------------------------------------------------- rollout
def check_output_size(num_frames: int, h: int, w: int, batch: int = 1, channels: int = 16) -> int:
    """Bytes of the float32 latents ``generate`` returns (held on the CPU); ValueError when
    they exceed the machine's memory.  ``h``/``w`` are latent rows/columns (pixels / 8)."""
    nbytes = batch * channels * num_frames * h * w * 4
    check_allocation(f"the {num_frames}-frame output latents", nbytes, "cpu")
    return nbytes


def generate(
    model: CausalWan,
    text: torch.Tensor | Sequence[tuple[int, torch.Tensor]],
    policy,
    num_frames: int | None,
    height: int,
    width: int,
    seed: int = 0,
    steps: Sequence[float] = DEFAULT_STEPS,
    shift: float = 5.0,
    chunk: int = 3,
    context_noise: float = 0.0,
    callback: Callable[[StepInfo], None] | None = None,
    switch: str = "auto",
    context_input: str = "clean",
    sampler: str = "few_step",
    prefix: torch.Tensor | None = None,
    prefix_raw: bool = False,
    include_prefix: bool = False,
    keep_latents: bool = True,
) -> torch.Tensor | None:
    """Generate ``num_frames`` latent frames chunk by chunk; returns model-space latents.

    ``text``: umT5 embeddings ``[B, L, text_dim]`` or a prompt schedule ``[(start_frame, emb),
    ...]``.  ``policy``: a cache policy (``FadeMem()``, ``SinkWindow()``, ...) or its name.  ``height``/``width``
    in pixels (multiples of 16).  Returns ``[B, 16, num_frames, height/8, width/8]`` float32
    on the CPU; use :func:`to_raw` before a Wan VAE decode.  ``callback(StepInfo)`` runs after
    every step; an exception raised from it (e.g. :class:`RolloutInterrupted`) frees the memory
    and propagates.  ``switch``: the memory at prompt switches (``SWITCH_MODES``, default
    ``"auto"``; see :mod:`fademem_core.rollout.switching`).  ``context_input``: what the pass
    writing a chunk into the memory sees, ``"clean"`` x0 (default) or x0 ``"noised"`` to
    ``context_noise``.  ``sampler``: ``"few_step"`` or ``"euler"`` (see the module).
    ``prefix``: latents ``[B, 16, P, height/8, width/8]`` (raw with ``prefix_raw=True``) priming
    the memory as frames ``0..P-1``; the result holds the new frames only unless
    ``include_prefix=True``.  ``keep_latents=False``: returns None, holds only what a switch may
    re-run; ``num_frames=None`` then runs until the callback raises.  Every argument is
    validated before any compute."""
    policy, chunk, num_frames = _check_run(model, policy, chunk, num_frames, keep_latents,
                                           prefix is not None)
    rows, cols = model.latent_grid(height, width)
    seed = _check_options(seed, callback, include_prefix)
    times, sigma_ctx = timestep_schedule(steps, shift), _context_noise_level(context_noise, context_input, shift)
    mode, euler = resolve_switch(switch, policy), check_choice("sampler", sampler, SAMPLERS) == "euler"
    h, w = rows * model.patch_size[1], cols * model.patch_size[2]
    prefix, primed, sched = _prefix_and_schedule(model, text, prefix, prefix_raw, h, w, num_frames, chunk)
    batch, geometry = sched[0][1].shape[0], model.geometry(sched[0][1].shape[0], height, width)
    total = None if num_frames is None else primed + num_frames
    latents = _Latents(keep_latents, (batch, model.in_channels, total or 0, h, w),
                       policy.visible_frames(chunk))  # checks the output fits first
    cache = policy.make_cache(geometry, chunk, max_frames=total)
    plan = partial(_plan, mode, policy, chunk, cache)
    try:
        with torch.no_grad():
            out = _rollout(model, cache, sched, latents, prefix, num_frames, seed, times,
                           chunk, float(context_noise), sigma_ctx, callback, plan,
                           policy.slot_bytes(geometry), euler)
    finally:
        cache.close()
    # new frames only: a copy, not a view, so the prefix's frames can be freed
    return out if out is None or include_prefix or not primed else out[:, :, primed:].clone()


def _prefix_and_schedule(model: CausalWan, text: object, prefix: object, prefix_raw: object,
                         h: int, w: int, num_frames: int | None,
                         chunk: int) -> tuple[torch.Tensor | None, int, list]:
    """The checked prefix (model space, or None), its length and the prompt schedule, whose
    start frames count the prefix."""
    prefix = None if prefix is None else check_prefix(prefix, model.in_channels, h, w, prefix_raw)
    primed = 0 if prefix is None else prefix.shape[2]
    total = None if num_frames is None else primed + num_frames
    sched = parse_prompt_schedule(text, model.text_dim, total, chunk)
    check_prefix_batch(prefix, sched[0][1].shape[0])
    return prefix, primed, sched


def _check_options(seed: object, callback: object, include_prefix: object) -> int:
    """Validate generate's seed, callback and include_prefix; return the seed as an int."""
    seed = check_int("seed", seed, 0)
    if seed >= 2**64:  # torch.Generator takes 64-bit seeds
        raise ValueError(f"seed must be an integer in [0, 2**64), got {seed!r}")
    if callback is not None and not callable(callback):
        raise ValueError(f"callback must be callable or None, got {type(callback).__name__}")
    if not isinstance(include_prefix, bool):
        raise ValueError(f"include_prefix must be True or False, got {include_prefix!r}")
    return seed


def _check_run(model: object, policy: object, chunk: object, num_frames: object,
               keep_latents: bool, primed: bool) -> tuple[CachePolicy, int, int | None]:
    """The model's type, the policy (resolved), ``chunk`` and ``num_frames`` (see _check_length)."""
    if not isinstance(model, CausalWan):
        raise ValueError(f"model must be a CausalWan (see load_model / tiny_model), got {type(model).__name__}")
    policy = _resolve_policy(policy)
    chunk = check_int("chunk", chunk, 1)
    return policy, chunk, _check_length(num_frames, chunk, policy, keep_latents, primed)


def _check_length(num_frames: object, chunk: int, policy: CachePolicy, keep_latents: bool,
                  primed: bool) -> int | None:
    """``num_frames`` as an int of at least one chunk (any length after a prefix), or None: a
    rollout without an end, which needs flat memory (a bounded policy, no latents kept)."""
    if num_frames is not None:
        num_frames = check_int("num_frames", num_frames, 1)
        if num_frames < chunk and not primed:  # after a prefix any length continues it
            raise ValueError(f"num_frames ({num_frames}) must be at least one chunk ({chunk} latent frames)")
        return num_frames
    if keep_latents:
        raise ValueError("num_frames=None (run until stopped) needs keep_latents=False: "
                         "consume each chunk in the callback")
    if policy.history_frames() is None:
        raise ValueError(f"num_frames=None (run until stopped) needs a bounded cache policy; "
                         f"{policy} grows with the video (use FadeMem or a window)")
    return None


class _Latents:
    """The rollout's clean latents: all of them, or only those a prompt switch may re-run.

    A re-cache re-runs frames the memory holds exactly (``"recache"``) or the last
    ``sink + window`` frames (the LongLive modes): held are the exact frames and the ``recent``
    newest frames (the policy's visible frames; None: every frame).
    """

    def __init__(self, keep_all: bool, shape: tuple[int, ...], recent: int | None) -> None:
        self.shape = shape  # [B, C, num_frames (0: no end), h, w]
        if keep_all:  # what generate returns must fit; a run keeping no latents returns nothing
            b, c, n, h, w = shape
            check_output_size(n, h, w, b, c)
        self.all = torch.zeros(shape, dtype=torch.float32) if keep_all else None
        self.recent = recent
        self.held: dict[int, torch.Tensor] = {}  # frame -> [B, C, h, w], keep_all=False only

    def put(self, start: int, x0: torch.Tensor, exact: Callable[[], list[int]]) -> None:
        """Store a finished chunk; ``exact()``: the frames the memory now holds exactly."""
        x0 = x0.float().cpu()
        if self.all is not None:
            self.all[:, :, start:start + x0.shape[2]] = x0
            return
        for i in range(x0.shape[2]):
            self.held[start + i] = x0[:, :, i]
        if self.recent is not None:
            keep, first = set(exact()), start + x0.shape[2] - self.recent
            self.held = {f: x for f, x in self.held.items() if f in keep or f >= first}

    def take(self, frames: list[int]) -> torch.Tensor:
        """Latents ``[B, C, len(frames), h, w]`` of frames a re-cache re-runs."""
        if self.all is not None:
            return self.all[:, :, frames]
        return torch.stack([self.held[f] for f in frames], dim=2)

    def result(self) -> torch.Tensor | None:
        return self.all


def _spans(num_frames: int | None, chunk: int, primed: int) -> tuple[Iterable[tuple[int, int]], int | None]:
    """Every chunk's ``(start, n)`` and how many there are; without an end (``num_frames=None``)
    the new chunks go on until the callback raises."""
    if num_frames is not None:
        spans = chunk_spans(num_frames, chunk, primed)
        return spans, len(spans)
    return itertools.chain(chunk_spans(0, chunk, primed),
                           ((s, chunk) for s in itertools.count(primed, chunk))), None


def _plan(mode: str, policy: CachePolicy, chunk: int, cache, start: int) -> RecachePlan | None:
    """The re-cache of a prompt switch before frame ``start`` (what ``cache`` holds now).

    ``"recache"`` asks the policy first (``cache.prompt_switch()``): every exact frame by
    default, nothing after Infinity-RoPE's flush to its sink and newest frames."""
    exact = cache.prompt_switch() if mode == "recache" else cache.exact_frames()
    return recache_plan(mode, policy, chunk, start, exact)


@dataclass
class _Noise:
    """The rollout's one random stream (drawn on the CPU: same seed, same video anywhere)."""

    gen: torch.Generator
    shape: tuple[int, int, int, int]  # batch, channels, h, w
    device: torch.device
    sigma_ctx: float  # noise level of the clean pass (0: none drawn)

    def __call__(self, n: int) -> torch.Tensor:
        b, c, h, w = self.shape
        x = torch.randn(b, c, n, h, w, generator=self.gen, dtype=torch.float32)
        if self.device.type == "cuda":  # pinned + non_blocking: the copy queues, the host never waits
            return x.pin_memory().to(self.device, non_blocking=True)
        return x.to(self.device)

    def clean_input(self, x0: torch.Tensor) -> torch.Tensor:
        if self.sigma_ctx == 0:
            return x0
        return (1 - self.sigma_ctx) * x0 + self.sigma_ctx * self(x0.shape[2])


def _rollout(
    model: CausalWan,
    cache,
    sched: list[tuple[int, torch.Tensor]],
    latents: _Latents,
    prefix: torch.Tensor | None,
    num_frames: int | None,
    seed: int,
    times: list[float],
    chunk: int,
    context_noise: float,
    sigma_ctx: float,
    callback: Callable[[StepInfo], None] | None,
    plan: Callable[[int], RecachePlan | None],
    slot_bytes: int,
    euler: bool,
) -> torch.Tensor | None:
    """Prefix chunks (clean pass only), then new chunks (denoise + clean pass)."""
    batch, _, _, h, w = latents.shape
    primed = 0 if prefix is None else prefix.shape[2]
    spans, num_chunks = _spans(num_frames, chunk, primed)
    noise = _Noise(torch.Generator(device="cpu").manual_seed(seed), (batch, model.in_channels, h, w),
                   model.device, sigma_ctx)

    def report(k: int, j: int, t: float, start: int, x0: torch.Tensor, primed_chunk: bool) -> None:
        if callback is not None:
            held = len(cache.entries())
            callback(StepInfo(k, num_chunks, j, len(times), t, start, x0, prompt,
                              int(cache.nbytes()), held, held * slot_bytes, primed_chunk))

    prompt = -1
    text: TextKV | None = None
    for k, (start, n) in enumerate(spans):
        wanted = prompt_at(sched, start)
        if wanted != prompt:
            text = None  # drop the previous prompt's K/V before encoding the next
            text = model.encode_text(sched[wanted][1])
            todo = plan(start) if prompt >= 0 else None
            if todo is not None:
                _recache(model, cache, latents, text, context_noise, noise.clean_input, todo)
            prompt = wanted

        positions = cache.begin_chunk(start, n)
        if start < primed:  # the draws sampling it would have made: one per step (Euler: one)
            skip_noise(noise.gen, (batch, model.in_channels, n, h, w), 1 if euler else len(times))
            x0 = prefix[:, :, start:start + n].to(model.device)
            report(k, len(times) - 1, context_noise, start, x0, True)
        else:
            x0 = denoise_chunk(model, noise(n), text, cache, positions, times, euler,
                               lambda: noise(n), lambda j, t, x: report(k, j, t, start, x, False))
        model.forward_chunk(noise.clean_input(x0), context_noise, text, cache, positions, write=True)
        cache.commit()
        latents.put(start, x0, cache.exact_frames)
    return latents.result()


def denoise_chunk(
    model: CausalWan,
    x: torch.Tensor,
    text: TextKV,
    cache,
    positions: Sequence[float],
    times: Sequence[float],
    euler: bool,
    fresh_noise: Callable[[], torch.Tensor] | None = None,
    on_step: Callable[[int, float, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """Denoise one chunk ``x`` (pure noise) over the warped ``times``; returns its ``x0``.

    The chunk attends to ``cache`` (begun at ``positions``) without writing it.  ``euler``:
    ODE steps to every next level and finally to 0; otherwise the few-step schedule, which
    re-noises each ``x0`` with ``fresh_noise()``.  ``on_step(j, t, x0)`` after every step.
    """
    sigmas = [t / NUM_TRAIN_TIMESTEPS for t in times]
    x0 = x
    for j, (t, sigma) in enumerate(zip(times, sigmas)):
        v = model.forward_chunk(x, t, text, cache, positions, write=False, first_step=j == 0)
        x0 = x - sigma * v
        nxt = sigmas[j + 1] if j + 1 < len(sigmas) else 0.0
        if euler:  # the last step lands on sigma 0: x + (0 - sigma) v == x0
            x = x + (nxt - sigma) * v
        elif j + 1 < len(sigmas):
            x = (1 - nxt) * x0 + nxt * fresh_noise()
        if on_step is not None:
            on_step(j, t, x0)
    return x0


def _recache(model: CausalWan, cache, latents: _Latents, text: TextKV, context_noise: float,
             clean_input, todo: RecachePlan) -> None:
    """Re-run ``todo.frames`` under the new prompt in one pass; the memory keeps ``todo.keep``."""
    frames = list(todo.frames)
    keep = None if todo.keep is None else list(todo.keep)
    positions = cache.begin_recache(frames, keep)
    x = latents.take(frames).to(model.device)
    model.forward_chunk(clean_input(x), context_noise, text, cache, positions, write=True)
    cache.commit()


__all__ = [
    "RolloutInterrupted",
    "StepInfo",
    "WAN_LATENT_MEAN",
    "WAN_LATENT_STD",
    "context_sigma",
    "denoise_chunk",
    "even_timesteps",
    "from_raw",
    "generate",
    "timestep_schedule",
    "to_raw",
]
