"""One rollout streamed into a video file: sample a chunk, decode it, write its frames.

Shared by ``demo`` and ``generate``.  The writing is :func:`fademem_core.rollout.streaming.stream_rollout`:
after a chunk's last step its clean latents are final, so they are decoded (streaming VAE or a
fixed projection) and appended to the mp4 right there.  Nothing but the current chunk's frames
is ever held in memory on the pixel side, and no latents are kept.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from ..rollout.streaming import FrameFn, StreamingSave, stream_rollout
from .common import Progress


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
    latents: torch.Tensor | None  # the clean latents (keep_latents), else None
    records: list[ChunkRecord]
    video: Path | None
    frames_written: int


def rollout_to_video(model: Any, text: Any, policy: Any, num_frames: int, height: int,
                     width: int, frames_of: FrameFn | None, out: Path | None, fps: float,
                     progress: Progress | None = None, keep_partial: bool = False,
                     keep_latents: bool = True, write_from: int = 0,
                     on_chunk: Callable[[Any], None] | None = None,
                     **sample_kw: Any) -> RolloutResult:
    """Run ``fademem_core.generate`` and stream each finished chunk into ``out`` (mp4).

    ``frames_of``: a finished chunk's model-space latents -> frames (every chunk, in order,
    prefix chunks too); ``out=None`` writes no file; chunks starting before latent frame
    ``write_from`` are decoded, not written.  ``on_chunk(info)``: each chunk's last ``StepInfo``.
    The mp4 appears at ``out`` once complete; on an error or Ctrl-C the frames so far stay in
    ``<out>.partial.mp4`` if ``keep_partial`` (else removed) and ``RolloutStopped`` says so.
    ``keep_latents``: gather the new chunks' latents (a long ``generate`` passes False).
    """
    from ..rollout.sampler import generate

    batch = (text if hasattr(text, "shape") else text[0][1]).shape[0]
    slot = policy.slot_bytes(model.geometry(batch, height, width))
    save = (StreamingSave(frames_of, lambda _segment: out, fps)
            if out is not None and frames_of is not None else None)
    records: list[ChunkRecord] = []
    chunks: list[torch.Tensor] = []
    mark = time.perf_counter()

    def on_step(info: Any) -> None:
        nonlocal mark
        if info.step + 1 < info.num_steps:
            return
        if keep_latents and (not info.primed or sample_kw.get("include_prefix")):
            chunks.append(info.x0.float().cpu())  # what generate itself would return
        if save is None and frames_of is not None:
            frames_of(info.x0)  # no file: the frames are only shown to the caller
        saving = save.last_add_seconds if save is not None else 0.0
        held = (info.memory_entries + info.x0.shape[2]) * slot
        records.append(ChunkRecord(info.chunk, time.perf_counter() - mark - saving, info.kv_bytes,
                                   info.memory_entries, held))
        if on_chunk is not None:
            on_chunk(info)
        if progress is not None:
            progress.update(info.chunk + 1)
        mark = time.perf_counter()

    try:
        if save is None:
            generate(model, text, policy, num_frames, height, width, callback=on_step,
                     keep_latents=False, **sample_kw)
            saved = None
        else:
            saved = stream_rollout(model, text, policy, num_frames, height, width, save,
                                   keep_partial=keep_partial, callback=on_step,
                                   write_from=write_from, **sample_kw)
    except BaseException:
        if progress is not None:
            progress.finish()
        raise
    latents = torch.cat(chunks, dim=2) if keep_latents else None
    if saved is None:
        return RolloutResult(latents, records, None, 0)
    return RolloutResult(latents, records, saved.files[0], saved.frames)
