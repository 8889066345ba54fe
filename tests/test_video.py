"""Streaming Wan VAE decode and the mp4 writer."""
from __future__ import annotations

import os

import pytest
import torch

from fademem_core.rollout.video import (LatentPreviewDecoder, Mp4Writer, StreamingVAEDecoder,
                                read_video_info)
from fademem_core.wan import video_frames_for_latents


@pytest.fixture(scope="module")
def tiny_vae():
    from diffusers import AutoencoderKLWan

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True])
    return vae.eval()


@pytest.mark.parametrize("splits", [[7], [1, 3, 3], [3, 3, 1], [2, 2, 2, 1], [1] * 7])
def test_streaming_decode_equals_full_decode(tiny_vae, splits):
    torch.manual_seed(1)
    z = torch.randn(1, 16, sum(splits), 4, 6)
    with torch.no_grad():
        reference = tiny_vae.decode(z).sample  # diffusers' own one-shot decode
    stream = StreamingVAEDecoder(tiny_vae)
    parts, start = [], 0
    for n in splits:
        out = stream.decode(z[:, :, start:start + n])
        # each call returns exactly the frames its latents complete
        assert out.shape[2] == video_frames_for_latents(start + n) - video_frames_for_latents(start)
        parts.append(out)
        start += n
    streamed = torch.cat(parts, dim=2)
    assert streamed.shape == reference.shape == (1, 3, 25, 32, 48)
    assert torch.equal(streamed, reference)


def test_reset_starts_a_new_video(tiny_vae):
    torch.manual_seed(2)
    a, b = torch.randn(1, 16, 3, 4, 4), torch.randn(1, 16, 2, 4, 4)
    stream = StreamingVAEDecoder(tiny_vae)
    stream.decode(a)
    stream.reset()
    with torch.no_grad():
        assert torch.equal(stream.decode(b), tiny_vae.decode(b).sample)


def test_decoder_rejects_wrong_channels(tiny_vae):
    with pytest.raises(ValueError, match="16"):
        StreamingVAEDecoder(tiny_vae).decode(torch.zeros(1, 4, 2, 4, 4))


def test_frames_for_latents():
    assert [video_frames_for_latents(n) for n in (0, 1, 2, 21, 240)] == [0, 1, 5, 81, 957]


def test_writer_writes_all_frames(tmp_path):
    path = tmp_path / "v.mp4"
    with Mp4Writer(path, fps=8) as w:
        w.write(torch.rand(3, 5, 32, 48) * 2 - 1)
        w.write(torch.randint(0, 255, (4, 32, 48, 3), dtype=torch.uint8))
    assert path.is_file()
    assert read_video_info(path) == (9, 32, 48)
    assert os.listdir(tmp_path) == ["v.mp4"]  # no temp file left


def test_writer_leaves_nothing_on_failure(tmp_path):
    path = tmp_path / "v.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with Mp4Writer(path) as w:
            w.write(torch.zeros(3, 2, 16, 16))
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_writer_keeps_existing_file_on_failure(tmp_path):
    path = tmp_path / "v.mp4"
    path.write_bytes(b"old")
    with pytest.raises(ValueError, match="size changed"):
        with Mp4Writer(path) as w:
            w.write(torch.zeros(3, 2, 16, 16))
            w.write(torch.zeros(3, 2, 32, 16))
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["v.mp4"]


