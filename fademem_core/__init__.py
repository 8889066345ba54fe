"""FadeMem: bounded, distance-aware KV memory for autoregressive video diffusion.

Framework-free engine (torch + diffusers, never ComfyUI).  Public names are imported lazily so
``import fademem_core`` is cheap and the pure-Python planner works without touching torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> submodule that defines it
_EXPORTS = {
    # Wan constants (no torch until a conversion runs)
    "FPS": "wan",
    "video_frames_for_latents": "wan",
    "latents_for_video_frames": "wan",
    "latent_frame_of_video_frame": "wan",
    # memory planner (pure Python)
    "plan_layout": "memory.planner",
    "plan_history": "memory.planner",
    "plan_snapshots": "memory.planner",
    "check_plan_cost": "checks",
    "Layout": "memory.planner",
    # cache policies
    "CachePolicy": "memory.policies",
    "FadeMem": "memory.policies",
    "FadeMemRelease": "memory.policies",
    "InfinityRope": "memory.policies",
    "MemRope": "memory.policies",
    "DeepForcing": "memory.policies",
    "MemFlow": "memory.policies",
    "policy_parameters": "memory.policies",
    "PRESETS": "memory.policies",
    "SinkWindow": "memory.policies",
    "SlidingWindow": "memory.policies",
    "FullCache": "memory.policies",
    "KVGeometry": "memory.policies",
    "policy_from_name": "memory.policies",
    "POLICIES": "memory.policies",
    "POSITION_STRATEGIES": "memory.positions",
    "OPERATORS": "memory.storage",
    # model + loading
    "CausalWan": "model.causal_wan",
    "load_model": "model.loading",
    "EMBEDDED_WEIGHTS": "model.recorded",
    "embedded_weights": "model.recorded",
    "SamplerRecord": "model.recorded",
    "tiny_model": "model.loading",
    "causal_wan_from_weights": "model.shared",
    # sampler
    "generate": "rollout.sampler",
    "chunk_spans": "rollout.priming",
    "to_raw": "wan",
    "from_raw": "wan",
    "RolloutInterrupted": "rollout.sampler",
    "StepInfo": "rollout.sampler",
    "timestep_schedule": "rollout.timesteps",
    "even_timesteps": "rollout.timesteps",
    "sampler_options": "rollout.timesteps",
    "sampler_summary": "rollout.timesteps",
    "check_prompt_starts": "checks",
    "resolve_switch": "rollout.switching",
    # option choices (pure Python): what the CLI and the node widgets offer
    "SWITCH_MODES": "checks",
    "CONTEXT_INPUTS": "checks",
    "WEIGHT_CHOICES": "checks",
    "SAMPLER_CHOICES": "checks",
    # saving while sampling
    "stream_rollout": "rollout.streaming",
    "StreamingSave": "rollout.streaming",
    "SavedVideo": "rollout.streaming",
    "RolloutStopped": "rollout.streaming",
    "LiveChunks": "rollout.live",
    "StreamingVAEDecoder": "rollout.video",
    "wan_vae_from_original": "rollout.video",
    # analysis
    "analyze_video": "analysis.spectral",
    "suggest_beta": "analysis.spectral",
    "SpectralResult": "analysis.spectral",
    "draw_spectral": "analysis.spectral_plot",
    "image_to_frames": "analysis.video_io",
    "latent_to_frames": "analysis.video_io",
    # the embedded tiny world (fademem_core.tinyworld): prompts, its latent -> RGB map, probes
    "NUM_CLASSES": "tinyworld.world",
    "NUM_FAMILIES": "tinyworld.world",
    "prompt_embedding": "tinyworld.world",
    "to_rgb": "tinyworld.world",
    "read_frames": "tinyworld.probes",
    # pictures
    "draw_layout": "memory.picture",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fademem_core' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
