"""The training loops of the tiny world model: episodes through the engine or by teacher forcing.

:func:`run_training` runs a :class:`~.recipe.Recipe`: per episode a batch of ground-truth clips
(:func:`make_episode`), then either :func:`walk_episode` (chunk by chunk through the engine's
:class:`~fademem_core.model.CausalWan` with the recipe's cache policy, one optimizer step per
chunk) or :func:`teacher_forcing_step` (one masked pass per clip or window, one step; a share
of the windows placed at a sprite's return by :func:`return_window_step`).  Two
more kinds of episode distil instead of regress (:mod:`.distill`): :func:`window_step` trains
DMD's teacher on true windows, :func:`distill_step` one DMD iteration of the generator on its
own rollout.  The losses and noise laws are :mod:`.losses`; the weights saved are an
:class:`Ema` of them.
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import world
from .distill import dmd_loss, self_forcing_rollout, true_windows, window_loss
from .losses import (CHANNEL_WEIGHT, CONTEXT_NOISE, FIRST_WINDOW, chunk_loss, commit_chunk, memory_window,
                     own_chunk, teacher_forcing_loss)
from .recipe import Recipe
from .returns import return_window
from .spec import CHUNK, init_transformer


def make_episode(rng: np.random.Generator, batch: int, frames: int, text_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clean clips ``[B, 16, F, 8, 8]`` from frame 0 of random scenes + their prompts."""
    scenes = [world.sample_scene(rng) for _ in range(batch)]
    clips = torch.stack([world.render(s, 0, frames) for s in scenes])
    return clips, torch.cat([world.scene_prompt(s, text_dim) for s in scenes])


def optimizer_step(opt: torch.optim.Optimizer, loss: torch.Tensor, params: list[torch.nn.Parameter],
                   lr: float | None = None) -> None:
    """Backward ``loss``, clip the gradient norm of ``params`` to 1 and step ``opt`` (at ``lr``
    when given; None keeps the optimizer's learning rate): every training step of this module."""
    if lr is not None:
        for g in opt.param_groups:
            g["lr"] = lr
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()