def test_writer_rejects_bad_paths(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        Mp4Writer(tmp_path / "missing" / "v.mp4")
    with pytest.raises(ValueError, match=".mp4"):
        Mp4Writer(tmp_path / "v.avi")
    with pytest.raises(ValueError, match="even"):
        with Mp4Writer(tmp_path / "odd.mp4") as w:
            w.write(torch.zeros(3, 1, 15, 16))
    assert not (tmp_path / "odd.mp4").exists()


def test_writer_leaves_nothing_when_the_container_cannot_open(tmp_path, monkeypatch):
    import av

    def refuse(*args, **kwargs):
        raise av.error.FFmpegError(1, "no muxer")

    monkeypatch.setattr(av, "open", refuse)
    with pytest.raises(av.error.FFmpegError):
        Mp4Writer(tmp_path / "v.mp4")
    assert os.listdir(tmp_path) == []  # the temp file made for the container is gone too


def test_writer_with_no_frames_fails(tmp_path):
    with pytest.raises(ValueError, match="no frames"):
        Mp4Writer(tmp_path / "v.mp4").close()
    assert os.listdir(tmp_path) == []


def test_latent_preview_shape_and_range():
    out = LatentPreviewDecoder().decode(torch.randn(2, 16, 3, 4, 5) * 10)
    assert out.shape == (2, 3, 3, 32, 40)
    assert out.min() >= -1 and out.max() <= 1
    # fixed projection: the same latents always give the same picture
    z = torch.randn(1, 16, 1, 2, 2)
    assert torch.equal(LatentPreviewDecoder().decode(z), LatentPreviewDecoder().decode(z))


@pytest.mark.parametrize("fps", [float("inf"), float("nan"), 0, -1, 1e-9, 1e9, "16", True])
def test_writer_refuses_a_bad_fps_at_once(tmp_path, fps):
    with pytest.raises(ValueError, match="fps must be a number in"):
        Mp4Writer(tmp_path / "v.mp4", fps=fps)
    assert os.listdir(tmp_path) == []


def test_a_writer_never_closed_leaves_no_partial_file(tmp_path):
    import gc

    w = Mp4Writer(tmp_path / "v.mp4")
    w.write(torch.zeros(3, 2, 16, 16))
    assert any(name.endswith(".partial.mp4") for name in os.listdir(tmp_path))
    del w
    gc.collect()
    assert os.listdir(tmp_path) == []


def test_a_closed_writers_video_survives_the_writer(tmp_path):
    import gc

    w = Mp4Writer(tmp_path / "v.mp4")
    w.write(torch.zeros(3, 2, 16, 16))
    w.close()
    del w
    gc.collect()
    assert os.listdir(tmp_path) == ["v.mp4"] and read_video_info(tmp_path / "v.mp4") == (2, 16, 16)


# ----------------------------------------------------------------------------- original layout
def test_original_layout_vae_decodes_like_the_diffusers_one():
    """wan_2.1_vae.safetensors' layout (core Load VAE's) -> AutoencoderKLWan, tensors shared."""
    from fademem_core.rollout.vae_testing import original_vae_state_dict, tiny_wan_vae
    from fademem_core.rollout.video import wan_vae_from_original

    reference = tiny_wan_vae(seed=4)
    weights = original_vae_state_dict(reference)
    assert "decoder.middle.0.residual.0.gamma" in weights and "conv2.weight" in weights
    vae = wan_vae_from_original(weights)
    assert vae.decoder.conv_in.weight.data_ptr() == weights["decoder.conv1.weight"].data_ptr()
    assert vae.config.dim_mult == [1, 2, 4, 4] and vae.config.base_dim == 4
    z = torch.randn(1, 16, 5, 4, 4, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = reference.decode(z).sample
    stream = StreamingVAEDecoder(vae)
    got = torch.cat([stream.decode(z[:, :, :2]), stream.decode(z[:, :, 2:])], dim=2)
    assert torch.equal(got, expected)


def test_original_layout_vae_refuses_other_weights():
    from fademem_core.rollout.vae_testing import original_vae_state_dict, tiny_wan_vae
    from fademem_core.rollout.video import wan_vae_from_original

    with pytest.raises(ValueError, match="wan_2.1_vae"):
        wan_vae_from_original({"encoder.conv_in.weight": torch.zeros(1)})  # diffusers names
    weights = original_vae_state_dict(tiny_wan_vae())
    with pytest.raises(ValueError, match="Wan 2.2"):
        wan_vae_from_original({**weights, "decoder.upsamples.0.upsamples.0.residual.2.weight": 0})
    del weights["decoder.head.2.weight"]
    with pytest.raises(ValueError, match="do not match the Wan 2.1 layout"):
        wan_vae_from_original(weights)
