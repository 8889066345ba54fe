"""One rollout streamed into a video file: sample a chunk, decode it, write its frames.

Shared by ``demo`` and ``generate``.  The sampler calls back after every denoising step; after a
chunk's last step its clean latents are final, so they are decoded (streaming VAE or a fixed
projection) and appended to the mp4 right there.  Nothing but the current chunk's frames is
ever held in memory on the pixel side.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..rollout.video import Mp4Writer
from .common import Progress

# chunk latents [B, 16, n, h, w] (model space) -> frames [3, T, H, W] in [-1, 1] or uint8 [T, H, W, 3]
FrameFn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class ChunkRecord:
    """Per-chunk measurements of a rollout."""

    chunk: int
    seconds: float  # sampling wall time of the chunk (decode and write excluded)
    kv_bytes: int  # KV bytes the cache has allocated (bounded policies: preallocated)
    entries: int  # memory entries the chunk attended to (the chunk itself not counted)
    held_bytes: int  # KV bytes of what the chunk attended to: entries + the chunk


@dataclass(frozen=True)
class RolloutResult:
    latents: torch.Tensor
    records: list[ChunkRecord]
    video: Path | None
    frames_written: int


def rollout_to_video(model: Any, text: Any, policy: Any, num_frames: int, height: int,
                     width: int, frames_of: FrameFn | None, out: Path | None, fps: float,
                     progress: Progress | None = None, write_from: int = 0,
                     on_chunk: Callable[[Any], None] | None = None,
                     **sample_kw: Any) -> RolloutResult:
    """Run ``fademem_core.generate`` and stream each finished chunk into ``out`` (mp4).

    ``frames_of`` turns a finished chunk's model-space latents into frames (called for every
    chunk, in order, prefix chunks included); ``out=None`` skips the file, and chunks that
    start before latent frame ``write_from`` are decoded but left out of it.  ``on_chunk(info)``
    gets the last :class:`~fademem_core.rollout.sampler.StepInfo` of every chunk.  The mp4 only appears once complete (see :class:`~fademem_core.rollout.video.Mp4Writer`);
    on any error it is removed and the error propagates.
    """
    from ..rollout.sampler import generate

    batch = (text if isinstance(text, torch.Tensor) else text[0][1]).shape[0]
    slot = policy.slot_bytes(model.geometry(batch, height, width))
    writer = Mp4Writer(out, fps=fps) if out is not None else None
    records: list[ChunkRecord] = []
    mark = time.perf_counter()

    def on_step(info: Any) -> None:
        nonlocal mark
        if info.step + 1 < info.num_steps:
            return
        held = (info.memory_entries + info.x0.shape[2]) * slot
        records.append(ChunkRecord(info.chunk, time.perf_counter() - mark, info.kv_bytes,
                                   info.memory_entries, held))
        if frames_of is not None:
            frames = frames_of(info.x0)
            if writer is not None and info.frame_start >= write_from:
                writer.write(frames)
        if on_chunk is not None:
            on_chunk(info)
        if progress is not None:
            progress.update(info.chunk + 1)
        mark = time.perf_counter()  # the decode above is not the next chunk's sampling time

    try:
        latents = generate(model, text, policy, num_frames, height, width, callback=on_step,
                           **sample_kw)
        path = writer.close() if writer is not None else None
    except BaseException:
        if writer is not None:
            writer.abort()
        if progress is not None:
            progress.finish()
        raise
    return RolloutResult(latents, records, path, writer.frames_written if writer else 0)
