"""A procedural toy world in Wan's latent format, its probes, and the tiny model trained on it.

* :mod:`.world`: scenes (textured drifting background, one or two sprites with a per-video
  identity; sprite B enters late, both leave for 40-120 frames and return), rendered to
  latents ``[16, F, 8, 8]``; prompts ``[1, 4, 32]``; a fixed latent -> RGB map.
* :mod:`.probes`: analytic read-back of every frame's state (exact on rendered frames).
* :mod:`.scores`: long-horizon consistency scores and memory events (recall after a return).
* :mod:`.train`: training through the engine with the cache policy in the loop
  (``python -m fademem_core.tinyworld.train --out PATH --minutes N``): the options are a
  :class:`~.recipe.Recipe`, the loops :mod:`.loop`, the losses :mod:`.losses`, windows at a
  sprite's return :mod:`.returns`, the model's fixed spec :mod:`.spec`.
* :mod:`.rollout`: ground-truth-primed rollouts (the benchmark protocol).
* :mod:`.quality`: does a rollout render the world (the demo's check).
* :mod:`.lookup`: does a model read a returning sprite's detail from its memory (returns
  forced to one frame, one estimate from noise; ``bench/bench_tiny_weights.py``).
* :mod:`.distill`: DMD in the small (a bidirectional window teacher, the generator's own
  rollout, the distribution-matching step); :mod:`.denoising`: where a window model draws the
  world and where it only cleans its input (``bench/bench_window_teacher.py``).
* :mod:`.reference`: a slow cache-free Euler rollout (equals a full KV cache), for checks.

``WEIGHTS`` is the base model (trained with the full memory), ``WEIGHTS_FT`` the base
fine-tuned with FadeMem in the loop; load either with ``fademem_core.load_model(path)`` and
sample with ``generate(..., **sampler_options(model.sampler_record))``: the Euler ODE over the
steps the JSON next to the weights records (``"sampler"``), e.g. 12.
"""
from __future__ import annotations

from ..model.recorded import embedded_weights

WEIGHTS = embedded_weights("tiny_world")
WEIGHTS_FT = embedded_weights("tiny_world_ft")

__all__ = ["WEIGHTS", "WEIGHTS_FT"]
