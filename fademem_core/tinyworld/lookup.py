"""Does a model look up a returning sprite's detail in its memory?  One forward, many returns.

The benchmark's recall scores the returns a rollout happens to draw: about one per video, so
its confidence intervals stay wide.  This probe asks the same question of every video at once.
Each video is rendered so that one of its sprites returns at frame ``at`` (:func:`forced_returns`),
the true past ``0 .. at`` goes into the memory through a cache policy, and the model estimates
the return's chunk from pure noise (sigma 1: nothing of the answer is in its input).  The
detail it puts under the returning sprite's true footprint (:func:`detail_under`) is snapped to
the codebook and compared with the true one.  Chance is 1/4; a memory that holds the previous
appearance can do better only if the model reads it.

An estimate from pure noise is the mean over every chunk the model thinks possible: its
footprint is faint (nothing in the past says when a sprite comes back), but the detail is read
as a direction, which a mean keeps.  A model-quality instrument (``bench/bench_tiny_weights.py``),
never a ranking of policies.
"""
from __future__ import annotations

import numpy as np
import torch

from ..model.causal_wan import VAE_SPATIAL
from . import world
from .returns import LOWEST_START, clip_at_return
from .rollout import commit_true_past
from .spec import CHUNK


def forced_returns(videos: int, at: int = 150, seed: int = 900,
                   text_dim: int = 32) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """``(clips [N, 16, at + CHUNK, 8, 8], prompts, slots)``: two-sprite scenes ``seed ..``, each
    rendered so that sprite ``slots[i]`` returns at frame ``at`` (a chunk start)."""
    if at % CHUNK or at < LOWEST_START:
        raise ValueError(f"at must be a multiple of {CHUNK} and >= {LOWEST_START}, got {at!r}")
    rng = np.random.default_rng(seed)
    clips, prompts, slots = [], [], []
    for i in range(videos):
        scene = world.sample_scene(seed + i, num_sprites=2)
        clip, slot = clip_at_return(scene, rng, at, at + CHUNK)
        clips.append(clip)
        prompts.append(world.scene_prompt(scene, text_dim))
        slots.append(slot)
    return torch.stack(clips), torch.cat(prompts), slots


@torch.no_grad()
def estimate_from_noise(model, text: torch.Tensor, policy, clips: torch.Tensor, at: int,
                        seed: int = 0) -> torch.Tensor:
    """The model's x0 estimate ``[B, 16, CHUNK, h, w]`` of frames ``at .. at + CHUNK`` from pure
    noise, after clean context passes of ``clips[:, :, :at]`` through ``policy``'s cache."""
    b, c, _, h, w = clips.shape
    cache = policy.make_cache(model.geometry(b, h * VAE_SPATIAL, w * VAE_SPATIAL), CHUNK, max_frames=at + CHUNK)
    kv = model.encode_text(text.to(model.device))
    try:
        commit_true_past(model, kv, cache, clips[:, :, :at])
        positions = cache.begin_chunk(at, CHUNK)
        x = torch.randn(b, c, CHUNK, h, w, generator=torch.Generator().manual_seed(seed)).to(model.device)
        v = model.forward_chunk(x, torch.full((b,), 1000.0, device=model.device), kv, cache, positions,
                                write=False)
        return (x - v).float().cpu()  # flow matching: x = x0 + sigma (noise - x0), v = noise - x0
    finally:
        cache.close()


def detail_under(latents: torch.Tensor, footprint: torch.Tensor, slot: int) -> np.ndarray:
    """The 2-number detail ``latents [16, F, h, w]`` carry under ``footprint [F, h, w]`` (the
    sprite's coverage, 0..1) in ``slot``'s detail channels: least squares over every pixel."""
    m = footprint.double()
    chans = list(world.CODE_CHANNELS[slot][2:])
    return ((latents[chans].double() * m).sum((1, 2, 3)) / (m * m).sum()).numpy()


def nearest_entry(detail: np.ndarray) -> int:
    """Index of the codebook entry nearest to ``detail``."""
    return int(((np.asarray(world.DETAILS) - detail) ** 2).sum(1).argmin())


def lookup_hits(estimates: torch.Tensor, clips: torch.Tensor, slots: list[int], at: int) -> np.ndarray:
    """Per video, 1 when the detail ``estimates`` draw under the returning sprite's true footprint
    snaps to the codebook entry the true clip shows there, else 0."""
    hits = []
    for est, clip, slot in zip(estimates, clips, slots):
        m = clip[world.MASK_CHANNELS[slot], at:at + CHUNK] / world.MASK_GAIN
        want = nearest_entry(detail_under(clip[:, at:at + CHUNK], m, slot))
        hits.append(float(nearest_entry(detail_under(est, m, slot)) == want))
    return np.asarray(hits)


def lookup(model, policies: dict[str, object], videos: int = 64, at: int = 150,
           seed: int = 900) -> dict[str, np.ndarray]:
    """:func:`lookup_hits` of ``model`` under each of ``policies`` (by name), all on the same
    :func:`forced_returns` ``(videos, at, seed)``: per-video hits, pairable across policies."""
    clips, text, slots = forced_returns(videos, at, seed, model.text_dim)
    return {name: lookup_hits(estimate_from_noise(model, text, pol, clips, at), clips, slots, at)
            for name, pol in policies.items()}
