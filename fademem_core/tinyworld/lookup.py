"""Does a model look up a returning sprite's detail in its memory?  One forward, many returns.

A rollout's own recall scores the returns it happens to draw: about one per video (a model
cannot time a return), so its confidence intervals stay wide.  This probe asks the same
question of every video at once.  Each video is rendered so that one of its sprites returns at
frame ``at`` (:func:`forced_returns`), the true past ``0 .. at`` goes into the memory through a
cache policy, and the model estimates the return's chunk from pure noise (sigma 1: nothing of
the answer is in its input).  The detail it puts under the returning sprite's true footprint
(:func:`detail_under`) is snapped to the codebook and compared with the true one.  Chance is
1/4; a memory that holds the previous appearance can do better only if the model reads it.

An estimate from pure noise is the mean over every chunk the model thinks possible: its
footprint may be faint where the past does not say when a sprite comes back (the world's veil
announces it over the frames before: :data:`~.world.REVEAL`), and the detail is read as a
direction, which a mean keeps.  The consistency benchmark's recall at a forced return
(``bench/bench_consistency.py``) and the model-quality figure of ``bench/bench_tiny_weights.py``.
:func:`forced_entries` asks the opposite question, of a sprite seen for the first time
(:func:`fresh_rates`): there, copying the past is wrong.
"""
from __future__ import annotations

import numpy as np
import torch

from ..model.causal_wan import VAE_SPATIAL
from . import world
from .returns import LOWEST_START, VEILED, clip_at_return, first_entries
from .rollout import commit_true_past
from .spec import CHUNK


