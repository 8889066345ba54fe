"""Reading frames: a tiny mp4 written with av, latent files in every supported format."""
from __future__ import annotations

import pickle

import av
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from fademem_core.analysis.video_io import (image_to_frames, is_latent_file, latent_to_frames,
                                   load_frames, parse_size, read_latent, read_video)


def write_mp4(path, frames: int = 12, width: int = 64, height: int = 48) -> np.ndarray:
    """A moving diagonal pattern; returns the RGB frames written [T, H, W, 3] uint8."""
    yy, xx = np.mgrid[0:height, 0:width]
    out = []
    with av.open(str(path), "w") as box:
        stream = box.add_stream("mpeg4", rate=12)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"qscale": "2"}
        for t in range(frames):
            g = (128 + 100 * np.sin((xx + yy + 3 * t) / 6.0)).astype(np.uint8)
            rgb = np.stack([g, g, g], axis=2)
            out.append(rgb)
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                box.mux(packet)
        for packet in stream.encode():
            box.mux(packet)
    return np.stack(out)


@pytest.fixture
def mp4(tmp_path):
    path = tmp_path / "clip.mp4"
    return path, write_mp4(path)


def test_read_video_gray_matches_written_frames(mp4):
    path, written = mp4
    x = read_video(path)
    assert x.shape == (12, 1, 48, 64) and x.dtype == np.float32
    assert 0.0 <= x.min() and x.max() <= 1.0
    # lossy codec: close to the grey pattern written, on average
    assert np.abs(x[:, 0] - written[..., 0] / 255.0).mean() < 0.03


def test_read_video_rgb_resize_and_max_frames(mp4):
    path, _ = mp4
    assert read_video(path, gray=False).shape == (12, 3, 48, 64)
    assert read_video(path, size=32).shape == (12, 1, 24, 32)       # longer side -> 32
    assert read_video(path, size="40x30").shape == (12, 1, 30, 40)
    assert read_video(path, max_frames=5).shape[0] == 5
    assert load_frames(str(path), max_frames=3).shape == (3, 1, 48, 64)


def test_read_video_errors(tmp_path, mp4):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_video(tmp_path / "missing.mp4")
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all" * 10)
    with pytest.raises(ValueError, match="cannot open"):
        read_video(junk)
    with pytest.raises(ValueError, match="max_frames"):
        read_video(mp4[0], max_frames=0)
    with pytest.raises(ValueError, match="size"):
        parse_size("axb")
    with pytest.raises(ValueError, match="at least 8"):
        parse_size(4)


@pytest.fixture
def latent():
    return torch.randn(16, 7, 6, 10)


def _expected(lat):
    return lat.permute(1, 0, 2, 3)


@pytest.mark.parametrize("name, batch", [("a.safetensors", False), ("b.safetensors", True),
                                         ("c.sft", False)])
def test_read_safetensors_latent(tmp_path, latent, name, batch):
    t = latent[None] if batch else latent
    save_file({"samples": t.contiguous()}, str(tmp_path / name))
    out = read_latent(tmp_path / name)
    assert out.shape == (7, 16, 6, 10) and torch.equal(out, _expected(latent))


def test_read_comfyui_latent_file(tmp_path, latent):
    path = tmp_path / "x.latent"
    save_file({"latent_tensor": latent[None].contiguous(),
               "latent_format_version_0": torch.tensor([])}, str(path))
    assert torch.equal(read_latent(path), _expected(latent))
    assert is_latent_file(str(path)) and not is_latent_file("clip.mp4")


def test_read_pt_latent_tensor_and_dict(tmp_path, latent):
    torch.save(latent, tmp_path / "t.pt")
    torch.save({"samples": latent[None]}, tmp_path / "d.pth")
    assert torch.equal(read_latent(tmp_path / "t.pt"), _expected(latent))
    assert torch.equal(load_frames(str(tmp_path / "d.pth"), max_frames=4),
                       _expected(latent)[:4])


class _Evil:
    def __reduce__(self):
        return (print, ("pickle code ran",))


def test_pt_is_loaded_weights_only(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"samples": _Evil()}, path)
    with pytest.raises(ValueError, match="needs code execution to load; refused") as e:
        read_latent(path)
    assert "it calls print" in str(e.value) and "weights_only` set to `False" not in str(e.value)
    assert not isinstance(e.value, pickle.UnpicklingError)


def test_truncated_pt_is_a_valueerror(tmp_path, latent):
    whole = tmp_path / "t.pt"
    torch.save(latent, whole)
    cut = tmp_path / "cut.pt"
    cut.write_bytes(whole.read_bytes()[:200])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        read_latent(cut)


def test_latent_errors(tmp_path, latent):
    save_file({"a": latent.contiguous(), "b": latent.clone()}, str(tmp_path / "two.safetensors"))
    with pytest.raises(ValueError, match="latent_tensor"):
        read_latent(tmp_path / "two.safetensors")
    torch.save(torch.zeros(3, 4), tmp_path / "flat.pt")
    with pytest.raises(ValueError, match=r"\[C, T, h, w\]"):
        read_latent(tmp_path / "flat.pt")
    with pytest.raises(ValueError, match="batch_index"):
        latent_to_frames(latent[None], batch_index=2)
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(ValueError, match="safetensors"):
        read_latent(tmp_path / "bad.safetensors")
    with pytest.raises(FileNotFoundError):
        read_latent(tmp_path / "none.latent")


def test_image_to_frames_luma_and_rgb():
    img = torch.rand(5, 8, 9, 3)
    luma = image_to_frames(img)
    ref = 0.299 * img[..., 0] + 0.587 * img[..., 1] + 0.114 * img[..., 2]
    assert luma.shape == (5, 1, 8, 9)
    torch.testing.assert_close(luma[:, 0], ref)
    assert torch.equal(image_to_frames(img, gray=False), img.permute(0, 3, 1, 2))
    with pytest.raises(ValueError, match="IMAGE"):
        image_to_frames(torch.rand(8, 9, 3))
