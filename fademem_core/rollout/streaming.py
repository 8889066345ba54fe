"""Saving a rollout while it runs: decode each finished chunk, append it to mp4 segments, and keep
what was made when the run stops early.

A chunk's clean latents are final after its last denoising step, so :func:`stream_rollout`
decodes them right there (the streaming Wan VAE keeps its causal cache across chunks, so the
frames equal a one-shot decode of all latents) and appends them to the current mp4.  Only one
chunk of pixels exists at a time, and the rollout keeps no latents beyond what the memory may
re-run at a prompt switch, so memory stays flat however long the video.

Files: segment ``i`` is written (hidden, see :class:`~fademem_core.rollout.video.Mp4Writer`) and moved
to ``name_segment(i)`` when it is full or the run ends.  When the run stops early (Cancel, an
error, out of memory) the frames written so far are closed into a playable file named as partial
(:func:`partial_path`: ``clip_00001_.partial.mp4``), never at the final name.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol

import torch

from .video import Mp4Writer

__all__ = ["SavedVideo", "StreamingSave", "RolloutStopped", "partial_path", "stream_rollout"]

# chunk latents [B, 16, n, h, w] (model space) -> frames [3, T, H, W] in [-1, 1] or uint8 [T, H, W, 3]
FrameFn = Callable[[torch.Tensor], torch.Tensor]


class SaveObserver(Protocol):
    """What watches a :class:`StreamingSave` (``LiveChunks``): frames as written, files as closed."""

    def frames_written(self, segment: int, frames: torch.Tensor) -> None:
        """``frames`` (as the writer took them: ``[3, T, H, W]`` in [-1, 1] or uint8 ``[T, H, W,
        3]``) were appended to segment ``segment`` (0-based)."""

    def segment_closed(self, segment: int, path: Path | None) -> None:
        """Segment ``segment`` was closed at ``path`` (final or partial name; None: dropped)."""


def partial_path(path: str | os.PathLike) -> Path:
    """Where a video cut short goes instead of ``path``: ``a/clip_00001_.mp4`` -> ``a/clip_00001_.partial.mp4``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


@dataclass(frozen=True)
class SavedVideo:
    """What a streaming save left on disk."""

    files: tuple[Path, ...]  # complete segments at their final names, in order
    partial: Path | None  # the segment cut short by a stop (playable), or None
    frames: int  # video frames in all of them

    @property
    def all_files(self) -> tuple[Path, ...]:
        """Every file written, in video order (the partial one last)."""
        return self.files + ((self.partial,) if self.partial is not None else ())


