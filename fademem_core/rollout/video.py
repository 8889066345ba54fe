"""Streaming Wan VAE decode and mp4 writing.

A long autoregressive rollout produces latents chunk by chunk.  Decoding them all at the end
holds every frame in memory at once (the usual out-of-memory after hours of sampling); here each
latent chunk goes through the Wan VAE decoder as soon as it exists and its frames go straight
into the video file, so memory stays flat however long the video.

The Wan VAE decoder is causal in time: diffusers' ``AutoencoderKLWan.decode`` feeds it one latent
frame at a time and carries a per-convolution cache of the last input frames between calls.
``decode`` clears that cache at its start and end, so there is no public way to continue a
decode.  :class:`StreamingVAEDecoder` drives ``vae.decoder`` itself with its own cache list that
lives as long as the stream, which reproduces one full ``decode`` exactly (tested).
"""
from __future__ import annotations

import math
import numbers
import os
import tempfile
import weakref
from pathlib import Path
from typing import Any

import torch

from ..files import set_default_permissions  # re-exported: writers outside rollout use it

__all__ = [
    "StreamingVAEDecoder",
    "Mp4Writer",
    "LatentPreviewDecoder",
    "load_wan_vae",
    "wan_vae_from_original",
    "read_video_info",
    "set_default_permissions",
]


def load_wan_vae(wan_dir: str | os.PathLike, dtype: torch.dtype = torch.float32,
                 device: str | torch.device = "cpu") -> Any:
    """Load ``AutoencoderKLWan`` from the ``vae/`` subfolder of a diffusers-format Wan folder."""
    from diffusers import AutoencoderKLWan

    vae_dir = Path(wan_dir) / "vae"
    if not (vae_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"no Wan VAE at {vae_dir} (expected a diffusers-format folder with vae/config.json)")
    vae = AutoencoderKLWan.from_pretrained(str(vae_dir), torch_dtype=dtype, local_files_only=True)
    return vae.to(device).eval()


_WAN21_KEY = "decoder.middle.0.residual.0.gamma"  # every Wan VAE in the original layout has it
_WAN22_KEY = "decoder.upsamples.0.upsamples.0.residual.2.weight"  # only the Wan 2.2 VAE has it


def wan_vae_from_original(state_dict: dict[str, torch.Tensor]) -> Any:
    """A Wan 2.1 VAE in its original layout as diffusers ``AutoencoderKLWan``, sharing the tensors.

    The original layout is that of ``wan_2.1_vae.safetensors`` and of the module ComfyUI's core
    Load VAE builds from it.  Keys are renamed by diffusers' own converter
    (``convert_wan_vae_to_diffusers``); the widths are read from the tensors, so reduced test
    VAEs of the same structure load too.  The model is built on the meta device and the given
    tensors are assigned, not copied: device and dtype are the state dict's.
    """
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers

    if _WAN21_KEY not in state_dict:
        raise ValueError(f"not a Wan VAE in the original layout (no {_WAN21_KEY!r}): load "
                         "wan_2.1_vae.safetensors with Load VAE")
    if _WAN22_KEY in state_dict:
        raise ValueError("this is the Wan 2.2 VAE (48 latent channels); the causal Wan2.1 models "
                         "need wan_2.1_vae.safetensors")
    try:
        base = state_dict["encoder.conv1.weight"].shape[0]
        # encoder residual blocks 0, 3, 6, 9 open the four levels (two blocks + a resample each)
        mult = [state_dict[f"encoder.downsamples.{i}.residual.2.weight"].shape[0] // base
                for i in (0, 3, 6, 9)]
        z_dim = state_dict["conv2.weight"].shape[0]
    except KeyError as exc:
        raise ValueError(f"the Wan VAE weights lack {exc.args[0]!r}: expected the Wan 2.1 layout "
                         "(4 levels of 2 residual blocks)") from None
    temporal = [f"encoder.downsamples.{i}.time_conv.weight" in state_dict for i in (2, 5, 8)]
    config = dict(base_dim=base, z_dim=z_dim, dim_mult=mult,
                  num_res_blocks=2, temperal_downsample=temporal)
    with torch.device("meta"):
        vae = AutoencoderKLWan(**config)
    try:
        vae.load_state_dict(convert_wan_vae_to_diffusers(dict(state_dict)), strict=True,
                            assign=True)
    except RuntimeError as exc:
        raise ValueError(f"the Wan VAE weights do not match the Wan 2.1 layout "
                         f"({config}): {str(exc).splitlines()[0]}") from None
    return vae.eval()