def walk_episode(model, ema, opt, clips, text, policy, gen, lr_of, own: float = 0.0,
                 context_noise: float = CONTEXT_NOISE, weight: torch.Tensor = CHANNEL_WEIGHT,
                 first: float = 0.0, train_from: int = 0) -> list[float]:
    """One episode: every chunk of ``clips`` trained against the memory, then committed to it.

    ``own``: the share of chunks committed as the model's own sample instead of the truth (the
    loss of every chunk still targets the truth), so the memory holds what a rollout would
    write and the model learns to pull a drifting video back to the world instead of
    amplifying its own errors (Self-Forcing's point, with the world's truth as the target).
    ``context_noise``: the top sigma of the commit's light noise (:func:`~.losses.commit_chunk`);
    ``weight``: the loss weight per channel (:func:`~.losses.channel_weight`).
    ``first``: the chance, after each chunk, of one more step on the clips' first chunk alone
    (:func:`first_chunk_step`), at the same learning rate; only the chunks' losses are returned
    (the learning-rate schedule counts chunks).
    ``train_from``: the chunks before this frame are committed (the truth) without a loss, so
    the memory of a long true past costs forward passes only (:func:`return_walk`).
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
            if start < train_from:
                commit_chunk(model, part, text, cache, positions, gen, context_noise)
                continue
            loss = chunk_loss(model, part, text, cache, positions, gen, weight)
            # backward before the clean pass writes into the memory's buffers
            optimizer_step(opt, loss, params, lr_of(len(losses)))
            ema.update(params)
            if own and float(torch.rand(1, generator=gen)) < own:
                part = own_chunk(model, part, text, cache, positions, gen)
            commit_chunk(model, part, text, cache, positions, gen, context_noise)
            losses.append(loss.item())
            # drawn only when asked for, so runs without it keep their random stream
            if first and float(torch.rand(1, generator=gen)) < first:
                first_chunk_step(model, ema, opt, clips, text, gen, lr_of(len(losses) - 1), context_noise, weight)
    finally:
        cache.close()
    return losses


def return_walk(model, ema, opt, rng: np.random.Generator, gen: torch.Generator, batch: int, frames: int,
                policy, lr_of, own: float = 0.0, context_noise: float = CONTEXT_NOISE,
                weight: torch.Tensor = CHANNEL_WEIGHT, first: float = 0.0) -> list[float]:
    """One walk to a sprite's return (:func:`~.returns.return_window`, a 2-chunk window): the true
    past committed through ``policy`` without a loss, then the chunk before the return and the
    return's own chunk trained against the memory it built (FadeMem-FT's light fine-tuning
    aimed at the one chunk a uniform walk reaches about once in a hundred)."""
    clips, text, start, _ = return_window(rng, batch, frames, 2 * CHUNK, 0, model.text_dim)
    return walk_episode(model, ema, opt, clips, text, policy, gen, lr_of, own, context_noise, weight, first,
                        train_from=start)


def first_chunk_step(model, ema, opt, clips, text, gen, lr: float, context_noise: float = CONTEXT_NOISE,
                     weight: torch.Tensor = CHANNEL_WEIGHT) -> float:
    """One optimizer step on the first chunk of ``clips`` alone, drawn from the prompt with no
    memory (:func:`~.losses.teacher_forcing_loss` on frames ``0..CHUNK``).  A walk trains it once
    in ``frames // CHUNK`` chunks, too seldom to keep it: measured, a loop stage undid what a
    first-chunk stage had taught, and a first-chunk stage undid the loop's sprites (README)."""
    params = list(model.transformer.parameters())
    loss = teacher_forcing_loss(model, clips[:, :, :CHUNK], text, gen, context_noise=context_noise, weight=weight)
    optimizer_step(opt, loss, params, lr)
    ema.update(params)
    return loss.item()


def teacher_forcing_step(model, ema, opt, clips, text, gen, lr: float, window: int | None = None,
                         memory: int = 0, rng: np.random.Generator | None = None,
                         corrupt: float = 0.0, context_noise: float = CONTEXT_NOISE,
                         weight: torch.Tensor = CHANNEL_WEIGHT, first: float = FIRST_WINDOW) -> float:
    """One optimizer step of :func:`~.losses.teacher_forcing_loss` on a batch of clips: the whole
    clips, or (``window``) a window of them drawn by :func:`~.losses.memory_window` with
    ``memory`` past frames, a share ``first`` of them at frame 0."""
    params = list(model.transformer.parameters())
    if window is None:
        loss = teacher_forcing_loss(model, clips, text, gen, corrupt=corrupt, context_noise=context_noise,
                                    weight=weight)
    else:
        start, past = memory_window(rng, clips.shape[2], window, memory, first)
        loss = _window_loss(model, clips, text, gen, start, window, past, corrupt, context_noise, weight)
    optimizer_step(opt, loss, params, lr)
    ema.update(params)
    return loss.item()


def return_window_step(model, ema, opt, rng: np.random.Generator, gen: torch.Generator, batch: int, frames: int,
                       lr: float, window: int, memory: int, corrupt: float = 0.0,
                       context_noise: float = CONTEXT_NOISE, weight: torch.Tensor = CHANNEL_WEIGHT) -> float:
    """One teacher-forcing step on a batch of windows at a sprite's return
    (:func:`~.returns.return_window`), ``memory`` frames of the far past in view."""
    params = list(model.transformer.parameters())
    clips, text, start, past = return_window(rng, batch, frames, window, memory, model.text_dim)
    loss = _window_loss(model, clips, text, gen, start, window, past, corrupt, context_noise, weight)
    optimizer_step(opt, loss, params, lr)
    ema.update(params)
    return loss.item()


