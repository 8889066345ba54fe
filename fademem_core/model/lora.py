"""LoRA adapters (LongLive ``lora.pt``, FadeMem-FT, PEFT / kohya files) merged into Wan weights.

A LoRA adds ``strength * alpha / rank * B @ A`` to a Linear weight ``W [out, in]``
(``A [rank, in]``, ``B [out, rank]``).  Rank comes from ``A``'s shape; alpha, first found of:
the ``alpha`` the caller gives (every module), the file itself (a per-module ``<module>.alpha``
tensor, a top-level ``alpha``/``lora_alpha`` number or a ``config``/``lora_config`` dict), a
PEFT ``adapter_config.json`` beside the file (``lora_alpha``, ``alpha_pattern``, ``use_rslora``),
else alpha = rank (scale 1), which is right for LongLive's ``lora.pt`` (rank 256, alpha 256:
plain PEFT state dicts carry no alpha) and is printed as an assumption.
Module names may be original Wan names (``blocks.0.self_attn.q``) or diffusers names
(``blocks.0.attn1.to_q``), under any of the usual prefixes.
"""
from __future__ import annotations

import json
import math
import numbers
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch

from .checkpoints import read_file, strip_wrappers

NESTED_LORA_KEYS = ("generator_lora", "lora", "generator_ema", "generator", "model", "state_dict")
ADAPTER_CONFIG = "adapter_config.json"  # what PEFT's save_pretrained writes beside the weights
_PEFT_PREFIX = "base_model.model."

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


def parse_lora(
    obj: Any,
    alpha: float | None = None,
    fallback: Callable[[str, int], float] | None = None,
) -> dict[str, LoraModule]:
    """LoRA modules keyed by diffusers module name (e.g. ``blocks.0.attn1.to_q``).

    ``alpha`` replaces every module's alpha.  ``fallback(name, rank)`` gives the alpha of a
    module the file states none for (``name`` as PEFT knew the module; default: the rank).
    """
    sd, file_alpha = _find_lora_dict(obj)
    downs: dict[str, torch.Tensor] = {}
    ups: dict[str, torch.Tensor] = {}
    alphas: dict[str, float] = {}
    peft_names: dict[str, str] = {}
    for key, value in sd.items():
        if not isinstance(key, str):
            continue
        m = _WEIGHT.match(key)
        if m and isinstance(value, torch.Tensor):
            target = downs if m["kind"] in ("lora_A", "lora_down") else ups
            target[strip_wrappers(m["mod"])] = value
            peft_names[strip_wrappers(m["mod"])] = m["mod"].removeprefix(_PEFT_PREFIX)
            continue
        m = _ALPHA.match(key)
        if m and _number(value) is not None:
            alphas[strip_wrappers(m["mod"])] = _number(value)
    if set(downs) != set(ups):
        lonely = sorted(set(downs) ^ set(ups))[:5]
        raise ValueError(f"LoRA file is incomplete: modules with only one of A/B: {lonely}")
    names = to_diffusers_module_names(sorted(downs))
    modules: dict[str, LoraModule] = {}
    for name in sorted(downs):
        a, b = downs[name], ups[name]
        if a.ndim < 2 or b.ndim < 2 or 0 in a.shape or 0 in b.shape:  # rank 0 among them
            raise ValueError(f"LoRA module {name!r}: A {tuple(a.shape)} and B {tuple(b.shape)} must be "
                             f"non-empty matrices (rank >= 1)")
        a2 = a.reshape(a.shape[0], -1) if a.ndim > 2 else a  # 1x1 convs saved as 4-D
        b2 = b.reshape(b.shape[0], -1) if b.ndim > 2 else b
        if b2.shape[1] != a2.shape[0]:
            raise ValueError(f"LoRA module {name!r}: A {tuple(a.shape)} and B {tuple(b.shape)} do not compose")
        rank = a2.shape[0]
        for part, t in (("A", a2), ("B", b2)):
            if not t.is_floating_point():
                raise ValueError(f"LoRA module {name!r}: {part} must hold floating-point weights, got {t.dtype}")
            if not bool(torch.isfinite(t).all()):
                raise ValueError(f"LoRA module {name!r}: {part} holds NaN or inf values")
        if alpha is not None:
            mod_alpha = float(alpha)
        elif name in alphas or file_alpha is not None:
            mod_alpha = alphas.get(name, file_alpha)
        else:
            mod_alpha = fallback(peft_names[name], rank) if fallback else float(rank)
        if not math.isfinite(mod_alpha):
            raise ValueError(f"LoRA module {name!r}: alpha must be a finite number, got {mod_alpha!r}")
        modules[names[name]] = LoraModule(a2, b2, mod_alpha)
    return modules