class StreamingVAEDecoder:
    """Decode raw Wan latents chunk by chunk, keeping the VAE's causal cache between chunks.

    ``decode(chunk)`` takes raw latents ``[B, 16, F, h, w]`` (use ``to_raw`` on model-space
    latents) and returns the video frames they complete, ``[B, 3, T, H, W]`` in [-1, 1]: the very
    first latent frame gives one video frame, every later one gives four.  Concatenating the
    outputs of successive calls equals ``vae.decode`` of the concatenated latents.
    """

    def __init__(self, vae: Any, clamp: bool = True) -> None:
        from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

        if getattr(vae, "decoder", None) is None or getattr(vae, "post_quant_conv", None) is None:
            raise TypeError(f"expected a diffusers AutoencoderKLWan, got {type(vae).__name__}")
        self.vae = vae
        self.clamp = clamp
        # one slot per causal conv in the decoder, exactly what the decoder indexes into
        self._num_convs = sum(isinstance(m, WanCausalConv3d) for m in vae.decoder.modules())
        self._cache: list[Any] = [None] * self._num_convs
        self._frames_seen = 0

    @property
    def latent_frames_seen(self) -> int:
        """Latent frames decoded since the stream started (or was reset)."""
        return self._frames_seen

    def reset(self) -> None:
        """Forget the causal cache: the next chunk starts a new video."""
        self._cache = [None] * self._num_convs
        self._frames_seen = 0

    @torch.no_grad()
    def decode(self, latents_raw: torch.Tensor) -> torch.Tensor:
        """Decode the next chunk of raw latents ``[B, 16, F, h, w]`` to frames ``[B, 3, T, H, W]``."""
        z_dim = self.vae.config.z_dim
        if latents_raw.ndim != 5 or latents_raw.shape[1] != z_dim:
            raise ValueError(
                f"latents must be [B, {z_dim}, F, h, w], got shape {tuple(latents_raw.shape)}")
        param = next(self.vae.decoder.parameters())
        x = self.vae.post_quant_conv(latents_raw.to(device=param.device, dtype=param.dtype))
        outs = []
        for i in range(x.shape[2]):
            # the decoder advances this index through its convs; it restarts every frame
            idx = [0]
            outs.append(self.vae.decoder(x[:, :, i:i + 1], feat_cache=self._cache, feat_idx=idx,
                                         first_chunk=self._frames_seen == 0))
            self._frames_seen += 1
        if not outs:
            return x.new_zeros(x.shape[0], 3, 0, x.shape[3] * 8, x.shape[4] * 8)
        out = torch.cat(outs, dim=2)
        patch = self.vae.config.get("patch_size", None)
        if patch is not None:
            from diffusers.models.autoencoders.autoencoder_kl_wan import unpatchify
            out = unpatchify(out, patch_size=patch)
        return out.clamp(-1.0, 1.0) if self.clamp else out

    def close(self) -> None:
        """Free the cache (idempotent)."""
        self._cache = [None] * self._num_convs


class LatentPreviewDecoder:
    """Map latents to RGB with a fixed projection when no VAE is available (tiny models).

    Each latent frame becomes one video frame, upsampled ``scale`` times (nearest).  The
    projection is a fixed seeded 16->3 matrix scaled so typical unit-variance latents fill the
    range; it only shows structure, not what a real VAE would draw.
    """

    def __init__(self, channels: int = 16, scale: int = 8) -> None:
        g = torch.Generator().manual_seed(1234)
        self.proj = torch.randn(3, channels, generator=g) / (channels ** 0.5)
        self.scale = scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """``[B, C, F, h, w]`` -> ``[B, 3, F, h*scale, w*scale]`` in [-1, 1]."""
        if latents.ndim != 5 or latents.shape[1] != self.proj.shape[1]:
            raise ValueError(f"latents must be [B, {self.proj.shape[1]}, F, h, w], "
                             f"got shape {tuple(latents.shape)}")
        rgb = torch.einsum("oc,bcfhw->bofhw", self.proj, latents.float().cpu())
        rgb = torch.tanh(rgb)
        if self.scale > 1:
            rgb = rgb.repeat_interleave(self.scale, dim=3).repeat_interleave(self.scale, dim=4)
        return rgb

    def reset(self) -> None:  # stateless; same interface as StreamingVAEDecoder
        pass

    def close(self) -> None:
        pass


