"""Video and image files in, raw Wan latents out (the prefix of a continued video).

Frames are read one at a time and brought to the requested size by scaling to cover it (aspect
kept) and cropping the centre.  Videos are resampled to the models' 16 fps by sample-and-hold
on the frames' timestamps: output frame ``k`` (time ``k / 16`` s after the first frame) is the
last source frame shown at that time, so a 30 fps clip drops frames and an 8 fps clip shows each
frame twice, never blending two frames.  The frames go through the streaming VAE encoder in
small pieces, so only a piece of pixels and the latents are ever in memory.  An image is a
one-frame video: it becomes latent frame 0.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Iterator

import numpy as np
import torch

from ..files import open_video
from ..wan import FPS

__all__ = ["IMAGE_EXTENSIONS", "EncodedInput", "encode_file", "read_frames", "fit_frame"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
MODEL_FPS = FPS  # the rate the models were trained at


@dataclass(frozen=True)
class EncodedInput:
    """Raw Wan latents of a file and what was read to make them."""

    latents: torch.Tensor  # raw Wan VAE latents [1, 16, L, height/8, width/8], float32, CPU
    source_fps: float | None  # None for an image
    frames_read: int  # frames at 16 fps after resampling
    frames_dropped: int  # trailing frames that did not fill a group of four (not encoded)


def is_image(path: str | os.PathLike) -> bool:
    """True when ``path``'s extension marks a still image."""
    return os.path.splitext(os.fspath(path))[1].lower() in IMAGE_EXTENSIONS


def fit_frame(image: Any, height: int, width: int) -> np.ndarray:
    """A PIL image scaled to cover ``width x height`` (aspect kept), centre-cropped; uint8 HxWx3."""
    from PIL import Image

    image = image.convert("RGB")
    scale = max(width / image.width, height / image.height)
    w, h = max(width, round(image.width * scale)), max(height, round(image.height * scale))
    if (w, h) != image.size:
        image = image.resize((w, h), Image.BICUBIC)
    left, top = (w - width) // 2, (h - height) // 2
    return np.array(image.crop((left, top, left + width, top + height)))  # a writable copy


def _open_image(path: str) -> Any:
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(path)
        image.load()
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot read {path!r} as an image: {exc}") from None
    return image


def _video_frames(path: str) -> Iterator[tuple[float, Any]]:
    """``(time in seconds, PIL image)`` of every frame of the first video stream."""
    import av

    container, stream = open_video(path)
    with container:
        rate = stream.average_rate or stream.guessed_rate or Fraction(MODEL_FPS)
        try:
            for i, frame in enumerate(container.decode(stream)):
                t = frame.time if frame.time is not None else i / float(rate)
                yield float(t), frame.to_image()
        except av.error.FFmpegError as exc:
            raise ValueError(f"{path!r} is damaged: decoding stopped after a frame error: {exc}") from None


def resample(frames: Iterator[tuple[float, Any]], fps: float = MODEL_FPS) -> Iterator[Any]:
    """Sample-and-hold ``(time, frame)`` pairs onto a ``fps`` grid starting at the first frame."""
    prev = None
    t0 = k = 0
    step = 1.0 / fps
    last_gap = step
    for t, frame in frames:
        if prev is None:
            t0 = t
        else:
            last_gap = max(t - prev[0], 1e-9)
            # prev is on screen over [prev time, t): emit it for every grid time in there
            while t0 + k * step < t - 1e-9:
                yield prev[1]
                k += 1
        prev = (t, frame)
    if prev is not None:
        while t0 + k * step < prev[0] + last_gap - 1e-9:
            yield prev[1]
            k += 1


def read_frames(path: str | os.PathLike, height: int, width: int,
                fps: float = MODEL_FPS) -> Iterator[np.ndarray]:
    """Frames of a video (resampled to ``fps``) or an image (one frame), uint8 ``[H, W, 3]``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    if is_image(path):
        yield fit_frame(_open_image(path), height, width)
        return
    for frame in resample(_video_frames(path), fps):
        yield fit_frame(frame, height, width)


def source_fps(path: str | os.PathLike) -> float | None:
    """The average frame rate a video declares (None for an image or when unknown)."""
    if is_image(path):
        return None
    import av

    with av.open(os.fspath(path)) as container:
        rate = container.streams.video[0].average_rate
        return float(rate) if rate else None


def encode_file(vae: Any, path: str | os.PathLike, height: int, width: int,
                piece: int = 16) -> EncodedInput:
    """Encode a video or image file at ``height x width`` (16 fps) to raw Wan latents.

    Pixels go through :class:`~fademem_core.rollout.vae_encode.StreamingVAEEncoder` ``piece`` frames
    at a time.  Use :func:`~fademem_core.rollout.sampler.from_raw` for model space, or pass the result
    as ``generate(..., prefix=latents, prefix_raw=True)``.
    """
    from .vae_encode import StreamingVAEEncoder

    if height <= 0 or width <= 0 or height % 16 or width % 16:
        raise ValueError(f"height and width must be positive multiples of 16, got {height}x{width}")
    frames = read_frames(path, height, width)
    first = next(frames, None)  # reads the header: bad files fail here, before the VAE runs
    if first is None:
        raise ValueError(f"{os.fspath(path)!r} decoded to no frames")
    encoder = StreamingVAEEncoder(vae)
    parts, buf, count = [], [first], 1
    try:
        for frame in frames:
            buf.append(frame)
            count += 1
            if len(buf) == piece:
                parts.append(encoder.encode(_to_tensor(buf)).float().cpu())
                buf = []
        if buf:
            parts.append(encoder.encode(_to_tensor(buf)).float().cpu())
        dropped = encoder.pending_frames
    finally:
        encoder.close()
    return EncodedInput(torch.cat(parts, dim=2), source_fps(path), count, dropped)


def _to_tensor(frames: list[np.ndarray]) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` frames -> ``[1, 3, T, H, W]`` in [-1, 1]."""
    x = torch.from_numpy(np.stack(frames)).permute(3, 0, 1, 2)[None].float()
    return x / 127.5 - 1.0
