"""The differentiable training forward: teacher forcing with a block-causal mask.

One full-sequence pass over ``[clean frames ; noisy frames]`` of a clip (``2F`` frames):

* clean frame of chunk ``c`` attends to clean frames of chunks ``<= c`` (what the inference
  engine's clean/"context" pass writes into the KV memory);
* noisy frame of chunk ``c`` attends to clean chunks ``< c`` and to its own noisy chunk (what a
  denoising step sees: the memory plus itself).

Frame ``i`` gets temporal RoPE position ``i`` in both halves, so a noisy chunk sees its clean
predecessors at exactly the distances it will see them at in a rollout.  The math is the
inference engine's (``fademem_core.model.causal_wan``): same sub-modules of diffusers'
``WanTransformer3DModel``, same rotary table (:func:`fademem_core.rope.grid_cos_sin`), same
timestep convention (``1000 * sigma``, per frame), float32 norms and modulation; unlike the
engine's ``encode_text`` the text path keeps its gradients here.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..rope import apply_rotary, grid_cos_sin


def teacher_forcing_mask(frames: int, chunk: int) -> torch.Tensor:
    """Frame-level boolean mask ``[2F, 2F]`` (True = may attend) over ``[clean ; noisy]``."""
    if frames < 1 or chunk < 1:
        raise ValueError(f"frames and chunk must be >= 1, got {frames!r}, {chunk!r}")
    c = torch.arange(frames) // chunk
    clean_clean = c[:, None] >= c[None, :]
    noisy_clean = c[:, None] > c[None, :]
    noisy_noisy = c[:, None] == c[None, :]
    top = torch.cat([clean_clean, torch.zeros(frames, frames, dtype=torch.bool)], dim=1)
    bottom = torch.cat([noisy_clean, noisy_noisy], dim=1)
    return torch.cat([top, bottom], dim=0)


def _ln(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    return F.layer_norm(x.float(), (x.shape[-1],), norm.weight, norm.bias, norm.eps)


def _rms(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    return F.rms_norm(x.float(), (x.shape[-1],), norm.weight, norm.eps)


def masked_velocity(
    transformer: torch.nn.Module,
    x: torch.Tensor,
    timesteps: torch.Tensor,
    text: torch.Tensor,
    positions: Sequence[float],
    frame_mask: torch.Tensor,
) -> torch.Tensor:
    """Velocity ``[B, 16, F, h, w]`` for latents ``x`` with per-frame ``timesteps [B, F]``.

    ``text`` is the raw prompt embedding ``[B or 1, L, text_dim]``; ``frame_mask [F, F]`` is
    expanded to tokens (every token of a frame shares its frame's row/column).
    """
    tr = transformer
    cfg = tr.config
    heads, head_dim = int(cfg["num_attention_heads"]), int(cfg["attention_head_dim"])
    b, _, f, h, w = x.shape
    pt, ph, pw = (int(p) for p in cfg["patch_size"])
    if pt != 1:
        raise ValueError(f"temporal patch size must be 1, got {pt}")
    if timesteps.shape != (b, f):
        raise ValueError(f"timesteps must be [{b}, {f}], got {tuple(timesteps.shape)}")
    if len(positions) != f or frame_mask.shape != (f, f):
        raise ValueError(f"need {f} positions and a [{f}, {f}] mask")
    hp, wp = h // ph, w // pw
    n = hp * wp
    mask = frame_mask.to(x.device).repeat_interleave(n, 0).repeat_interleave(n, 1)

    emb = tr.condition_embedder
    temb = emb.time_embedder(emb.timesteps_proj(timesteps.reshape(-1).float()).float())
    mod = emb.time_proj(F.silu(temb)).reshape(b, f, 1, 6, -1)  # per frame, broadcast over tokens
    temb = temb.reshape(b, f, 1, -1)
    txt = emb.text_embedder(text)
    if txt.shape[0] != b:
        txt = txt.expand(b, -1, -1)
    cos, sin = grid_cos_sin(list(positions), hp, wp, head_dim, device=x.device)

    hs = tr.patch_embedding(x).flatten(2).transpose(1, 2).float()  # [B, S, dim]

    def per_frame(t: torch.Tensor) -> torch.Tensor:  # [B, S, dim] view as [B, F, N, dim]
        return t.reshape(b, f, n, -1)

    for block in tr.blocks:
        shift, scale, gate, c_shift, c_scale, c_gate = (block.scale_shift_table.float() + mod).unbind(3)
        a = block.attn1
        nrm = (per_frame(_ln(hs, block.norm1)) * (1 + scale) + shift).reshape(b, f * n, -1)
        q = apply_rotary(_rms(a.to_q(nrm), a.norm_q).unflatten(-1, (heads, head_dim)), cos, sin)
        k = apply_rotary(_rms(a.to_k(nrm), a.norm_k).unflatten(-1, (heads, head_dim)), cos, sin)
        v = a.to_v(nrm).unflatten(-1, (heads, head_dim))
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask)
        o = a.to_out[0](o.transpose(1, 2).flatten(2))
        hs = (per_frame(hs) + per_frame(o) * gate).reshape(b, f * n, -1)

        c = block.attn2
        nrm = _ln(hs, block.norm2) if hasattr(block.norm2, "weight") else hs
        q = _rms(c.to_q(nrm), c.norm_q).unflatten(-1, (heads, head_dim))
        k = _rms(c.to_k(txt), c.norm_k).unflatten(-1, (heads, head_dim))
        v = c.to_v(txt).unflatten(-1, (heads, head_dim))
        o = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
        hs = hs + c.to_out[0](o.transpose(1, 2).flatten(2))

        nrm = (per_frame(_ln(hs, block.norm3)) * (1 + c_scale) + c_shift).reshape(b, f * n, -1)
        hs = (per_frame(hs) + per_frame(block.ffn(nrm)) * c_gate).reshape(b, f * n, -1)

    shift, scale = (tr.scale_shift_table.float() + temb[..., None, :]).unbind(3)
    out = (per_frame(_ln(hs, tr.norm_out)) * (1 + scale) + shift).reshape(b, f * n, -1)
    out = tr.proj_out(out)
    out = out.reshape(b, f, hp, wp, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return out.reshape(b, -1, f, h, w)
