"""Prompt schedules: which prompt is in use at which latent frame, and the files that hold them.

In memory a schedule is ``[(start_latent_frame, embeddings), ...]``, first at frame 0, starts
strictly increasing (:func:`parse_prompt_schedule` validates it for ``generate``).

File formats (UTF-8 text):

* **prompt file**: one prompt per line; blank lines and lines starting with ``#`` are skipped.
* **schedule file**: one prompt switch per line, ``START_SECONDS|prompt``; the first line starts
  at 0, start times strictly increase; blank lines and ``#`` comments are skipped.  Example::

      # a 30 s story
      0|a red fox walks through fresh snow, morning light
      10|the fox stops and looks at the camera
      20.5|the fox runs into the forest
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from ..checks import check_int, check_prompt_starts  # the rule is re-exported here
from ..wan import FPS, latent_frame_of_video_frame

__all__ = ["check_prompt_starts", "check_text", "parse_prompt_schedule", "prompt_at", "read_prompt_file",
           "read_schedule_file", "schedule_to_latent_frames"]


def check_text(emb: object, text_dim: int, where: str) -> torch.Tensor:
    if not isinstance(emb, torch.Tensor):
        raise ValueError(f"{where} must be a tensor [B, L, {text_dim}], got {type(emb).__name__}")
    if emb.ndim != 3 or emb.shape[-1] != text_dim or emb.shape[0] < 1 or emb.shape[1] < 1:
        raise ValueError(f"{where} must be [B, L, {text_dim}] (the model's text_dim), got {tuple(emb.shape)}")
    if not emb.is_floating_point():
        raise ValueError(f"{where} must be a floating tensor, got {emb.dtype}")
    if not torch.isfinite(emb).all():
        raise ValueError(f"{where} contains NaN or inf values")
    return emb


def parse_prompt_schedule(text: object, text_dim: int, num_frames: int | None,
                          chunk: int = 1) -> list[tuple[int, torch.Tensor]]:
    """``[(start, emb), ...]`` sorted, first at frame 0, all the same batch, each prompt shown
    (:func:`check_prompt_starts` for chunks of ``chunk`` frames)."""
    if isinstance(text, torch.Tensor):
        return [(0, check_text(text, text_dim, "text"))]
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
        if num_frames is not None and start >= num_frames:
            raise ValueError(f"prompt schedule entry {i} starts at frame {start}, past the video's {num_frames} frames")
        sched.append((start, check_text(item[1], text_dim, f"prompt schedule entry {i} embeddings")))
    starts = [s for s, _ in sched]
    if starts[0] != 0:
        raise ValueError(f"the first prompt of a schedule must start at frame 0, got {starts[0]}")
    if any(b <= a for a, b in zip(starts, starts[1:])):
        raise ValueError(f"prompt schedule start frames must be strictly increasing, got {starts}")
    check_prompt_starts(starts, chunk, num_frames,
                        [f"prompt schedule entry {i} (start frame {s})" for i, s in enumerate(starts)])
    batches = {e.shape[0] for _, e in sched}
    if len(batches) > 1:
        raise ValueError(f"all prompts of a schedule must have the same batch size, got {sorted(batches)}")
    return sched


def prompt_at(sched: list[tuple[int, torch.Tensor]], frame: int) -> int:
    """Index of the prompt in use for a chunk starting at ``frame``."""
    return max(i for i, (s, _) in enumerate(sched) if s <= frame)


def _content_lines(path: str | os.PathLike) -> list[tuple[int, str]]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{p} is not UTF-8 text: {e}") from None
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if s and not s.startswith("#"):
            out.append((n, s))
    return out


def read_prompt_file(path: str | os.PathLike) -> list[str]:
    """Prompts of a prompt file (one per line, blank lines and ``#`` comments skipped)."""
    prompts = [s for _, s in _content_lines(path)]
    if not prompts:
        raise ValueError(f"prompt file {path} holds no prompts")
    return prompts


def read_schedule_file(path: str | os.PathLike) -> list[tuple[float, str]]:
    """``[(start_seconds, prompt), ...]`` from a schedule file (``START_SECONDS|prompt`` lines)."""
    entries: list[tuple[float, str]] = []
    for n, s in _content_lines(path):
        head, sep, prompt = s.partition("|")
        if not sep:
            raise ValueError(f"{path}:{n}: expected 'START_SECONDS|prompt', got {s!r}")
        try:
            start = float(head.strip())
        except ValueError:
            raise ValueError(f"{path}:{n}: start time {head.strip()!r} is not a number") from None
        if not math.isfinite(start) or start < 0:
            raise ValueError(f"{path}:{n}: start time must be a finite number >= 0, got {start!r}")
        prompt = prompt.strip()
        if not prompt:
            raise ValueError(f"{path}:{n}: empty prompt")
        if entries and start <= entries[-1][0]:
            raise ValueError(f"{path}:{n}: start times must increase, {start:g} follows "
                             f"{entries[-1][0]:g}")
        if not entries and start != 0:
            raise ValueError(f"{path}:{n}: the first prompt must start at 0, got {start:g}")
        entries.append((start, prompt))
    if not entries:
        raise ValueError(f"schedule file {path} holds no prompts")
    return entries


def schedule_to_latent_frames(schedule: Sequence[tuple[float, Any]], fps: float = FPS,
                              chunk: int = 3, num_latent_frames: int | None = None,
                              ) -> list[tuple[int, Any]]:
    """Seconds -> start latent frames, snapped to the nearest chunk boundary.

    Video frame ``f`` belongs to latent frame ``ceil(f / 4)`` (the Wan VAE turns latent frame 0
    into one frame and every later one into four).  Prompts switch between chunks, so starts are
    rounded to a multiple of ``chunk``; two entries landing on the same chunk, or one starting
    after the last chunk of ``num_latent_frames`` began, are refused by
    :func:`check_prompt_starts`, naming the times.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk!r}")
    out: list[tuple[int, Any]] = []
    for seconds, item in schedule:
        latent = latent_frame_of_video_frame(seconds * fps)
        out.append((int(round(latent / chunk)) * chunk, item))
    check_prompt_starts([s for s, _ in out], chunk, num_latent_frames,
                        [f"the prompt at {seconds:g}s" for seconds, _ in schedule])
    return out
