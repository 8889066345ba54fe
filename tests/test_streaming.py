"""Streaming save: per-chunk decode into mp4 segments, equal to one-shot decoding; partial files."""
from __future__ import annotations

import os

import av
import numpy as np
import pytest
import torch

from fademem_core import FadeMem, generate
from fademem_core.rollout.sampler import to_raw
from fademem_core.rollout.streaming import (RolloutStopped, StreamingSave, partial_path,
                                    stream_rollout)
from fademem_core.rollout.video import Mp4Writer, StreamingVAEDecoder, read_video_info

SIZE = 32  # pixels: 4x4 latents


@pytest.fixture(scope="module")
def vae():
    from fademem_core.rollout.vae_testing import tiny_wan_vae

    return tiny_wan_vae(seed=3)


@pytest.fixture
def text():
    return torch.randn(1, 4, 32, generator=torch.Generator().manual_seed(2))


def decoded(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def streamer(vae, names, log=None, **kw):
    dec = StreamingVAEDecoder(vae)

    def frames_of(x0):
        if log is not None:
            log.append(x0.shape[2])
        return dec.decode(to_raw(x0[:1]))[0]

    return StreamingSave(frames_of, names, **kw)


def test_partial_path():
    assert partial_path("/o/video/clip_00001_.mp4").as_posix() == "/o/video/clip_00001_.partial.mp4"


def test_streamed_video_is_bit_identical_to_one_shot_decoding(model, vae, text, monkeypatch, tmp_path):
    # compared at the writer: the mp4 encoder (libx264, threaded) need not be byte-deterministic
    # under load, so decoding the two files back is not a fair test of the decode
    written = []
    real = Mp4Writer.write
    monkeypatch.setattr(Mp4Writer, "write", lambda self, f: written.append(f.clone()) or real(self, f))
    policy = FadeMem(budget=3, beta=0.5)
    kw = dict(seed=7, steps=[1000, 500], chunk=3)
    log = []
    save = streamer(vae, lambda i: tmp_path / "stream.mp4", log)
    saved = stream_rollout(model, text, policy, 8, SIZE, SIZE, save, **kw)
    assert saved.files == (tmp_path / "stream.mp4",) and saved.partial is None
    assert saved.frames == 29 and log == [3, 3, 2]  # one chunk of latents per decode
    # reference: every latent at once, one-shot diffusers decode, the same writer
    latents = generate(model, text, policy, 8, SIZE, SIZE, **kw)
    with torch.no_grad():
        frames = vae.decode(to_raw(latents)).sample[0].clamp(-1, 1)
    assert torch.equal(torch.cat(written, dim=1), frames)
    assert read_video_info(tmp_path / "stream.mp4")[0] == 29


def test_frames_handed_to_the_writer_equal_one_shot_decoding(model, vae, text, monkeypatch, tmp_path):
    written = []
    real = Mp4Writer.write
    monkeypatch.setattr(Mp4Writer, "write", lambda self, f: written.append(f.clone()) or real(self, f))
    stream_rollout(model, text, FadeMem(budget=3), 6, SIZE, SIZE,
                   streamer(vae, lambda i: tmp_path / f"s{i}.mp4", segment_frames=7),
                   seed=1, steps=[1000], chunk=2)
    latents = generate(model, text, FadeMem(budget=3), 6, SIZE, SIZE, seed=1, steps=[1000], chunk=2)
    with torch.no_grad():
        ref = vae.decode(to_raw(latents)).sample[0].clamp(-1, 1)
    assert torch.equal(torch.cat(written, dim=1), ref)  # across segment boundaries too
    assert [read_video_info(tmp_path / f"s{i}.mp4")[0] for i in range(3)] == [7, 7, 7]


def test_segments_split_exactly_and_are_each_playable(model, vae, text, tmp_path):
    save = streamer(vae, lambda i: tmp_path / f"seg{i}.mp4", segment_frames=10,
                    metadata={"prompt": '{"1": {}}'})
    saved = stream_rollout(model, text, FadeMem(budget=3), 8, SIZE, SIZE, save, steps=[1000])
    assert [p.name for p in saved.files] == ["seg0.mp4", "seg1.mp4", "seg2.mp4"]
    assert [read_video_info(p) for p in saved.files] == [(10, 32, 32), (10, 32, 32), (9, 32, 32)]
    with av.open(str(saved.files[0])) as c:  # core Save Video's metadata convention
        assert c.metadata.get("prompt") == '{"1": {}}'
    assert sorted(os.listdir(tmp_path)) == ["seg0.mp4", "seg1.mp4", "seg2.mp4"]


@pytest.mark.parametrize("keep", [True, False])
def test_an_error_mid_run_keeps_a_playable_partial(model, vae, text, tmp_path, keep):
    class Boom(RuntimeError):
        pass

    def fail_at_chunk_2(info):
        if info.chunk == 2 and info.step == 0:
            raise Boom("out of memory")

    save = streamer(vae, lambda i: tmp_path / f"v{i}.mp4", segment_frames=5)
    with pytest.raises(RolloutStopped) as caught:
        stream_rollout(model, text, FadeMem(budget=3), 12, SIZE, SIZE, save, keep_partial=keep,
                       callback=fail_at_chunk_2, steps=[1000, 500], chunk=3)
    stop = caught.value
    assert isinstance(stop.cause, Boom) and isinstance(stop.__cause__, Boom)
    # chunks 0 and 1 were saved before the callback saw chunk 2: 1 + 4*5 = 21 frames
    assert [p.name for p in stop.saved.files] == ["v0.mp4", "v1.mp4", "v2.mp4", "v3.mp4"]
    if keep:
        assert stop.saved.partial == tmp_path / "v4.partial.mp4" and stop.saved.frames == 21
        assert read_video_info(stop.saved.partial)[0] == 1
        assert "v4.partial.mp4" in str(stop)
    else:
        assert stop.saved.partial is None
    assert not (tmp_path / "v4.mp4").exists()  # never at the final name
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no hidden leftovers


def test_a_stop_before_the_first_chunk_raises_the_cause_itself(model, vae, text, tmp_path):
    def stop(info):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stream_rollout(model, text, FadeMem(), 6, SIZE, SIZE,
                       streamer(vae, lambda i: tmp_path / "v.mp4"), callback=stop, steps=[1000, 500])
    assert os.listdir(tmp_path) == []


def test_a_run_without_an_end_stops_on_the_given_exception(model, vae, text, tmp_path):
    class Cancel(Exception):
        pass

    def cancel_at_chunk_4(info):
        if info.chunk == 4 and info.step == 0:
            raise Cancel

    save = streamer(vae, lambda i: tmp_path / f"v{i}.mp4", segment_frames=20)
    saved = stream_rollout(model, text, FadeMem(budget=3), None, SIZE, SIZE, save,
                           callback=cancel_at_chunk_4, stop_on=(Cancel,), steps=[1000, 500],
                           chunk=2)
    # chunks 0-3 = 8 latent frames = 29 video frames: one full file and the rest at its final name
    assert saved.partial is None and saved.frames == 29
    assert [read_video_info(p)[0] for p in saved.files] == [20, 9]
    # with a length, the same exception is a stop: the rest is kept as partial
    save = streamer(vae, lambda i: tmp_path / f"w{i}.mp4")
    with pytest.raises(RolloutStopped):
        stream_rollout(model, text, FadeMem(budget=3), 20, SIZE, SIZE, save,
                       callback=cancel_at_chunk_4, stop_on=(Cancel,), steps=[1000, 500], chunk=2)
    assert (tmp_path / "w0.partial.mp4").is_file() and not (tmp_path / "w0.mp4").exists()


def test_streaming_save_validates(tmp_path):
    with pytest.raises(ValueError, match="segment_frames"):
        StreamingSave(lambda x: x, lambda i: tmp_path / "v.mp4", segment_frames=0)
    with pytest.raises(ValueError, match="fps"):
        StreamingSave(lambda x: x, lambda i: tmp_path / "v.mp4", fps=0)