class StreamingSave:
    """Append decoded chunks to mp4 segments of ``segment_frames`` video frames (None: one file).

    ``frames_of`` turns a chunk's model-space latents into frames (the streaming VAE decoder,
    called once per chunk, in order); ``name_segment(i)`` gives the final path of segment ``i``
    (0-based), asked when the segment starts.  Frames are split exactly at segment boundaries and
    the decoder is never reset, so the segments played in order are the one continuous video.
    ``observer`` (e.g. :class:`~fademem_core.rollout.live.LiveChunks`) sees every piece of frames
    as it is appended and every segment as it is closed, to show the video while it grows.
    """

    def __init__(self, frames_of: FrameFn, name_segment: Callable[[int], Path], fps: float = 16.0,
                 segment_frames: int | None = None,
                 metadata: Mapping[str, str] | None = None,
                 observer: SaveObserver | None = None) -> None:
        if segment_frames is not None and (isinstance(segment_frames, bool)
                                           or not isinstance(segment_frames, int)
                                           or segment_frames < 1):
            raise ValueError(f"segment_frames must be an integer >= 1 or None, got {segment_frames!r}")
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps!r}")
        self._frames_of = frames_of
        self._name = name_segment
        self._fps = fps
        self._segment = segment_frames
        self._metadata = dict(metadata or {})
        self._observer = observer
        self._writer: Mp4Writer | None = None
        self._files: list[Path] = []
        self._partial: Path | None = None
        self.frames = 0
        self.last_add_seconds = 0.0  # decode + write time of the latest chunk

    @property
    def files(self) -> tuple[Path, ...]:
        """Segments finished so far."""
        return tuple(self._files)

    def add(self, latents: torch.Tensor, write: bool = True) -> int:
        """Decode one finished chunk and append its frames; returns how many were appended.

        ``write=False`` only decodes (a prefix left out of the file still runs the decoder on)."""
        started = time.perf_counter()
        frames = self._frames_of(latents)
        if not write:
            self.last_add_seconds = time.perf_counter() - started
            return 0
        uint8 = frames.dtype == torch.uint8
        total = frames.shape[0] if uint8 else frames.shape[1]
        done = 0
        while done < total:
            if self._writer is None:
                self._writer = Mp4Writer(self._name(len(self._files)), fps=self._fps,
                                         metadata=self._metadata)
            room = total - done if self._segment is None else self._segment - self._writer.frames_written
            take = min(room, total - done)
            piece = frames[done:done + take] if uint8 else frames[:, done:done + take]
            self._writer.write(piece)
            if self._observer is not None:
                self._observer.frames_written(len(self._files), piece)
            done += take
            if self._segment is not None and self._writer.frames_written == self._segment:
                self._files.append(self._writer.close())
                self._writer = None
                self._tell_closed(len(self._files) - 1, self._files[-1])
        del frames  # one chunk of pixels at a time
        self.frames += total
        self.last_add_seconds = time.perf_counter() - started
        return total

    def _saved(self) -> SavedVideo:
        return SavedVideo(tuple(self._files), self._partial, self.frames)

    def finish(self) -> SavedVideo:
        """Close the current segment at its final name (the run ended as asked)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            self._files.append(writer.close())
            self._tell_closed(len(self._files) - 1, self._files[-1])
        return self._saved()

    def keep_partial(self) -> SavedVideo:
        """Close the current segment under its partial name (the run stopped early)."""
        if self._writer is not None:
            writer, self._writer = self._writer, None
            if writer.frames_written:
                self._partial = writer.close(to=partial_path(writer.path))
            else:
                writer.abort()
            self._tell_closed(len(self._files), self._partial)
        return self._saved()

    def abort(self) -> SavedVideo:
        """Drop the current segment (finished segments stay)."""
        if self._writer is not None:
            self._writer.abort()
            self._writer = None
            self._tell_closed(len(self._files), None)
        return self._saved()

    def _tell_closed(self, segment: int, path: Path | None) -> None:
        if self._observer is not None:
            self._observer.segment_closed(segment, path)


class RolloutStopped(Exception):
    """A streamed rollout ended early; ``saved`` says what was kept, ``cause`` why it stopped."""

    def __init__(self, saved: SavedVideo, cause: BaseException) -> None:
        kept = ", ".join(str(p) for p in saved.all_files) or "nothing"
        super().__init__(f"{type(cause).__name__}: {cause}; kept {saved.frames} frames: {kept}")
        self.saved = saved
        self.cause = cause


def stream_rollout(model: Any, text: Any, policy: Any, num_frames: int | None, height: int,
                   width: int, save: StreamingSave, keep_partial: bool = True,
                   callback: Callable[[Any], None] | None = None,
                   stop_on: tuple[type[BaseException], ...] = (), write_from: int = 0,
                   **sample_kw: Any) -> SavedVideo:
    """Run :func:`~fademem_core.rollout.sampler.generate` and stream every finished chunk into ``save``.

    ``callback(StepInfo)`` runs after every step; after a chunk's last step it runs once the
    chunk is saved (:attr:`StreamingSave.last_add_seconds` says how long that took).  The rollout keeps
    no latents (``keep_latents=False``), so ``num_frames=None`` runs until the callback raises.
    On an exception or Ctrl-C the frames written so far are kept as a partial file
    (``keep_partial``; else dropped) and :class:`RolloutStopped` is raised from the cause; when
    no file was made at all the cause itself propagates.  ``stop_on``: exceptions that are the
    intended end of a run without an end (``num_frames=None``, e.g. ComfyUI's Cancel): the last
    segment is closed at its final name and the saved files are returned.  Chunks starting
    before latent frame ``write_from`` (a prefix) are decoded but not written.
    """
    from .sampler import generate

    def on_step(info: Any) -> None:
        if info.step + 1 == info.num_steps:
            save.add(info.x0, info.frame_start >= write_from)  # first: a Cancel seen by the callback keeps this chunk
        if callback is not None:
            callback(info)

    try:
        generate(model, text, policy, num_frames, height, width, callback=on_step,
                 keep_latents=False, **sample_kw)
        return save.finish()
    except (Exception, KeyboardInterrupt) as exc:
        if num_frames is None and isinstance(exc, stop_on):
            return save.finish()  # the intended end of a run without an end
        try:
            saved = save.keep_partial() if keep_partial else save.abort()
        except Exception:  # the container itself broke: nothing playable to keep
            saved = save.abort()
        if not saved.all_files:
            raise  # nothing was made (e.g. stopped before the first chunk): the cause as it is
        raise RolloutStopped(saved, exc) from exc
    except BaseException:
        save.abort()
        raise
