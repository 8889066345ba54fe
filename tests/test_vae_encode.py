"""Streaming Wan VAE encode against diffusers' one-shot AutoencoderKLWan.encode."""
from __future__ import annotations

import pytest
import torch

from fademem_core.rollout.vae_encode import StreamingVAEEncoder, latent_frames_for_video



def one_shot(vae, x):
    with torch.no_grad():
        return vae.encode(x).latent_dist.mode()  # diffusers' own encode, the posterior mean


@pytest.fixture(scope="module")
def clip():
    return torch.rand(1, 3, 23, 32, 48, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize("splits", [[23], [1, 4, 4, 14], [3, 5, 2, 13], [1] * 23, [7, 16], [0, 23]])
def test_streaming_encode_equals_one_shot_encode(tiny_vae, clip, splits):
    reference = one_shot(tiny_vae, clip)
    stream = StreamingVAEEncoder(tiny_vae)
    parts, seen = [], 0
    for n in splits:
        out = stream.encode(clip[:, :, seen:seen + n])
        seen += n
        # each call returns exactly the latent frames its frames complete
        assert out.shape[2] == latent_frames_for_video(seen) - sum(p.shape[2] for p in parts)
        parts.append(out)
    streamed = torch.cat(parts, dim=2)
    assert streamed.shape == reference.shape == (1, 16, 6, 4, 6)
    assert torch.equal(streamed, reference)
    assert stream.pending_frames == 2 and stream.frames_seen == 23  # 1 + 4*5 encoded, 2 wait


def test_an_image_is_latent_frame_zero(tiny_vae, clip):
    image = clip[:, :, :1]
    z = StreamingVAEEncoder(tiny_vae).encode(image)
    assert z.shape == (1, 16, 1, 4, 6)
    assert torch.equal(z, one_shot(tiny_vae, image))
    assert torch.equal(z, one_shot(tiny_vae, clip)[:, :, :1])  # a clip starting with it, too


def test_batches_encode_like_one_shot(tiny_vae, clip):
    x = torch.cat([clip[:, :, :9], -clip[:, :, :9]])
    stream = StreamingVAEEncoder(tiny_vae)
    streamed = torch.cat([stream.encode(x[:, :, :4]), stream.encode(x[:, :, 4:])], dim=2)
    assert torch.equal(streamed, one_shot(tiny_vae, x))


def test_close_starts_a_new_video(tiny_vae, clip):
    stream = StreamingVAEEncoder(tiny_vae)
    stream.encode(clip[:, :, :7])
    stream.close()
    assert stream.pending_frames == 0
    assert torch.equal(stream.encode(clip[:, :, 7:12]), one_shot(tiny_vae, clip[:, :, 7:12]))


@pytest.mark.parametrize("frames,match", [
    (torch.zeros(1, 4, 2, 32, 48), r"\[B, 3, T, H, W\]"),
    (torch.zeros(3, 2, 32, 48), r"\[B, 3, T, H, W\]"),
    (torch.zeros(1, 3, 2, 30, 48), "multiples of 8"),
])
def test_bad_frames_are_refused(tiny_vae, frames, match):
    with pytest.raises(ValueError, match=match):
        StreamingVAEEncoder(tiny_vae).encode(frames)


def test_size_may_not_change_within_a_stream(tiny_vae):
    stream = StreamingVAEEncoder(tiny_vae)
    stream.encode(torch.zeros(1, 3, 1, 32, 48))
    with pytest.raises(ValueError, match="changed"):
        stream.encode(torch.zeros(1, 3, 4, 32, 32))


def test_not_a_wan_vae():
    with pytest.raises(TypeError, match="AutoencoderKLWan"):
        StreamingVAEEncoder(object())


def test_latent_frames_for_video():
    assert [latent_frames_for_video(t) for t in (0, 1, 4, 5, 8, 9, 81)] == [0, 1, 1, 2, 2, 3, 21]
