"""What a weights file records about itself: the JSON beside it, and the sampler it names.

The shipped tiny-world weights (``fademem_core/weights/``) are base flow models trained for the
Euler ODE over N steps, not for the few-step x0 schedule of the distilled generators; the JSON
written next to them (``tiny_world.json``) says so in its ``"sampler"`` record, e.g.
``{"name": "euler", "steps": 12, "shift": 5.0}``.  :func:`fademem_core.load_model` reads that
record once, here, and the loaded model carries it (``CausalWan.sampler_record``); the CLI
demo and the nodes turn it into ``generate`` options with
:func:`fademem_core.rollout.timesteps.sampler_options`.  A file without such a JSON records
nothing (``None``): the caller's own options apply.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..checks import SAMPLERS, check_int, check_positive

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
# the weights shipped inside the package (no download): name -> file in WEIGHTS_DIR
EMBEDDED_WEIGHTS = {"tiny_world": "tiny_world.safetensors", "tiny_world_ft": "tiny_world_ft.safetensors"}

__all__ = ["EMBEDDED_WEIGHTS", "SamplerRecord", "embedded_weights", "read_record", "sampler_record"]


@dataclass(frozen=True)
class SamplerRecord:
    """The sampler a weights file was trained for: ``generate(sampler=name, steps=even_timesteps(steps), shift=shift)``."""

    name: str  # one of SAMPLERS
    steps: int  # denoising steps per chunk, evenly spaced from t = 1000 before the shift
    shift: float  # flow-matching timestep shift


def embedded_weights(name: str) -> Path:
    """The path of a shipped weights file (``"tiny_world"`` = TF base, ``"tiny_world_ft"`` = FadeMem-FT)."""
    if name not in EMBEDDED_WEIGHTS:
        raise ValueError(f"embedded weights must be one of {sorted(EMBEDDED_WEIGHTS)}, got {name!r}")
    return WEIGHTS_DIR / EMBEDDED_WEIGHTS[name]


def read_record(weights: str | Path) -> dict[str, Any]:
    """The JSON record next to ``weights`` (same name, ``.json``); ``{}`` when there is none.

    A file that exists but is not a JSON object is an error: it would otherwise silently
    drop the sampler the weights need."""
    path = Path(weights).with_suffix(".json")
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ValueError(f"{path.name}: the record next to the weights is not readable JSON ({e})") from None
    if not isinstance(record, dict):
        raise ValueError(f"{path.name}: expected a JSON object, got {type(record).__name__}")
    return record


def sampler_record(record: dict[str, Any], source: str = "the weights' record") -> SamplerRecord | None:
    """The record's ``"sampler"`` entry as a :class:`SamplerRecord` (None when it names none)."""
    spec = record.get("sampler")
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ValueError(f"{source}: 'sampler' must be an object like {{'name': 'euler', 'steps': 12, "
                         f"'shift': 5.0}}, got {spec!r}")
    name, steps, shift = spec.get("name"), spec.get("steps"), spec.get("shift", 5.0)
    if name not in SAMPLERS:
        raise ValueError(f"{source}: sampler name must be one of {SAMPLERS}, got {name!r}")
    steps = check_int(f"{source}: sampler steps", steps, 1)
    shift = check_positive(f"{source}: sampler shift", shift)
    return SamplerRecord(str(name), steps, shift)