def _window_loss(model, clips, text, gen, start: int, window: int, past: list[int], corrupt: float,
                 context_noise: float, weight: torch.Tensor) -> torch.Tensor:
    """:func:`~.losses.teacher_forcing_loss` of frames ``start .. start + window`` of ``clips``,
    frames ``past`` of them as the far-past memory."""
    return teacher_forcing_loss(model, clips[:, :, start:start + window], text, gen,
                                clips[:, :, past] if past else None, start, past, corrupt, context_noise, weight)


def window_step(model, ema, opt, rng: np.random.Generator, gen: torch.Generator, batch: int, frames: int,
                lr: float, weight: torch.Tensor = CHANNEL_WEIGHT) -> float:
    """One optimizer step of DMD's window teacher on ``batch`` true windows of ``frames`` frames."""
    params = list(model.transformer.parameters())
    clips, text = true_windows(rng, batch, frames, model.text_dim)
    loss = window_loss(model.transformer, clips, text, gen, weight)
    optimizer_step(opt, loss, params, lr)
    ema.update(params)
    return loss.item()


CRITIC_STEPS = 2  # critic updates per generator update (DMD2's two time-scale rule, kept small)
CRITIC_LR = 2.0  # the critic's learning rate, times the generator's


class Distiller:
    """DMD's pair beside the generator: the frozen window teacher and the critic (initialised as
    the teacher) with its optimizer.  Adam without momentum, as DMD2 and Self-Forcing use."""

    def __init__(self, teacher: Path, lr: float) -> None:
        from ..model.loading import load_model

        self.teacher = load_model(teacher, device="cpu", dtype=torch.float32).transformer.requires_grad_(False)
        self.critic = copy.deepcopy(self.teacher).requires_grad_(True)
        self.opt = torch.optim.AdamW(self.critic.parameters(), lr=CRITIC_LR * lr, weight_decay=0.0,
                                     betas=(0.0, 0.999))
        self.iterations = 0


