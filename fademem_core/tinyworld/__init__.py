"""A procedural toy world in Wan's latent format, its probes, and the tiny model trained on it.

* :mod:`.world`: scenes (textured drifting background, one or two sprites with a per-video
  identity that leave the frame for longer than a visible window and return), rendered to
  latents ``[16, F, 8, 8]``; prompts ``[1, 4, 32]``; a fixed latent -> RGB map.
* :mod:`.probes`: analytic read-back of every frame's state (exact on rendered frames).
* :mod:`.scores`: long-horizon consistency scores built on the probes.
* :mod:`.forward` / :mod:`.train`: the block-causal teacher-forcing forward and the training
  script (``python -m fademem_core.tinyworld.train --out PATH --minutes N``).
* :mod:`.reference`: a slow cache-free rollout (equals a full KV cache), for checks.

``WEIGHTS`` is the shipped model; load it with ``fademem_core.load_model(WEIGHTS)``.
"""
from __future__ import annotations

from pathlib import Path

WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "tiny_world.safetensors"

__all__ = ["WEIGHTS"]
