"""Distribution matching on the model's own rollouts: Self-Forcing's DMD, in the small.

A regression-trained flow model copies whatever its memory holds, its own errors included, and
nothing pulls a drifting rollout back to the world.  Self-Forcing (Huang et al. 2025) trains
the few-step generator on its *own* rollouts with distribution matching distillation (DMD, Yin
et al. 2024): the generated frames are noised, and the generator is moved along the difference
of two denoisers' estimates,

* the **teacher** ("real score"): a flow model of *true* windows of the world, bidirectional
  over ``frames`` latent frames (:func:`window_loss` trains it, :func:`window_velocity` runs it);
* the **critic** ("fake score"): the same model kept trained on the generator's windows.

Where the generator's windows are less likely than the world's, the two estimates differ and
:func:`dmd_loss` pushes the frames towards the teacher's.  :func:`self_forcing_rollout` makes
the windows through the engine's memory (any cache policy) with the few-step sampler; the
last chunks keep the graph of one randomly chosen exit step each (Self-Forcing's gradient
truncation), the memory is written without gradient.
"""
from __future__ import annotations

import numpy as np
import torch

from ..model.causal_wan import forward_masked, text_kv
from ..rollout.sampler import denoise_chunk, even_timesteps, timestep_schedule
from . import world
from .losses import CHANNEL_WEIGHT, noise_levels, weighted_velocity_error
from .spec import CHUNK, CLIP_FRAMES, SHIFT

GEN_STEPS = 4  # the few-step sampler the generator is distilled for (Self-Forcing's 4 steps)
DMD_SIGMA = (0.02, 0.98)  # DMD's noise levels, uniform in this range


def true_windows(rng: np.random.Generator, batch: int, frames: int, text_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch`` true windows ``[B, 16, frames, 8, 8]`` of random scenes, each starting at a
    random frame of a ``CLIP_FRAMES`` video, and their prompts."""
    scenes = [world.sample_scene(rng) for _ in range(batch)]
    starts = rng.integers(0, CLIP_FRAMES - frames + 1, size=batch)
    clips = torch.stack([world.render(s, int(t), frames) for s, t in zip(scenes, starts)])
    return clips, torch.cat([world.scene_prompt(s, text_dim) for s in scenes])


def window_velocity(transformer: torch.nn.Module, x: torch.Tensor, sigma: torch.Tensor,
                    text: torch.Tensor) -> torch.Tensor:
    """Velocity of a bidirectional window model: every frame of ``x [B, 16, F, h, w]`` at the
    clip's ``sigma [B]``, attending to all frames, at RoPE positions ``0 .. F-1``."""
    b, f = x.shape[0], x.shape[2]
    ts = (sigma.float()[:, None] * 1000.0).expand(b, f)
    return forward_masked(transformer, x, ts, text_kv(transformer, text), [float(i) for i in range(f)], None)


def window_loss(transformer: torch.nn.Module, clean: torch.Tensor, text: torch.Tensor,
                gen: torch.Generator, weight: torch.Tensor = CHANNEL_WEIGHT) -> torch.Tensor:
    """Flow-matching loss of a window model on ``clean`` windows, channels weighted by ``weight``
    (one sigma per window, :func:`~.losses.noise_levels`; target ``noise - clean``)."""
    sig = noise_levels(gen, clean.shape[0])
    noise = torch.randn(clean.shape, generator=gen)
    s = sig[:, None, None, None, None]
    v = window_velocity(transformer, (1 - s) * clean + s * noise, sig, text)
    return weighted_velocity_error(v, noise, clean, weight)


def self_forcing_rollout(model, text: torch.Tensor, policy, chunks: int, grad_chunks: int,
                         gen: torch.Generator, rng: np.random.Generator) -> torch.Tensor:
    """The generator's own rollout of ``chunks`` chunks from the prompt alone; returns the last
    ``grad_chunks`` chunks ``[B, 16, 3 * grad_chunks, 8, 8]``.

    Every chunk runs the few-step schedule (``GEN_STEPS``, x0 then fresh noise): the sampler's
    own :func:`~fademem_core.rollout.sampler.denoise_chunk` up to the exit step, then that step.
    A returned chunk exits at a step drawn uniformly (``rng``) and keeps that one step's graph
    when grad mode is on; every other step and the clean pass writing each chunk's x0 into
    ``policy``'s memory run without gradient.
    """
    if not 1 <= grad_chunks <= chunks:
        raise ValueError(f"need 1 <= grad_chunks <= chunks, got {grad_chunks!r} of {chunks!r}")
    b, h, w = text.shape[0], world.SIZE, world.SIZE
    cache = policy.make_cache(model.geometry(b, h * 8, w * 8), CHUNK, max_frames=chunks * CHUNK)
    times = [float(t) for t in timestep_schedule(even_timesteps(GEN_STEPS), SHIFT)]
    kv = model.encode_text(text)
    noise = lambda: torch.randn(b, model.in_channels, CHUNK, h, w, generator=gen)  # noqa: E731
    out = []
    try:
        for c in range(chunks):
            positions = cache.begin_chunk(c * CHUNK, CHUNK)
            keep = c >= chunks - grad_chunks
            last = int(rng.integers(GEN_STEPS)) if keep else GEN_STEPS - 1
            x = noise()
            if last:  # the steps before the exit: the sampler's own, no graph
                with torch.no_grad():
                    x0 = denoise_chunk(model, x, kv, cache, positions, times[:last], False, noise)
                x = (1 - times[last] / 1000.0) * x0 + times[last] / 1000.0 * noise()
            with torch.set_grad_enabled(torch.is_grad_enabled() and keep):
                x0 = x - times[last] / 1000.0 * model.forward_chunk(x, times[last], kv, cache, positions,
                                                                    write=False, first_step=last == 0)
            with torch.no_grad():
                model.forward_chunk(x0.detach(), 0.0, kv, cache, positions, write=True)
                cache.commit()
            if keep:
                out.append(x0)
    finally:
        cache.close()
    return torch.cat(out, 2)


def dmd_loss(frames: torch.Tensor, text: torch.Tensor, teacher: torch.nn.Module, critic: torch.nn.Module,
             gen: torch.Generator) -> torch.Tensor:
    """DMD's generator loss on ``frames [B, 16, F, h, w]`` (with their graph).

    ``frames`` are noised to a sigma uniform in ``DMD_SIGMA``; the step is the critic's x0
    estimate minus the teacher's, divided per window by the mean distance of the frames from the
    teacher's estimate (DMD's normaliser), and the loss is ``0.5 * mean((frames - sg(frames -
    step))**2)``, whose gradient with respect to the frames is ``step / numel``.
    """
    b = frames.shape[0]
    with torch.no_grad():
        lo, hi = DMD_SIGMA
        sig = lo + (hi - lo) * torch.rand(b, generator=gen)
        s = sig[:, None, None, None, None]
        xt = (1 - s) * frames.detach() + s * torch.randn(frames.shape, generator=gen)
        real = xt - s * window_velocity(teacher, xt, sig, text)
        fake = xt - s * window_velocity(critic, xt, sig, text)
        norm = (frames.detach() - real).abs().mean(dim=(1, 2, 3, 4), keepdim=True).clamp_min(1e-4)
        step = (fake - real) / norm
    return 0.5 * ((frames - (frames - step).detach()) ** 2).mean()
