"""Teacher-forcing windows placed where a sprite comes back: the moment memory is for.

A sprite's return (the frame its per-video detail shows again, :func:`return_entries`) is the
one frame of a video whose content only a memory of the far past can supply; in uniformly
placed windows it is about one chunk in a hundred, too rare a part of the loss to teach the
lookup (measured: models trained without
these windows drew the detail of a return at chance whatever their memory held; README).
:func:`return_window` renders a batch of clips shifted in time so that each clip's chosen
return lands at the same frame, the window covering the chunk before it and the return's own
chunk, and draws the memory frames from everything before the window: a range that always
holds the previous appearance (every absence is shorter than the past the window sees).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from . import world
from .losses import past_frames
from .spec import CHUNK

SLOWEST = world.SPRITE_SPEED[0]
# longer than any sprite's lap: crossing at the slowest speed plus the longest absence
LAP = int((world.SIZE + world.SPRITE_SIZE) / SLOWEST) + world.MAX_ABSENCE + 1
# the most frames a sprite's detail stays veiled on its way out (and again on its way in)
VEILED = math.ceil(world.REVEAL * world.SPRITE_SIZE / SLOWEST)
# the earliest window start: past it, a return's previous appearance always lies in the frames
# seen (between two showings of a detail: the way out, the absence, the way in)
LOWEST_START = -(-(world.MAX_ABSENCE + 2 * VEILED) // CHUNK) * CHUNK + 2 * CHUNK


def check_return_window(window: int, frames: int) -> None:
    """Raise, naming the values, unless return windows of ``window`` fit clips of ``frames``."""
    if window < 2 * CHUNK or frames < LOWEST_START + window:
        raise ValueError(f"return windows need --window >= {2 * CHUNK} and --frames >= {LOWEST_START} + window, "
                         f"got window {window!r}, frames {frames!r}")


def return_entries(scene: world.Scene, frames: int) -> list[tuple[int, int]]:
    """``(slot, frame)`` of every return in frames ``0 .. frames``: a frame where a sprite's
    detail shows again (``world.REVEAL`` of it in frame) after it showed before and the sprite
    was out of view since (it came in over the frames just before, its detail veiled)."""
    return [(s, t) for s, t, again in _entries(scene, frames) if again]


def first_entries(scene: world.Scene, frames: int) -> list[tuple[int, int]]:
    """``(slot, frame)`` of every first entry in frames ``1 .. frames``: a sprite's detail
    showing for the first time (``world.REVEAL`` of it in frame), veiled in every frame before."""
    return [(s, t) for s, t, again in _entries(scene, frames) if not again]


def _entries(scene: world.Scene, frames: int) -> list[tuple[int, int, bool]]:
    """``(slot, frame, shown before)`` of every frame where a sprite's detail comes into view,
    by frame.  Its x motion is monotone within a lap, so each lap shows it in one run of frames."""
    vis = world.frame_params(scene, 0, frames).visibility >= world.REVEAL  # [F, S]
    out = []
    for s in range(vis.shape[1]):
        v = vis[:, s]
        starts = np.flatnonzero(v[1:] & ~v[:-1]) + 1
        out += [(s, int(t), bool(v[:t].any())) for t in starts]
    return sorted(out, key=lambda e: e[1])


def return_window(rng: np.random.Generator, batch: int, frames: int, window: int, memory: int,
                  text_dim: int) -> tuple[torch.Tensor, torch.Tensor, int, list[int]]:
    """``(clips [B, 16, start + window, 8, 8], prompts, start, past)``: one random return per
    clip at frame ``start + CHUNK + phase`` (``phase`` drawn per batch in ``0 .. CHUNK-1``),
    ``start`` chunk-aligned and drawn so the window ends within ``frames``, and ``memory``
    sorted frames of ``0 .. start`` every chunk of the window sees (:func:`~.losses.past_frames`).
    A clip is its scene rendered from ``return - (start + CHUNK + phase)``, a frame ``>= 0``
    (the video goes on for ever: its sprites loop).
    """
    check_return_window(window, frames)
    start = int(rng.integers(LOWEST_START // CHUNK, (frames - window) // CHUNK + 1)) * CHUNK
    at = start + CHUNK + int(rng.integers(CHUNK))
    clips, prompts = [], []
    for _ in range(batch):
        scene = world.sample_scene(rng)
        clips.append(clip_at_return(scene, rng, at, start + window)[0])
        prompts.append(world.scene_prompt(scene, text_dim))
    return torch.stack(clips), torch.cat(prompts), start, past_frames(rng, start, memory)


def clip_at_return(scene: world.Scene, rng: np.random.Generator, at: int, frames: int) -> tuple[torch.Tensor, int]:
    """``(clip [16, frames, 8, 8], slot)``: ``scene`` rendered from a frame chosen so that one of
    its returns, drawn at random among those at or after ``at``, lands at frame ``at``; ``slot``
    is the sprite that returns there.  Every return at ``at >= LOWEST_START`` has its previous
    appearance inside the clip."""
    # never empty: a sprite's lap (crossing + absence) is shorter than LAP, and it loops forever
    entries = [e for e in return_entries(scene, at + LAP) if e[1] >= at]
    slot, t = entries[int(rng.integers(len(entries)))]
    return world.render(scene, t - at, frames), slot