def _to_uint8_frames(frames: torch.Tensor) -> torch.Tensor:
    """``[3, T, H, W]`` float in [-1, 1] or ``[T, H, W, 3]`` uint8 -> ``[T, H, W, 3]`` uint8."""
    if frames.dtype == torch.uint8:
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise ValueError(f"uint8 frames must be [T, H, W, 3], got {tuple(frames.shape)}")
        return frames.cpu()
    if frames.ndim != 4 or frames.shape[0] != 3:
        raise ValueError(f"float frames must be [3, T, H, W] in [-1, 1], got {tuple(frames.shape)}")
    x = ((frames.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8)
    return x.permute(1, 2, 3, 0).contiguous().cpu()


MIN_FPS, MAX_FPS = 0.001, 1000.0  # the container's rate is fps as a fraction over <= 1000


def _discard_partial(container: Any, tmp: Path) -> None:
    """Close ``container`` and delete its temporary file (a writer's finalizer: no ``self``)."""
    try:
        container.close()
    except Exception:  # the container may be broken already; the file goes anyway
        pass
    tmp.unlink(missing_ok=True)


class Mp4Writer:
    """Write frames to an mp4 as they come; the file appears only when the video is complete.

    Frames go to a hidden temporary file next to ``path``; :meth:`close` renames it into place,
    :meth:`abort` (or leaving the ``with`` block by an exception) deletes it, so a failed run never
    leaves a half-written video behind; ``close(to=...)`` finishes the frames written so far under
    another name (a partial video, see :mod:`fademem_core.rollout.streaming`).  Width and height must be
    even (yuv420p).  ``metadata``: container tags (ComfyUI stores the prompt and workflow there
    as JSON strings), written as mp4 user tags like core Save Video does.  ``preset``: the
    x264 speed preset (None: x264's default, ``medium``).
    """

    def __init__(self, path: str | os.PathLike, fps: float = 16.0, crf: int = 18,
                 codec: str = "libx264", metadata: dict[str, str] | None = None,
                 preset: str | None = None) -> None:
        import av

        self.path = Path(path)
        if self.path.suffix.lower() != ".mp4":
            raise ValueError(f"video path must end in .mp4, got {str(self.path)!r}")
        if (isinstance(fps, bool) or not isinstance(fps, numbers.Real) or not math.isfinite(fps)
                or not MIN_FPS <= fps <= MAX_FPS):
            raise ValueError(f"fps must be a number in [{MIN_FPS:g}, {MAX_FPS:g}], got {fps!r}")
        parent = self.path.parent
        if not parent.is_dir():
            raise FileNotFoundError(f"output folder does not exist: {parent}")
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.stem}.", suffix=".partial.mp4",
                                   dir=str(parent))
        os.close(fd)
        self._tmp = Path(tmp)
        self._fps = fps
        self._crf = crf
        self._codec = codec
        self._preset = preset
        try:
            self._container = av.open(str(self._tmp), mode="w", format="mp4",
                                      options={"movflags": "use_metadata_tags"})
            for key, value in (metadata or {}).items():
                self._container.metadata[key] = value
        except BaseException:
            self._tmp.unlink(missing_ok=True)  # nothing half-made may stay behind
            raise
        # a writer dropped without close()/abort() (or alive at exit) still removes its file
        self._discard = weakref.finalize(self, _discard_partial, self._container, self._tmp)
        self._stream = None
        self.frames_written = 0
        self._done = False

    def _open_stream(self, height: int, width: int) -> None:
        from fractions import Fraction

        if height % 2 or width % 2:
            raise ValueError(f"video height and width must be even, got {height}x{width}")
        rate = Fraction(self._fps).limit_denominator(1000)
        self._stream = self._container.add_stream(self._codec, rate=rate)
        self._stream.width = width
        self._stream.height = height
        self._stream.pix_fmt = "yuv420p"
        if self._codec == "libx264":
            self._stream.options = {"crf": str(self._crf),
                                    **({"preset": self._preset} if self._preset else {})}

    def write(self, frames: torch.Tensor) -> None:
        """Append frames: ``[3, T, H, W]`` float in [-1, 1] or ``[T, H, W, 3]`` uint8."""
        import av

        if self._done:
            raise RuntimeError("writer is closed")
        arr = _to_uint8_frames(frames).numpy()
        if arr.shape[0] == 0:
            return
        if self._stream is None:
            self._open_stream(arr.shape[1], arr.shape[2])
        elif (arr.shape[1], arr.shape[2]) != (self._stream.height, self._stream.width):
            raise ValueError(f"frame size changed from {self._stream.height}x{self._stream.width} "
                             f"to {arr.shape[1]}x{arr.shape[2]}")
        for frame in arr:
            for packet in self._stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                self._container.mux(packet)
            self.frames_written += 1

    def close(self, to: str | os.PathLike | None = None) -> Path:
        """Finish the file and move it to ``path`` (or ``to``).  Returns where it went."""
        if self._done:
            return self.path
        target = self.path if to is None else Path(to)
        try:
            if self.frames_written == 0:
                raise ValueError(f"no frames were written to {self.path}")
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            set_default_permissions(self._tmp)
            os.replace(self._tmp, target)
            self._discard.detach()  # the file is the user's now
        except BaseException:
            self.abort()
            raise
        self._done = True
        self.path = target
        return target

    def abort(self) -> None:
        """Drop the partial file (idempotent)."""
        if self._done:
            return
        self._done = True
        self._discard()

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def read_video_info(path: str | os.PathLike) -> tuple[int, int, int]:
    """(frames, height, width) of a video file, counting decoded frames."""
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        n = 0
        for _ in container.decode(stream):
            n += 1
        return n, stream.codec_context.height, stream.codec_context.width
