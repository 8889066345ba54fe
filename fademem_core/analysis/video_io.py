"""Read frames for the spectral analysis: a video file (decoded with ``av``) or a latent file
(``.safetensors``, ComfyUI ``.latent``, ``.pt``), always as float32 ``[T, C, H, W]``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..files import open_video, path_kind

LATENT_EXTENSIONS = (".safetensors", ".latent", ".sft", ".pt", ".pth")
_LATENT_KEYS = ("latent_tensor", "samples", "latent", "latents")  # tried in this order
# ITU-R BT.601 luma weights (what the codecs' Y plane uses for SD content)
_LUMA = (0.299, 0.587, 0.114)


def _check_file(path: str) -> str:
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no such file: {path!r}")
    if not os.path.isfile(path):
        raise ValueError(f"{path!r} is {path_kind(path)}, not a regular file")
    return path


def parse_size(size: int | str | tuple[int, int] | None) -> tuple[int, int] | int | None:
    """``None`` | ``256`` (longer side) | ``"320x136"`` / ``(320, 136)`` (width x height)."""
    if size is None or isinstance(size, tuple):
        out = size
    elif isinstance(size, int):
        out = size
    elif isinstance(size, str) and "x" in size.lower():
        w, _, h = size.lower().partition("x")
        try:
            out = (int(w), int(h))
        except ValueError:
            raise ValueError(f"size must be N or WxH, got {size!r}") from None
    else:
        try:
            out = int(size)
        except (TypeError, ValueError):
            raise ValueError(f"size must be N or WxH, got {size!r}") from None
    sides = out if isinstance(out, tuple) else (out,) if out is not None else ()
    if any(s < 8 for s in sides):
        raise ValueError(f"size must be at least 8 pixels per side, got {size!r}")
    return out


def _target(width: int, height: int, size: tuple[int, int] | int | None) -> tuple[int, int]:
    if size is None:
        return width, height
    if isinstance(size, tuple):
        return size
    scale = size / max(width, height)
    # even sizes keep the swscale chroma path simple
    return max(8, round(width * scale / 2) * 2), max(8, round(height * scale / 2) * 2)


def read_video(path: str, size: int | str | tuple[int, int] | None = None, gray: bool = True,
               max_frames: int | None = None) -> np.ndarray:
    """Decode a video file into float32 ``[T, C, H, W]`` in 0..1 (C = 1 luma, or 3 RGB).

    size: ``N`` scales the longer side to N, ``"WxH"``/``(W, H)`` forces a size (resized by the
    decoder's scaler).  gray: keep the luma plane (full resolution in 4:2:0 video, unlike the
    chroma planes, whose top frequencies are empty).  max_frames: stop after that many frames.
    """
    path = _check_file(path)
    target = parse_size(size)
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"max_frames must be >= 1, got {max_frames}")
    fmt = "gray" if gray else "rgb24"
    frames: list[np.ndarray] = []
    container, stream = open_video(path)
    with container:
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            w, h = _target(frame.width, frame.height, target)
            arr = frame.reformat(width=w, height=h, format=fmt).to_ndarray()
            frames.append(arr)
            if max_frames is not None and len(frames) >= max_frames:
                break
    if not frames:
        raise ValueError(f"{path!r} decoded to no frames")
    data = np.stack(frames)
    data = data[:, None] if gray else data.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(data, dtype=np.float32) / 255.0


def _pick_tensor(obj: Any, path: str) -> torch.Tensor:
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, dict):
        for key in _LATENT_KEYS:
            if isinstance(obj.get(key), torch.Tensor):
                return obj[key]
        tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor) and v.ndim >= 4}
        if len(tensors) == 1:
            return next(iter(tensors.values()))
        raise ValueError(f"{path!r} holds {sorted(map(str, obj))}; expected one of "
                         f"{list(_LATENT_KEYS)} or a single 4-/5-dim tensor")
    raise ValueError(f"{path!r} holds a {type(obj).__name__}, expected a tensor or a dict of "
                     "tensors")


def latent_to_frames(latent: torch.Tensor, batch_index: int = 0) -> torch.Tensor:
    """Wan latent ``[16, T, h, w]`` or ``[B, 16, T, h, w]`` -> frames ``[T, 16, h, w]`` float32."""
    if latent.ndim == 5:
        if not 0 <= batch_index < latent.shape[0]:
            raise ValueError(f"batch_index {batch_index} out of range for a batch of "
                             f"{latent.shape[0]}")
        latent = latent[batch_index]
    if latent.ndim != 4:
        raise ValueError(f"latent must be [C, T, h, w] or [B, C, T, h, w], got shape "
                         f"{tuple(latent.shape)}")
    return latent.permute(1, 0, 2, 3).to(torch.float32).contiguous()


def read_latent(path: str, batch_index: int = 0) -> torch.Tensor:
    """Read a latent file into frames ``[T, C, h, w]``.

    ``.safetensors`` / ``.latent`` (ComfyUI SaveLatent: key ``latent_tensor``) / ``.sft``: the
    tensor under a known key, or the only one.  ``.pt`` / ``.pth``: loaded with
    ``weights_only=True``; a tensor or a dict (``{"samples": ...}`` like a ComfyUI LATENT).
    The scale of the latent (raw or normalised) does not matter: correlations are scale-free.
    """
    path = _check_file(path)
    ext = os.path.splitext(path)[1].lower()
    if ext in (".pt", ".pth"):
        from ..model.checkpoints import read_pickle  # the one safe pickle reader

        obj = read_pickle(Path(path), "latent file")
    elif ext in (".safetensors", ".latent", ".sft"):
        from safetensors.torch import load_file

        try:
            obj = load_file(path, device="cpu")
        except Exception as exc:  # safetensors raises its own error types
            raise ValueError(f"cannot read {path!r} as safetensors: {exc}") from None
    else:
        raise ValueError(f"{path!r}: latent files end in {', '.join(LATENT_EXTENSIONS)}")
    return latent_to_frames(_pick_tensor(obj, path), batch_index)


def is_latent_file(path: str) -> bool:
    """True when ``path``'s extension marks a latent file rather than a video."""
    return os.path.splitext(os.fspath(path))[1].lower() in LATENT_EXTENSIONS


def load_frames(path: str, size: int | str | tuple[int, int] | None = None, gray: bool = True,
                max_frames: int | None = None) -> np.ndarray | torch.Tensor:
    """Frames ``[T, C, H, W]`` from a video or latent file (latents ignore size and gray)."""
    if is_latent_file(path):
        frames = read_latent(path)
        return frames[:max_frames] if max_frames is not None else frames
    return read_video(path, size=size, gray=gray, max_frames=max_frames)


def image_to_frames(images: torch.Tensor, gray: bool = True) -> torch.Tensor:
    """ComfyUI IMAGE ``[T, H, W, C]`` (0..1) -> frames ``[T, 1 or C, H, W]`` float32."""
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        raise ValueError(f"IMAGE must be a [frames, H, W, channels] tensor, got "
                         f"{getattr(images, 'shape', type(images).__name__)}")
    x = images.to(torch.float32).permute(0, 3, 1, 2)
    if gray and x.shape[1] >= 3:
        w = torch.tensor(_LUMA, dtype=torch.float32).reshape(1, 3, 1, 1)
        x = (x[:, :3] * w).sum(1, keepdim=True)
    return x.contiguous()