def forced_returns(videos: int, at: int = 150, seed: int = 900, text_dim: int = 32,
                   frames: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """``(clips [N, 16, frames, 8, 8], prompts, slots)``: two-sprite scenes ``seed ..``, each
    rendered so that sprite ``slots[i]`` returns at frame ``at`` (a chunk start).  ``frames``
    (default ``at + CHUNK``) only lengthens the clips: the same draws, the same returns."""
    if at % CHUNK or at < LOWEST_START:
        raise ValueError(f"at must be a multiple of {CHUNK} and >= {LOWEST_START}, got {at!r}")
    frames = at + CHUNK if frames is None else frames
    if frames < at + CHUNK:
        raise ValueError(f"frames must be >= at + {CHUNK} = {at + CHUNK}, got {frames!r}")
    rng = np.random.default_rng(seed)
    clips, prompts, slots = [], [], []
    for i in range(videos):
        scene = world.sample_scene(seed + i, num_sprites=2)
        clip, slot = clip_at_return(scene, rng, at, frames)
        clips.append(clip)
        prompts.append(world.scene_prompt(scene, text_dim))
        slots.append(slot)
    return torch.stack(clips), torch.cat(prompts), slots


def forced_entries(videos: int, at: int = 48, seed: int = 900, text_dim: int = 32,
                   ) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
    """``(clips [N, 16, at + CHUNK, 8, 8], prompts, slots, taken)``: fresh content, where the
    memory has nothing to recall.  The first ``videos`` two-sprite scenes from ``seed`` on in
    which a sprite's detail first shows (:func:`~.returns.first_entries`) at or after frame
    ``at``, each rendered from ``entry - at`` so that sprite ``slots[i]``'s detail shows for the
    first time at frame ``at`` (a chunk start): nothing of it is in the past.  ``taken[i]`` is
    the codebook index of the other sprite's detail, which the world never gives the newcomer too: copying it (in view in the
    past of about half the clips) is wrong, and a memory can at most rule that entry out."""
    latest = int(world.FIRST_ENTRY[1]) // CHUNK * CHUNK
    if at % CHUNK or not CHUNK <= at <= latest:
        raise ValueError(f"at must be a multiple of {CHUNK} in {CHUNK} .. {latest} (first entries end at "
                         f"frame {world.FIRST_ENTRY[1]:g}), got {at!r}")
    clips, prompts, slots, taken = [], [], [], []
    horizon = int(world.FIRST_ENTRY[1]) + VEILED + 2  # the latest first entry, then its veil
    for i in range(videos * 50):  # about two scenes in three qualify at the default
        scene = world.sample_scene(seed + i, num_sprites=2)
        late = [(s, t) for s, t in first_entries(scene, horizon) if t >= at]
        if not late:
            continue
        slot, t = late[0]
        clips.append(world.render(scene, t - at, at + CHUNK))
        prompts.append(world.scene_prompt(scene, text_dim))
        slots.append(slot)
        taken.append(world.DETAILS.index(scene.sprites[1 - slot].detail))
        if len(clips) == videos:
            return torch.stack(clips), torch.cat(prompts), slots, taken
    raise ValueError(f"only {len(clips)} of the scenes {seed} .. {seed + videos * 50 - 1} have a first entry "
                     f"at or after frame {at}; asked for {videos}")


def estimate_from_noise(model, text: torch.Tensor, policy, clips: torch.Tensor, at: int,
                        seed: int = 0) -> torch.Tensor:
    """The model's x0 estimate ``[B, 16, CHUNK, h, w]`` of frames ``at .. at + CHUNK`` from pure
    noise, after clean context passes of ``clips[:, :, :at]`` through ``policy``'s cache."""
    return estimates_of(model, text, policy, clips, at, draws=1, seed=seed)[0]


@torch.no_grad()
def estimates_of(model, text: torch.Tensor, policy, clips: torch.Tensor, at: int, draws: int,
                 seed: int = 0) -> torch.Tensor:
    """:func:`draw_estimates` after the true past ``clips[:, :, :at]`` went through ``policy``."""
    b, _, _, h, w = clips.shape
    cache = policy.make_cache(model.geometry(b, h * VAE_SPATIAL, w * VAE_SPATIAL), CHUNK, max_frames=at + CHUNK)
    kv = model.encode_text(text.to(model.device))
    try:
        commit_true_past(model, kv, cache, clips[:, :, :at])
        return draw_estimates(model, kv, cache, at, (b, h, w), draws, seed)
    finally:
        cache.close()


@torch.no_grad()
def draw_estimates(model, kv, cache, at: int, size: tuple[int, int, int], draws: int = 1,
                   seed: int = 0) -> torch.Tensor:
    """``draws`` x0 estimates ``[draws, B, 16, CHUNK, h, w]`` (``size = (B, h, w)`` latents) of
    frames ``at .. at + CHUNK``, each from its own pure noise (one CPU generator seeded with
    ``seed``), on an open ``cache`` that holds frames ``0 .. at``; nothing is written, so a
    rollout can go on from it."""
    b, h, w = size
    gen = torch.Generator().manual_seed(seed)
    positions = cache.begin_chunk(at, CHUNK)
    out = []
    for _ in range(draws):
        x = torch.randn(b, model.in_channels, CHUNK, h, w, generator=gen).to(model.device)
        v = model.forward_chunk(x, torch.full((b,), 1000.0, device=model.device), kv, cache, positions,
                                write=False)
        out.append((x - v).float().cpu())  # flow matching: x = x0 + sigma (noise - x0), v = noise - x0
    return torch.stack(out)


def detail_under(latents: torch.Tensor, footprint: torch.Tensor, slot: int) -> np.ndarray:
    """The 2-number detail ``latents [16, F, h, w]`` carry under ``footprint [F, h, w]`` (the
    sprite's coverage, 0..1) in ``slot``'s detail channels: least squares over every pixel."""
    m = footprint.double()
    chans = list(world.CODE_CHANNELS[slot][2:])
    return ((latents[chans].double() * m).sum((1, 2, 3)) / (m * m).sum()).numpy()


def nearest_entry(detail: np.ndarray) -> int:
    """Index of the codebook entry nearest to ``detail``."""
    return int(((np.asarray(world.DETAILS) - detail) ** 2).sum(1).argmin())


def snapped(chunks: torch.Tensor, clips: torch.Tensor, slots: list[int], at: int) -> list[int]:
    """Per video, the codebook entry nearest to the detail ``chunks [N, 16, CHUNK, h, w]`` carry
    under sprite ``slots[i]``'s true footprint in frames ``at .. at + CHUNK`` of ``clips``."""
    out = []
    for chunk, clip, slot in zip(chunks, clips, slots):
        m = clip[world.MASK_CHANNELS[slot], at:at + CHUNK] / world.MASK_GAIN
        out.append(nearest_entry(detail_under(chunk, m, slot)))
    return out


def lookup_hits(estimates: torch.Tensor, clips: torch.Tensor, slots: list[int], at: int) -> np.ndarray:
    """Per video, 1 when the detail ``estimates`` draw under the returning sprite's true footprint
    snaps to the codebook entry the true clip shows there, else 0."""
    return hit_rates(estimates[None], clips, slots, at)


def hit_rates(estimates: torch.Tensor, clips: torch.Tensor, slots: list[int], at: int) -> np.ndarray:
    """Per video, the share of the draws ``estimates [K, N, ...]`` that :func:`lookup_hits`."""
    want = snapped(clips[:, :, at:at + CHUNK], clips, slots, at)  # the truth's entries, once for all draws
    return _snaps_to(estimates, clips, slots, at, want).mean(axis=0)


def fresh_rates(estimates: torch.Tensor, clips: torch.Tensor, slots: list[int], taken: list[int],
                at: int) -> np.ndarray:
    """Per video, the share of the draws ``estimates [K, N, ...]`` whose detail under the
    newcomer's true footprint (:func:`forced_entries`) snaps to an entry other than ``taken``:
    1 for a model that knows the two never match, 3/4 for a blind draw, 0 for a copy."""
    return (~_snaps_to(estimates, clips, slots, at, taken)).mean(axis=0)


def _snaps_to(estimates: torch.Tensor, clips: torch.Tensor, slots: list[int], at: int,
              entries: list[int]) -> np.ndarray:
    """``[K, N]``: whether draw k of video i snaps (:func:`snapped`) to ``entries[i]``."""
    return np.array([[g == e for g, e in zip(snapped(est, clips, slots, at), entries)] for est in estimates])


def lookup(model, policies: dict[str, object], videos: int = 64, at: int = 150,
           seed: int = 900, draws: int = 1) -> dict[str, np.ndarray]:
    """:func:`hit_rates` of ``model`` under each of ``policies`` (by name), all on the same
    :func:`forced_returns` ``(videos, at, seed)`` and the same ``draws`` noises: per-video
    rates, pairable across policies (``draws=1``: 0/1 hits)."""
    clips, text, slots = forced_returns(videos, at, seed, model.text_dim)
    return {name: hit_rates(estimates_of(model, text, pol, clips, at, draws), clips, slots, at)
            for name, pol in policies.items()}
