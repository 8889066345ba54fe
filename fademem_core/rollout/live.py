"""Watching a streamed video while it is made: the video so far as a list of playable files.

A streaming save appends to one long mp4 per segment, and no player opens an mp4 before it is
closed (its index is written last).  So the live view gets every chunk's frames, the same uint8
pixels the segment receives, as a short complete mp4 of its own (fast preset: these files only
live until their segment is done).  When a segment's file is closed, at its final or its partial
name, its chunk files are deleted and the segment itself stands in for them.  At any moment
:meth:`LiveChunks.playlist` is the video so far in order: the closed segments, then the chunks of
the open one, each with its first video frame and its frame count.  Disk use is bounded by one
segment's chunks (plus the segments themselves).
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .video import Mp4Writer

__all__ = ["LiveChunks", "LiveEntry"]

LIVE_PRESET = "ultrafast"  # a chunk file is made once per chunk, watched once, then deleted


@dataclass(frozen=True)
class LiveEntry:
    """One playable file of the video so far."""

    path: Path
    start: int  # first video frame it holds
    frames: int  # video frames it holds
    final: bool  # a closed segment (kept) rather than a chunk file (deleted later)


class LiveChunks:
    """The observer of a :class:`~fademem_core.rollout.streaming.StreamingSave` for live viewing.

    ``folder`` (created, and removed by :meth:`close`) holds the chunk files; ``on_change(playlist)``
    runs after every change, e.g. to tell a browser what it can play now.
    """

    def __init__(self, folder: str | Path, fps: float = 16.0,
                 on_change: Callable[[tuple[LiveEntry, ...]], None] | None = None) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._fps = fps
        self._on_change = on_change
        self._closed: list[LiveEntry] = []
        self._open: dict[int, list[LiveEntry]] = {}  # segment -> its chunk files, in order
        self._made = 0  # chunk files made (names never repeat within a run)
        self._end = 0  # video frames seen so far

    def playlist(self) -> tuple[LiveEntry, ...]:
        """The video so far: closed segments, then the open segments' chunk files, in order."""
        return tuple(self._closed) + tuple(e for seg in sorted(self._open) for e in self._open[seg])

    @property
    def frames(self) -> int:
        """Video frames in the playlist."""
        return sum(e.frames for e in self.playlist())

    def frames_written(self, segment: int, frames: torch.Tensor) -> None:
        """``frames`` (``[3, T, H, W]`` in [-1, 1] or uint8 ``[T, H, W, 3]``) were appended to
        segment ``segment``."""
        count = int(frames.shape[0] if frames.dtype == torch.uint8 else frames.shape[1])
        if count == 0:
            return
        self._made += 1
        path = self.folder / f"chunk_{self._made:06}.mp4"
        with Mp4Writer(path, fps=self._fps, preset=LIVE_PRESET) as mp4:
            mp4.write(frames)
        self._open.setdefault(segment, []).append(LiveEntry(path, self._end, count, final=False))
        self._end += count
        self._changed()

    def segment_closed(self, segment: int, path: Path | None) -> None:
        """Segment ``segment`` was closed at ``path`` (None: dropped, its frames are gone)."""
        chunks = self._open.pop(segment, [])
        for entry in chunks:
            entry.path.unlink(missing_ok=True)
        if chunks and path is not None:
            start, end = chunks[0].start, chunks[-1].start + chunks[-1].frames
            self._closed.append(LiveEntry(Path(path), start, end - start, final=True))
        self._changed()

    def close(self) -> None:
        """Delete the chunk files left and the folder (the closed segments stay)."""
        self._open.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _changed(self) -> None:
        if self._on_change is not None:
            self._on_change(self.playlist())
