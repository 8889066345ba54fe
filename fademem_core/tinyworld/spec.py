"""The tiny world model's fixed spec: its architecture, chunking and the sampler it is trained for.

Shared by training (:mod:`.losses`, :mod:`.loop`, :mod:`.train`), the benchmark's rollouts
(:mod:`.rollout`), the quality check and the reference rollout; it imports nothing of them.
"""
from __future__ import annotations

import torch

from ..model.loading import build_transformer

# The architecture: a real diffusers WanTransformer3DModel at tiny size.
MODEL_CONFIG = {
    "patch_size": [1, 2, 2],
    "num_attention_heads": 3,
    "attention_head_dim": 32,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 32,
    "freq_dim": 32,
    "ffn_dim": 256,
    "num_layers": 4,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
    "rope_max_seq_len": 1024,
}
CLIP_FRAMES = 240
CHUNK = 3
SHIFT = 5.0
SAMPLER = "euler"
SAMPLER_STEPS = 12  # Euler steps per chunk the demo and the benchmark use


def warp(sigma: torch.Tensor | float, shift: float = SHIFT) -> torch.Tensor:
    """Flow-matching timestep shift ``s*sigma / (1 + (s-1)*sigma)``."""
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    return shift * sigma / (1 + (shift - 1) * sigma)


def init_transformer(seed: int) -> torch.nn.Module:
    """A freshly initialised ``WanTransformer3DModel`` of the tiny config (seeded)."""
    torch.manual_seed(seed)
    return build_transformer(MODEL_CONFIG)
