"""Constants of the Wan2.1 family every part of the pack agrees on (a leaf: imports nothing).

Time: Wan videos run at 16 fps; the causal VAE turns latent frame 0 into one video frame and
every later latent frame into four (``1 + 4(n - 1)`` video frames for ``n`` latents).  Space:
the VAE compresses 8x.  Latents: the model works in a normalised space,
``model = (raw - mean) / std`` per channel; :func:`to_raw` / :func:`from_raw` convert.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

FPS = 16.0  # Wan2.1 video frame rate
VAE_TEMPORAL = 4  # video frames per latent frame (after the first)
LATENT_FPS = FPS / VAE_TEMPORAL  # latent frames per second of video (a preview at this rate)
VAE_SPATIAL = 8  # pixels per latent cell along each axis
LATENT_CHANNELS = 16

# Wan 2.1 VAE per-channel statistics: model space = (raw - mean) / std.
WAN_LATENT_MEAN = (
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
)
WAN_LATENT_STD = (
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
)

__all__ = [
    "FPS", "LATENT_CHANNELS", "LATENT_FPS", "VAE_SPATIAL", "VAE_TEMPORAL", "WAN_LATENT_MEAN", "WAN_LATENT_STD",
    "from_raw", "latent_frame_of_video_frame", "latent_frames_for_seconds",
    "latents_for_video_frames", "to_raw", "video_frames_for_latents",
]


def video_frames_for_latents(latent_frames: int, temporal_factor: int = VAE_TEMPORAL) -> int:
    """Video frames the Wan VAE makes from ``latent_frames`` latent frames: ``1 + 4(n - 1)``."""
    if latent_frames <= 0:
        return 0
    return 1 + temporal_factor * (latent_frames - 1)


def latents_for_video_frames(video_frames: int) -> int:
    """Latent frames behind a ``1 + 4k``-frame video (the inverse of
    :func:`video_frames_for_latents`); ValueError for any other length."""
    if (isinstance(video_frames, bool) or not isinstance(video_frames, int) or video_frames < 1
            or (video_frames - 1) % VAE_TEMPORAL):
        raise ValueError(f"length must be 1 + {VAE_TEMPORAL}*k video frames (1, 5, 9, ...), "
                         f"got {video_frames!r}")
    return (video_frames - 1) // VAE_TEMPORAL + 1


def latent_frame_of_video_frame(video_frame: float) -> int:
    """The first latent frame that covers video frame ``video_frame`` (``ceil(f / 4)``)."""
    return math.ceil(video_frame / VAE_TEMPORAL - 1e-9)


def latent_frames_for_seconds(seconds: float, fps: float = FPS) -> int:
    """Latent frames of a ``seconds``-long video: 4 video frames each at 16 fps (60 s -> 240)."""
    frames = seconds * fps / VAE_TEMPORAL
    if not math.isfinite(frames):  # 1e308 s: no integer, refused rather than OverflowError
        raise ValueError(f"seconds must give a finite number of frames, got {seconds!r}")
    return max(1, round(frames))


def _stats(x: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
    import torch

    if not isinstance(x, torch.Tensor):
        raise ValueError(f"latents must be a torch.Tensor [B, {LATENT_CHANNELS}, ...], got "
                         f"{type(x).__name__} (torch.from_numpy converts an array)")
    if not x.is_floating_point():
        raise ValueError(f"latents must be a floating tensor, got {x.dtype}")
    if x.ndim < 2 or x.shape[1] != LATENT_CHANNELS:
        raise ValueError(f"latents must be [B, {LATENT_CHANNELS}, ...], got {tuple(x.shape)}")
    shape = (1, -1) + (1,) * (x.ndim - 2)
    x32 = x.float()  # float32 statistics on the latents' device
    return x32.new_tensor(WAN_LATENT_MEAN).reshape(shape), x32.new_tensor(WAN_LATENT_STD).reshape(shape)


def to_raw(latents: "torch.Tensor") -> "torch.Tensor":
    """Model-space latents -> raw Wan VAE latents (what ComfyUI's VAEDecode expects)."""
    mean, std = _stats(latents)
    return (latents.float() * std + mean).to(latents.dtype)


def from_raw(latents: "torch.Tensor") -> "torch.Tensor":
    """Raw Wan VAE latents -> model space (inverse of :func:`to_raw`)."""
    mean, std = _stats(latents)
    return ((latents.float() - mean) / std).to(latents.dtype)
