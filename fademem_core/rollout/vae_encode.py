"""Streaming Wan VAE encode: video frames in, raw latents out, chunk by chunk in flat memory.

The mirror image of :class:`~fademem_core.rollout.video.StreamingVAEDecoder`.  The Wan VAE encoder is
causal in time: diffusers' ``AutoencoderKLWan.encode`` feeds it the first frame alone (latent
frame 0), then groups of four frames (one latent frame each), carrying a per-convolution cache
of the last input frames between groups, and clears that cache at its start and end.  Here the
cache lives as long as the stream, and frames that do not yet fill a group of four wait for
the next call, so any split of a video into pieces encodes to exactly what one ``encode`` of
the whole video gives (tested bit for bit), while only one piece is ever in memory.
"""
from __future__ import annotations

from typing import Any

import torch

from ..wan import VAE_TEMPORAL

__all__ = ["StreamingVAEEncoder", "latent_frames_for_video"]


def latent_frames_for_video(video_frames: int, temporal_factor: int = VAE_TEMPORAL) -> int:
    """Latent frames the Wan VAE makes from ``video_frames`` frames: ``1 + (T - 1) // 4``.

    Frames past the last full group of four are not encoded (as in ``vae.encode``).
    """
    if video_frames <= 0:
        return 0
    return 1 + (video_frames - 1) // temporal_factor


class StreamingVAEEncoder:
    """Encode video frames ``[B, 3, T, H, W]`` in [-1, 1] to raw Wan latents, piece by piece.

    ``encode(frames)`` returns the latent frames the frames seen so far complete, ``[B, 16, L,
    H/8, W/8]`` (the posterior mean, as ``vae.encode(x).latent_dist.mode()``): the very first
    frame gives latent frame 0 (a single image is a one-frame video), every later four frames
    give one.  Concatenating the outputs of successive calls equals one ``vae.encode`` of the
    concatenated frames.  :attr:`pending_frames` are waiting for their group to fill; they are
    dropped at the end, as ``vae.encode`` drops them.
    """

    def __init__(self, vae: Any) -> None:
        from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

        if getattr(vae, "encoder", None) is None or getattr(vae, "quant_conv", None) is None:
            raise TypeError(f"expected a diffusers AutoencoderKLWan, got {type(vae).__name__}")
        self.vae = vae
        # one slot per causal conv in the encoder, exactly what the encoder indexes into
        self._num_convs = sum(isinstance(m, WanCausalConv3d) for m in vae.encoder.modules())
        self._cache: list[Any] = [None] * self._num_convs
        self._pending: torch.Tensor | None = None
        self._frames_seen = 0
        self._started = False  # the first frame went through the encoder alone
        self._shape: tuple[int, int, int] | None = None  # (B, H, W) of the stream

    @property
    def frames_seen(self) -> int:
        """Video frames received since the stream started."""
        return self._frames_seen

    @property
    def pending_frames(self) -> int:
        """Frames received but not yet encoded (fewer than four)."""
        return 0 if self._pending is None else self._pending.shape[2]

    def _check(self, frames: torch.Tensor) -> None:
        if not isinstance(frames, torch.Tensor) or frames.ndim != 5 or frames.shape[1] != 3:
            raise ValueError(f"frames must be [B, 3, T, H, W] in [-1, 1], got "
                             f"{getattr(frames, 'shape', type(frames).__name__)}")
        b, _, _, height, width = frames.shape
        if height % 8 or width % 8:
            raise ValueError(f"frame height and width must be multiples of 8, got {height}x{width}")
        if self._shape is not None and (b, height, width) != self._shape:
            raise ValueError(f"frames changed from batch {self._shape[0]} at {self._shape[1]}x"
                             f"{self._shape[2]} to batch {b} at {height}x{width} within one stream")
        self._shape = (b, height, width)

    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Encode the next frames; return the raw latents they complete ``[B, 16, L, h, w]``."""
        self._check(frames)
        param = next(self.vae.encoder.parameters())
        x = frames.to(device=param.device, dtype=param.dtype)
        if self._pending is not None:
            x = torch.cat([self._pending, x], dim=2)
            self._pending = None
        self._frames_seen += frames.shape[2]
        patch = self.vae.config.get("patch_size", None)
        groups = []
        start = 0
        if not self._started and x.shape[2] > 0:
            groups.append(x[:, :, :1])
            start = 1
            self._started = True
        full = (x.shape[2] - start) // 4 * 4
        groups += [x[:, :, s:s + 4] for s in range(start, start + full, 4)]
        if start + full < x.shape[2]:
            self._pending = x[:, :, start + full:]
        outs = []
        for g in groups:
            if patch is not None:
                from diffusers.models.autoencoders.autoencoder_kl_wan import patchify
                g = patchify(g, patch_size=patch)
            # the encoder advances this index through its convs; it restarts every group
            outs.append(self.vae.encoder(g, feat_cache=self._cache, feat_idx=[0]))
        z_dim = self.vae.config.z_dim
        if not outs:
            b, _, _, height, width = frames.shape
            return x.new_zeros(b, z_dim, 0, height // 8, width // 8)
        moments = self.vae.quant_conv(torch.cat(outs, dim=2))
        return moments[:, :z_dim]  # the mean; the log-variance half is not needed

    def close(self) -> None:
        """Free the cache and drop pending frames (idempotent)."""
        self._cache = [None] * self._num_convs
        self._pending = None
        self._started = False
        self._frames_seen = 0
