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
    # schedule (pure Python)
    "plan_layout": "schedule",
    "plan_history": "schedule",
    "Layout": "schedule",
    # cache policies
    "CachePolicy": "policies",
    "FadeMem": "policies",
    "SinkWindow": "policies",
    "SlidingWindow": "policies",
    "FullCache": "policies",
    "KVGeometry": "policies",
    "policy_from_name": "policies",
    "POLICIES": "policies",
    # model + loading
    "CausalWan": "model",
    "load_model": "loading",
    "tiny_model": "loading",
    # sampler
    "generate": "sampler",
    "to_raw": "sampler",
    "from_raw": "sampler",
    "RolloutInterrupted": "sampler",
    "StepInfo": "sampler",
    "timestep_schedule": "sampler",
    # analysis
    "analyze_video": "spectral",
    "suggest_beta": "spectral",
    "SpectralResult": "spectral",
    "draw_spectral": "spectral_plot",
    # pictures
    "draw_layout": "layout_picture",
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
