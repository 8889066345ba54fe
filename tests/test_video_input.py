"""Video/image files -> frames at the requested size and 16 fps -> raw Wan latents."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from fademem_core.rollout.video import Mp4Writer
from fademem_core.rollout.video_input import encode_file, fit_frame, read_frames, resample



def write_levels(path, levels, fps, size=(32, 48)):
    """An mp4 whose frame i is a flat grey at ``levels[i]`` (survives the codec to a few levels)."""
    with Mp4Writer(path, fps=fps) as w:
        for v in levels:
            w.write(torch.full((1, size[0], size[1], 3), v, dtype=torch.uint8))
    return path


# ---------------------------------------------------------------------------- fps
@pytest.mark.parametrize("source_fps", [30.0, 16.0, 8.0, 24.0])
def test_resample_is_sample_and_hold(source_fps):
    """Output frame k shows the last source frame at time k/16: index floor(k * fps / 16)."""
    n = 40
    out = list(resample(((i / source_fps, i) for i in range(n)), 16.0))
    duration = n / source_fps
    expected = [math.floor(k * source_fps / 16 + 1e-9) for k in range(math.ceil(duration * 16 - 1e-9))]
    assert out == expected


def test_resample_uses_timestamps_not_counts():
    """A variable frame rate clip: a frame held for half a second is shown 8 times."""
    times = [0.0, 0.0625, 0.5625, 0.625]
    assert list(resample(zip(times, "abcd"), 16.0)) == ["a", "b"] + ["b"] * 7 + ["c", "d"]


def test_video_file_is_read_at_16_fps(tmp_path):
    levels = [10 * i + 20 for i in range(20)]  # 20 frames at 32 fps = 0.625 s
    path = write_levels(tmp_path / "clip.mp4", levels, fps=32)
    frames = list(read_frames(path, 32, 48))
    assert len(frames) == 10
    got = [float(f.mean()) for f in frames]
    assert np.allclose(got, levels[::2], atol=3)  # every other frame, in order


# ---------------------------------------------------------------------------- size
def test_fit_frame_covers_and_crops_the_centre():
    img = np.zeros((50, 100, 3), np.uint8)
    img[:, :25] = (255, 0, 0)  # left quarter red, then green, blue, white quarters
    img[:, 25:50] = (0, 255, 0)
    img[:, 50:75] = (0, 0, 255)
    img[:, 75:] = 255
    out = fit_frame(Image.fromarray(img), 32, 32)  # 100x50 -> 64x32 -> centre 32 columns
    assert out.shape == (32, 32, 3) and out.dtype == np.uint8
    assert tuple(out[16, 2]) == (0, 255, 0) and tuple(out[16, 29]) == (0, 0, 255)


def test_fit_frame_upscales_a_small_image():
    out = fit_frame(Image.new("RGB", (8, 4), (9, 99, 199)), 48, 64)
    assert out.shape == (48, 64, 3) and tuple(out[0, 0]) == (9, 99, 199)


# ---------------------------------------------------------------------------- encode
def test_an_image_encodes_to_latent_frame_zero(tmp_path, tiny_vae):
    arr = (np.random.default_rng(0).random((40, 60, 3)) * 255).astype(np.uint8)
    Image.fromarray(arr).save(tmp_path / "pic.png")
    res = encode_file(tiny_vae, tmp_path / "pic.png", 32, 48)
    assert res.latents.shape == (1, 16, 1, 4, 6) and res.source_fps is None
    pixels = torch.from_numpy(fit_frame(Image.fromarray(arr), 32, 48)).permute(2, 0, 1)[None, :, None]
    with torch.no_grad():
        ref = tiny_vae.encode(pixels.float() / 127.5 - 1).latent_dist.mode()
    assert torch.equal(res.latents, ref)


def test_a_video_encodes_like_one_shot_in_small_pieces(tmp_path, tiny_vae):
    path = write_levels(tmp_path / "clip.mp4", [7 * i for i in range(23)], fps=16)
    res = encode_file(tiny_vae, path, 32, 48, piece=3)
    frames = np.stack(list(read_frames(path, 32, 48)))
    x = torch.from_numpy(frames).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    with torch.no_grad():
        ref = tiny_vae.encode(x).latent_dist.mode()
    assert res.frames_read == 23 and res.frames_dropped == 2 and res.source_fps == 16
    assert torch.equal(res.latents, ref)


# ---------------------------------------------------------------------------- errors
def test_missing_file(tiny_vae, tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        encode_file(tiny_vae, tmp_path / "nope.mp4", 32, 48)


@pytest.mark.parametrize("name,match", [("bad.mp4", "cannot open .* as a video"),
                                        ("bad.png", "cannot read .* as an image")])
def test_unreadable_files(tiny_vae, tmp_path, name, match):
    (tmp_path / name).write_bytes(b"this is not a picture or a video")
    with pytest.raises(ValueError, match=match):
        encode_file(tiny_vae, tmp_path / name, 32, 48)


def test_bad_size(tiny_vae, tmp_path):
    with pytest.raises(ValueError, match="multiples of 16"):
        encode_file(tiny_vae, tmp_path / "any.png", 30, 48)