def rollout_chunks(rng: np.random.Generator, frames: int, rollout: int, first: float = FIRST_WINDOW) -> int:
    """Chunks of one DMD rollout: the first window's ``frames // CHUNK`` with probability
    ``first``, else uniform from that to ``rollout // CHUNK``."""
    window = frames // CHUNK
    if rng.random() < first:
        return window
    return int(rng.integers(window, rollout // CHUNK + 1))


def distill_step(model, ema, opt, dist: Distiller, text: torch.Tensor, policy, frames: int, rollout: int,
                 gen: torch.Generator, rng: np.random.Generator, weight: torch.Tensor = CHANNEL_WEIGHT,
                 first: float = FIRST_WINDOW) -> float | None:
    """One DMD iteration: the generator rolls out ``frames`` to ``rollout`` frames
    (:func:`rollout_chunks`) with ``policy``'s memory; every ``CRITIC_STEPS``-th iteration its
    last ``frames`` frames take a :func:`~.distill.dmd_loss` step; the critic always takes a
    flow-matching step on them (channels weighted by ``weight``).  Returns the generator's loss,
    or None on a critic-only iteration."""
    chunks = rollout_chunks(rng, frames, rollout, first)
    train_generator = dist.iterations % CRITIC_STEPS == CRITIC_STEPS - 1
    dist.iterations += 1
    with torch.set_grad_enabled(train_generator):
        window = self_forcing_rollout(model, text, policy, chunks, frames // CHUNK, gen, rng)
    loss = None
    if train_generator:
        params = list(model.transformer.parameters())
        g = dmd_loss(window, text, dist.teacher, dist.critic, gen)
        optimizer_step(opt, g, params)
        ema.update(params)
        loss = g.item()
    optimizer_step(dist.opt, window_loss(dist.critic, window.detach(), text, gen, weight),
                   list(dist.critic.parameters()))
    return loss


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


def start_model(init: Path | None, seed: int):
    """The model training starts from: the weights at ``init``, or a fresh seeded one."""
    from ..model.causal_wan import CausalWan
    from ..model.loading import load_model

    if init is None:
        model = CausalWan(init_transformer(seed))
    else:
        model = load_model(init, device="cpu", dtype=torch.float32)
    model.transformer.requires_grad_(True).train()
    return model


@dataclass(frozen=True)
class Run:
    """A finished run: the averaged weights, every step's loss, and the episodes it took."""

    weights: torch.nn.Module
    losses: list[float]
    episodes: int
    per_episode: int  # optimizer steps per episode
    seconds: float


def _episode(r: Recipe, model, ema, opt, dist: Distiller | None, pol, rng: np.random.Generator,
             gen: torch.Generator, lr_of) -> list[float]:
    """One episode of ``r``'s kind; the losses of the generator's optimizer steps in it."""
    weight = r.channel_weight()
    if r.policy == "window":
        return [window_step(model, ema, opt, rng, gen, r.batch, r.frames, lr_of(0), weight)]
    # drawn only when asked for, so runs without return windows keep their random stream
    if r.return_windows and rng.random() < r.return_windows:
        if r.walks:
            return return_walk(model, ema, opt, rng, gen, r.batch, r.frames, pol, lr_of, r.own, r.context_noise,
                               weight, r.first_steps)
        return [return_window_step(model, ema, opt, rng, gen, r.batch, r.frames, lr_of(0), r.window,
                                   r.memory_frames, r.corrupt, r.context_noise, weight)]
    clips, text = make_episode(rng, r.batch, r.frames, model.text_dim)
    if dist is not None:  # DMD keeps its learning rate constant
        g = distill_step(model, ema, opt, dist, text, pol, r.frames, r.rollout, gen, rng, weight, r.first_window)
        return [] if g is None else [g]
    if pol is None:
        return [teacher_forcing_step(model, ema, opt, clips, text, gen, lr_of(0), r.window,
                                     r.memory_frames, rng, r.corrupt, r.context_noise, weight, r.first_window)]
    return walk_episode(model, ema, opt, clips, text, pol, gen, lr_of, r.own, r.context_noise, weight,
                        r.first_steps)


def run_training(recipe: Recipe) -> Run:
    """Train as ``recipe`` says (on the current torch threads); prints progress."""
    r = recipe
    pol = r.memory()
    model = start_model(r.init, r.seed)
    tr = model.transformer
    ema = Ema(tr, r.ema_decay)
    dist = None if r.teacher is None else Distiller(r.teacher, r.lr)
    opt = (torch.optim.AdamW(tr.parameters(), lr=r.lr, weight_decay=0.01, betas=(0.9, 0.99)) if dist is None
           else torch.optim.AdamW(tr.parameters(), lr=r.lr, weight_decay=0.0, betas=(0.0, 0.999)))
    rng = np.random.default_rng(r.seed)
    gen = torch.Generator().manual_seed(r.seed)
    per_episode = 1 if pol is None or dist is not None else r.frames // CHUNK
    if r.walks and r.return_windows:  # a return walk takes 2 steps
        per_episode = max(2, round((1 - r.return_windows) * per_episode + r.return_windows * 2))
    total = r.episodes
    t0 = time.time()
    losses: list[float] = []
    done = 0
    while total is None or done < total:
        lr_of = lambda j: lr_at(len(losses) + j, (total or 10**6) * per_episode, r.lr)  # noqa: E731
        losses += _episode(r, model, ema, opt, dist, pol, rng, gen, lr_of)
        done += 1
        if total is None:  # fix the episode count from the measured speed
            total = max(1, int(r.minutes * 60 / (time.time() - t0)))
            print(f"{time.time() - t0:.1f} s/episode -> {total} episodes", flush=True)
        if per_episode > 1 or done % 25 == 0 or done == total:
            recent = losses[-max(per_episode, 25):]  # empty before a distilled generator's first step
            print(f"episode {done}/{total} loss {np.mean(recent) if recent else float('nan'):.4f} "
                  f"({time.time() - t0:.0f} s)", flush=True)
    return Run(ema.module, losses, done, per_episode, round(time.time() - t0, 1))
