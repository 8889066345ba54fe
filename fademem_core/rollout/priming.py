"""Priming a rollout's memory with given frames (continue a video, start from an image).

A prefix of ``P`` latent frames enters the memory exactly as generated frames do: it is cut
into chunks of ``chunk`` frames, the first one ``P % chunk`` frames when ``P`` is not a
multiple (an image, or a Wan clip of ``1 + chunk * k`` latent frames, enters as its first frame
alone, then whole chunks; and a run resumed from an interrupted one cuts its prefix exactly as
that run cut it), and every prefix chunk gets the one clean pass at ``context_noise`` that a generated
chunk gets after its last denoising step, at positions ``start..start+n-1``, followed by the
policy's commit (evict / merge).  No denoising step runs for a prefix chunk.  Generation then
continues at frame ``P``.  A bounded policy stays bounded whatever ``P`` is: priming 1000
frames into ``FadeMem(budget=12)`` leaves 12 entries.

Seed handling: a prefix chunk consumes the random numbers a generated chunk of the same size
would have consumed (one draw per denoising step, or one per chunk with the Euler sampler,
thrown away; the clean pass's draw when ``context_noise > 0`` is used as usual).  So priming with the first ``P`` frames of a rollout
(``P`` a multiple of ``chunk``) and the same seed continues with exactly that rollout's
remaining frames.
"""
from __future__ import annotations

import torch

from ..wan import from_raw

__all__ = ["chunk_spans", "check_prefix", "check_prefix_batch", "skip_noise"]


def chunk_spans(num_frames: int, chunk: int, prefix_frames: int = 0) -> list[tuple[int, int]]:
    """``(start, n)`` of every chunk of a rollout: the prefix's chunks, then the new frames'.

    ``chunk_spans(4, 3, prefix_frames=5) == [(0, 2), (2, 3), (5, 3), (8, 1)]``: a prefix
    that is not whole chunks starts with the remainder.
    """
    first = prefix_frames % chunk
    cuts = ([0] if first else []) + list(range(first, prefix_frames, chunk))
    spans = [(s, e - s) for s, e in zip(cuts, cuts[1:] + [prefix_frames])]
    total = prefix_frames + num_frames
    spans += [(s, min(chunk, total - s)) for s in range(prefix_frames, total, chunk)]
    return spans


def check_prefix(prefix: object, channels: int, rows: int, cols: int, raw: bool) -> torch.Tensor:
    """Validate prefix latents ``[B, channels, P, rows, cols]``; return them float32, model space.

    ``rows``/``cols`` are the latent height/width the requested video size gives; ``raw``
    marks raw Wan VAE latents (converted with :func:`~fademem_core.wan.from_raw`).
    """
    want = f"[B, {channels}, P, {rows}, {cols}]"
    if not isinstance(prefix, torch.Tensor):
        raise ValueError(f"prefix must be a latent tensor {want}, got {type(prefix).__name__}")
    if prefix.ndim != 5 or prefix.shape[2] < 1:
        raise ValueError(f"prefix must be latents {want} with P >= 1 frames, got {tuple(prefix.shape)}")
    if prefix.shape[1] != channels:
        raise ValueError(f"prefix has {prefix.shape[1]} channels, the model expects {channels} "
                         f"(Wan 2.1 VAE latents): got {tuple(prefix.shape)}, expected {want}")
    if tuple(prefix.shape[3:]) != (rows, cols):
        raise ValueError(
            f"prefix latents are {prefix.shape[3]}x{prefix.shape[4]} but the requested size needs "
            f"{rows}x{cols} (height/8 x width/8): got {tuple(prefix.shape)}, expected {want}")
    if not prefix.is_floating_point():
        raise ValueError(f"prefix must be a floating tensor, got {prefix.dtype}")
    if not isinstance(raw, bool):
        raise ValueError(f"prefix_raw must be True or False, got {raw!r}")
    x = prefix.detach().to(device="cpu", dtype=torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError("prefix contains NaN or inf values")
    return from_raw(x) if raw else x  # read only: the rollout copies it into its output


def check_prefix_batch(prefix: torch.Tensor | None, batch: int) -> int:
    """The prompt's ``batch``, once the prefix (if any) is checked to have the same."""
    if prefix is not None and prefix.shape[0] != batch:
        raise ValueError(f"prefix batch {prefix.shape[0]} differs from the prompt's batch {batch}")
    return batch


def skip_noise(gen: torch.Generator, shape: tuple[int, ...], draws: int) -> None:
    """Draw and drop the ``draws`` noise tensors sampling a chunk would have drawn (seed rule)."""
    for _ in range(draws):
        torch.randn(shape, generator=gen, dtype=torch.float32)
