"""Live playback files (fademem_core.rollout.live): the video so far, playable after every chunk.

Fixtures (conftest.py): ``model`` the tiny causal Wan, ``tiny_vae`` a reduced-width Wan VAE."""
from __future__ import annotations

import av
import numpy as np
import torch

from fademem_core import FadeMem
from fademem_core.rollout.live import LiveChunks
from fademem_core.rollout.sampler import to_raw
from fademem_core.rollout.streaming import RolloutStopped, StreamingSave, stream_rollout
from fademem_core.rollout.video import StreamingVAEDecoder, read_video_info

SIZE = 32


def decoded(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def run(model, vae, tmp_path, frames=8, segment_frames=None, callback=None):
    """A streamed rollout watched by LiveChunks; every playlist it announced, with what each
    file held when it was announced (decoded then: chunk files are deleted later)."""
    seen = []

    def on_change(playlist):
        seen.append([(e, decoded(e.path)) for e in playlist])

    live = LiveChunks(tmp_path / "live", fps=16, on_change=on_change)
    dec = StreamingVAEDecoder(vae)
    save = StreamingSave(lambda x0: dec.decode(to_raw(x0[:1]))[0],
                         lambda i: tmp_path / f"seg_{i}.mp4", segment_frames=segment_frames,
                         observer=live)
    text = torch.randn(1, 4, 32, generator=torch.Generator().manual_seed(2))
    try:
        saved = stream_rollout(model, text, FadeMem(budget=3, beta=0.5), frames, SIZE, SIZE, save,
                               callback=callback, seed=7, steps=[1000, 500], chunk=3)
    except RolloutStopped as stop:
        saved = stop.saved
    return live, saved, seen


def contiguous(playlist) -> bool:
    return all(a.start + a.frames == b.start for a, b in zip(playlist, playlist[1:])) and (
        not playlist or playlist[0].start == 0)


def test_the_video_so_far_grows_one_chunk_at_a_time(model, tiny_vae, tmp_path):
    live, saved, seen = run(model, tiny_vae, tmp_path)
    video = decoded(saved.files[0])
    totals = [sum(e.frames for e, _ in s) for s in seen]
    # chunks of 3, 3, 2 latent frames: 9, 12, 8 video frames; then the file replaces them
    assert totals == [9, 21, 29, 29]
    for playlist in seen[:3]:
        assert contiguous([e for e, _ in playlist]) and not any(e.final for e, _ in playlist)
        for entry, pixels in playlist:
            assert pixels.shape == (entry.frames, SIZE, SIZE, 3)  # complete, playable
            # its pixels are those frames of the video (lossy fast encode: nearest match)
            errors = [np.abs(pixels.astype(float) - video[s:s + entry.frames]).mean()
                      for s in range(0, 29 - entry.frames + 1)]
            assert int(np.argmin(errors)) == entry.start, errors
    (entry, _), = seen[-1]
    assert entry.final and entry.path == saved.files[0] and (entry.start, entry.frames) == (0, 29)
    assert not list((tmp_path / "live").iterdir())  # the chunk files went with the segment
    live.close()
    assert not (tmp_path / "live").exists() and saved.files[0].exists()


def test_finished_segments_replace_their_chunks(model, tiny_vae, tmp_path):
    live, saved, seen = run(model, tiny_vae, tmp_path, frames=11, segment_frames=16)
    assert [read_video_info(p)[0] for p in saved.files] == [16, 16, 9]
    for playlist in seen:
        entries = [e for e, _ in playlist]
        assert contiguous(entries)
        finals = [e for e in entries if e.final]
        assert entries[:len(finals)] == finals  # finished files first, then chunk files
        assert [e.path for e in finals] == list(saved.files[:len(finals)])
    assert [(e.start, e.frames) for e in live.playlist()] == [(0, 16), (16, 16), (32, 9)]
    assert live.frames == 41


def test_a_stop_leaves_the_partial_file_in_the_playlist(model, tiny_vae, tmp_path):
    def stop(info):
        if info.chunk == 2:
            raise RuntimeError("boom")

    live, saved, seen = run(model, tiny_vae, tmp_path, frames=9, callback=stop)
    assert saved.partial is not None and saved.files == ()
    (entry,) = live.playlist()
    assert entry.final and entry.path == saved.partial and entry.frames == 21 == saved.frames
    assert not list((tmp_path / "live").iterdir())
