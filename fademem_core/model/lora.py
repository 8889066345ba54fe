"""LoRA adapters (LongLive ``lora.pt``, FadeMem-FT, PEFT / kohya files) merged into Wan weights.

A LoRA adds ``strength * alpha / rank * B @ A`` to a Linear weight ``W [out, in]``
(``A [rank, in]``, ``B [out, rank]``).  Rank comes from ``A``'s shape; alpha from the file:
a per-module ``<module>.alpha`` tensor, a top-level ``alpha``/``lora_alpha`` number or a
``config``/``lora_config`` dict.  PEFT state dicts (what LongLive and FadeMem-FT save) carry no
alpha: then alpha = rank (scale 1), which is how both were trained (rank 256, alpha 256).
Module names may be original Wan names (``blocks.0.self_attn.q``) or diffusers names
(``blocks.0.attn1.to_q``), under any of the usual prefixes.
"""
from __future__ import annotations

import numbers
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch

from .checkpoints import read_file, strip_wrappers

NESTED_LORA_KEYS = ("generator_lora", "lora", "generator_ema", "generator", "model", "state_dict")

_WEIGHT = re.compile(r"^(?P<mod>.+?)\.(?P<kind>lora_A|lora_B|lora_down|lora_up)(?:\.[A-Za-z0-9_]+)?\.weight$")
_ALPHA = re.compile(r"^(?P<mod>.+)\.alpha$")
_ORIGINAL_HINTS = (".self_attn.", ".cross_attn.", ".ffn.0", ".ffn.2", "text_embedding.", "time_embedding.", "head.head")


@dataclass(frozen=True)
class LoraModule:
    """One adapted Linear: ``down`` (A) ``[rank, in]``, ``up`` (B) ``[out, rank]``, ``alpha``."""

    down: torch.Tensor
    up: torch.Tensor
    alpha: float

    @property
    def rank(self) -> int:
        return self.down.shape[0]

    def delta(self) -> torch.Tensor:
        """``alpha / rank * B @ A`` in float32."""
        return (self.up.float() @ self.down.float()) * (self.alpha / self.rank)


def _number(x: Any) -> float | None:
    if isinstance(x, torch.Tensor) and x.numel() == 1:
        return float(x.item())
    if isinstance(x, numbers.Real) and not isinstance(x, bool):
        return float(x)
    return None


def _find_lora_dict(obj: Any) -> tuple[Mapping[str, Any], float | None]:
    """The mapping holding the LoRA tensors and a file-wide alpha (if the file states one)."""
    if not isinstance(obj, Mapping):
        raise ValueError(f"not a LoRA file: expected a dict of tensors, found a {type(obj).__name__}")
    alpha = None
    for key in ("lora_alpha", "alpha"):
        if key in obj and _number(obj[key]) is not None:
            alpha = _number(obj[key])
    for key in ("config", "lora_config", "adapter_config"):
        cfg = obj.get(key)
        if isinstance(cfg, Mapping):
            for ak in ("lora_alpha", "alpha"):
                if _number(cfg.get(ak)) is not None:
                    alpha = _number(cfg.get(ak))
    if any(isinstance(k, str) and _WEIGHT.match(k) for k in obj):
        return obj, alpha
    for key in NESTED_LORA_KEYS:
        sub = obj.get(key)
        if isinstance(sub, Mapping) and any(isinstance(k, str) and _WEIGHT.match(k) for k in sub):
            inner, inner_alpha = _find_lora_dict(sub)
            return inner, inner_alpha if inner_alpha is not None else alpha
    found = ", ".join(repr(k) for k in list(obj)[:6])
    raise ValueError(f"not a LoRA file: no lora_A/lora_B (or lora_down/lora_up) weights found; keys start {found}")


def parse_lora(obj: Any) -> dict[str, LoraModule]:
    """LoRA modules keyed by diffusers module name (e.g. ``blocks.0.attn1.to_q``)."""
    sd, file_alpha = _find_lora_dict(obj)
    downs: dict[str, torch.Tensor] = {}
    ups: dict[str, torch.Tensor] = {}
    alphas: dict[str, float] = {}
    for key, value in sd.items():
        if not isinstance(key, str):
            continue
        m = _WEIGHT.match(key)
        if m and isinstance(value, torch.Tensor):
            target = downs if m["kind"] in ("lora_A", "lora_down") else ups
            target[strip_wrappers(m["mod"])] = value
            continue
        m = _ALPHA.match(key)
        if m and _number(value) is not None:
            alphas[strip_wrappers(m["mod"])] = _number(value)
    if set(downs) != set(ups):
        lonely = sorted(set(downs) ^ set(ups))[:5]
        raise ValueError(f"LoRA file is incomplete: modules with only one of A/B: {lonely}")
    names = _to_diffusers_names(sorted(downs))
    modules: dict[str, LoraModule] = {}
    for name in sorted(downs):
        a, b = downs[name], ups[name]
        a2 = a.reshape(a.shape[0], -1) if a.ndim > 2 else a  # 1x1 convs saved as 4-D
        b2 = b.reshape(b.shape[0], -1) if b.ndim > 2 else b
        if a2.ndim != 2 or b2.ndim != 2 or b2.shape[1] != a2.shape[0]:
            raise ValueError(f"LoRA module {name!r}: A {tuple(a.shape)} and B {tuple(b.shape)} do not compose")
        rank = a2.shape[0]
        alpha = alphas.get(name, file_alpha if file_alpha is not None else float(rank))
        modules[names[name]] = LoraModule(a2, b2, alpha)
    return modules


def _to_diffusers_names(names: list[str]) -> dict[str, str]:
    """Map module names to diffusers names with diffusers' own converter (one name at a time)."""
    if not any(h in f"{n}." or n.startswith(h) for n in names for h in _ORIGINAL_HINTS):
        return {n: n for n in names}
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    out = {}
    for n in names:
        converted = convert_wan_transformer_to_diffusers({f"{n}.weight": None})
        (new_key,) = converted.keys()
        out[n] = new_key[: -len(".weight")]
    return out


def load_lora(path: str | Path) -> dict[str, LoraModule]:
    """Read and parse a LoRA file (``.pt``/``.safetensors``)."""
    obj, _meta = read_file(path, what="LoRA")
    return parse_lora(obj)


def merge_lora_(
    state_dict: dict[str, torch.Tensor],
    lora: Mapping[str, LoraModule],
    strength: float,
    dtype: torch.dtype = torch.float32,
) -> int:
    """In place: ``W += strength * alpha / rank * B @ A`` for every adapted Linear (diffusers names).

    The sum is formed in float32 and stored in ``dtype`` (the model's weight dtype, so a bf16
    model never holds float32 copies).  Every target is checked first, so a LoRA for another
    model changes nothing and raises.  Returns the number of merged weights.
    """
    problems = []
    for name, mod in lora.items():
        w = state_dict.get(f"{name}.weight")
        if w is None:
            problems.append(f"{name}: no such Linear in the model")
        elif w.ndim != 2 or tuple(w.shape) != (mod.up.shape[0], mod.down.shape[1]):
            problems.append(f"{name}: weight {tuple(w.shape)} vs LoRA {(mod.up.shape[0], mod.down.shape[1])}")
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValueError(
            f"LoRA targets do not match this model ({len(problems)} of {len(lora)} modules): "
            + "; ".join(problems[:5]) + more
        )
    for name, mod in lora.items():
        key = f"{name}.weight"
        w = state_dict[key]
        state_dict[key] = (w.float() + float(strength) * mod.delta()).to(dtype)
    return len(lora)