@dataclass(frozen=True)
class AdapterConfig:
    """The parts of a PEFT ``adapter_config.json`` that set a LoRA's scale."""

    path: Path
    lora_alpha: float
    r: int | None = None
    alpha_pattern: dict[str, float] = field(default_factory=dict)
    rank_pattern: dict[str, int] = field(default_factory=dict)
    use_rslora: bool = False

    @classmethod
    def read(cls, path: Path) -> "AdapterConfig":
        try:
            cfg = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"{path} is not a readable adapter config: {e}") from e
        if not isinstance(cfg, dict) or _number(cfg.get("lora_alpha")) is None:
            raise ValueError(f"{path} has no numeric lora_alpha; pass the LoRA's alpha explicitly")
        if cfg.get("use_dora"):
            raise ValueError(f"{path}: a DoRA adapter (use_dora) cannot be merged as a plain LoRA")
        return cls(path, _number(cfg["lora_alpha"]), cfg.get("r"), dict(cfg.get("alpha_pattern") or {}),
                   dict(cfg.get("rank_pattern") or {}), bool(cfg.get("use_rslora")))

    def alpha_for(self, name: str, rank: int) -> float:
        """Alpha of module ``name`` (as PEFT named it) of rank ``rank``, in ``alpha / rank`` form."""
        want = _pattern_value(self.rank_pattern, name, self.r)
        if want is not None and want != rank:
            raise ValueError(
                f"{self.path} says rank {want} for {name!r} but the LoRA file's rank is {rank}: "
                "the config belongs to another adapter (move it, or pass the alpha explicitly)"
            )
        alpha = float(_pattern_value(self.alpha_pattern, name, self.lora_alpha))
        # rsLoRA scales by alpha / sqrt(rank): the same update as alpha * sqrt(rank) / rank
        return alpha * math.sqrt(rank) if self.use_rslora else alpha


def _pattern_value(patterns: Mapping[str, Any], name: str, default: Any) -> Any:
    """PEFT's rule: the first pattern ``p`` (a regex) with ``re.match(rf"(.*\\.)?({p})$", name)``."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", name):
            return value
    return default


def to_diffusers_module_names(names: list[str]) -> dict[str, str]:
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


def check_alpha(alpha: object) -> float | None:
    """Validate an explicit LoRA alpha (None: from the file, its adapter config, or = rank)."""
    if alpha is None:
        return None
    if _number(alpha) is None or isinstance(alpha, torch.Tensor) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"lora_alpha must be a positive finite number or None, got {alpha!r}")
    return float(alpha)


def load_lora(path: str | Path, alpha: float | None = None) -> dict[str, LoraModule]:
    """Read and parse a LoRA file (``.pt``/``.safetensors``); ``alpha`` overrides the file's.

    Without ``alpha``, modules the file gives none take it from a PEFT ``adapter_config.json``
    beside the file, else alpha = rank; either is printed to stderr.
    """
    alpha = check_alpha(alpha)
    p = Path(path)
    beside = p.expanduser().parent / ADAPTER_CONFIG
    config = AdapterConfig.read(beside) if alpha is None and beside.is_file() else None
    obj, _meta = read_file(path, what="LoRA")
    if alpha is not None:
        return parse_lora(obj, alpha=alpha)
    used: set[tuple[float, int]] = set()

    def fallback(name: str, rank: int) -> float:
        value = config.alpha_for(name, rank) if config is not None else float(rank)
        used.add((value, rank))
        return value

    modules = parse_lora(obj, fallback=fallback)
    if used:
        pairs = ", ".join(f"alpha {a:g} at rank {r}" for a, r in sorted(used))
        source = (f"from {config.path.name} beside it" if config is not None else
                  "assumed alpha = rank (scale 1; right for LongLive's rank-256/alpha-256 lora.pt)")
        print(f"LoRA {p.name} states no alpha: {pairs}, {source}; pass lora_alpha (CLI "
              "--lora-alpha, loader node lora_alpha) if it was trained with another", file=sys.stderr)
    return modules


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
