"""Reading checkpoint files into flat ``{name: tensor}`` dicts (no model knowledge here).

Formats: ``.safetensors`` (header metadata returned too) and PyTorch pickles
(``.pt``/``.pth``/``.ckpt``/``.bin``) read with ``torch.load(weights_only=True, mmap=True)``:
a pickle that would need code execution to load is refused, never executed.
Training checkpoints nest their weights (``generator_ema``, ``generator``, ``model``...) and
decorate names (``model.``, ``_fsdp_wrapped_module.``): :func:`unwrap` and
:func:`strip_wrappers` undo that.  The Self-Forcing family's files (Self-Forcing, LongLive,
CausVid, thu-ml Causal-Forcing) are all of this kind; Causal-Forcing's trainer saves a single
set, ``generator`` (its chunk-wise model, read without ``--use_ema``) or ``generator_ema`` with
FSDP names (its frame-wise models, read with ``--use_ema``), so they load without a choice.
"""
from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from ..checks import WEIGHT_CHOICES, check_choice
from ..files import path_kind

SAFETENSORS_SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")

# Where training scripts keep the weights, in the order they are looked for when a file holds
# one set (which of generator_ema / generator a file holding both gives: select_weights).
NESTED_KEYS = ("generator_ema", "generator", "model", "state_dict", "module", "transformer")
_WEIGHT_KEYS = {"ema": "generator_ema", "generator": "generator"}
# top-level keys only LongLive's trainer writes beside the weights (Self-Forcing's writes
# generator, critic and generator_ema alone)
_LONGLIVE_KEYS = ("generator_optimizer", "critic_optimizer")
_SELF_FORCING_KEYS = {"generator", "generator_ema", "critic"}

# Name segments added by wrappers (FSDP, torch.compile, activation checkpointing, DDP).
WRAPPER_SEGMENTS = ("_fsdp_wrapped_module.", "_orig_mod.", "_checkpoint_wrapped_module.")
# Leading prefixes of the DiT inside bigger modules (ComfyUI, Self-Forcing's wrapper, DDP, PEFT).
LEADING_PREFIXES = ("base_model.model.", "model.diffusion_model.", "diffusion_model.", "model.", "module.", "transformer.")

CONFIG_KEY = "fademem_config"


def check_file(path: str | Path, what: str = "checkpoint") -> Path:
    """Return ``path`` as a Path after checking it is an existing file of a known format."""
    p = Path(path).expanduser()
    if not p.exists():
        raise FileNotFoundError(f"{what} not found: {str(p)!r}")
    if not p.is_file():
        raise ValueError(f"{what} must be a regular file, got {path_kind(p)}: {str(p)!r}")
    if p.suffix.lower() not in SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES:
        raise ValueError(
            f"{what} {p.name!r} has an unknown format {p.suffix!r}; expected one of "
            f"{', '.join(SAFETENSORS_SUFFIXES + PICKLE_SUFFIXES)}"
        )
    return p


def read_file(path: str | Path, what: str = "checkpoint") -> tuple[Any, dict[str, str]]:
    """Load ``path``; returns ``(object, safetensors metadata)`` (metadata empty for pickles).

    Raises FileNotFoundError for a missing file and ValueError for an unknown format, a
    truncated/corrupt file or a pickle that needs code execution.
    """
    p = check_file(path, what)
    if p.suffix.lower() in SAFETENSORS_SUFFIXES:
        return _read_safetensors(p, what)
    return read_pickle(p, what), {}


def _read_safetensors(p: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    from safetensors import safe_open

    try:
        with safe_open(str(p), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error types for bad headers/sizes
        raise ValueError(f"{what} {p.name!r} is not a readable safetensors file (truncated or corrupt?): {e}") from e
    return tensors, meta


def _refusal_reason(e: Exception) -> str:
    """What the pickle asked for (``GLOBAL posix.system``), not torch's advice on how to load
    it anyway (``weights_only=False``, allowlisting), which would run the file's code."""
    found = re.search(r"GLOBAL ([\w.]+)", str(e))
    return f"it calls {found.group(1)}" if found else "it holds objects other than tensors"


def read_pickle(p: Path, what: str) -> Any:
    """``torch.load(weights_only=True)`` of ``p``: ValueError (one line) for a pickle that would
    need code execution, a truncated or a corrupt file."""
    def load(mmap: bool) -> Any:
        return torch.load(str(p), map_location="cpu", weights_only=True, mmap=mmap)

    try:
        try:
            return load(mmap=True)
        except RuntimeError as e:
            # files written by the legacy (non-zip) serializer cannot be memory-mapped
            if "mmap" not in str(e):
                raise
            return load(mmap=False)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"{what} {p.name!r} is a pickle that needs code execution to load; refused (only plain "
            f"tensors/dicts are accepted, torch.load(weights_only=True)). Details: {_refusal_reason(e)}"
        ) from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"{what} {p.name!r} could not be read (truncated or corrupt?): {reason}") from e


def is_state_dict(obj: Any) -> bool:
    """True for a mapping that holds at least one tensor directly."""
    return isinstance(obj, Mapping) and any(isinstance(v, torch.Tensor) for v in obj.values())


def unwrap(obj: Any, keys: tuple[str, ...] = NESTED_KEYS) -> tuple[dict[str, torch.Tensor], str]:
    """Find the weights inside a training checkpoint.

    Returns ``(state_dict, where)``: ``where`` names the nested key used ("" for the top level).
    A top-level dict holding nested weight dicts is searched in ``keys`` order first, so
    ``{"generator": ..., "generator_ema": ...}`` yields the EMA weights.
    """
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a dict of tensors, found a {type(obj).__name__}")
    for key in keys:
        sub = obj.get(key)
        if is_state_dict(sub):
            return {k: v for k, v in sub.items() if isinstance(v, torch.Tensor)}, key
    if is_state_dict(obj):
        return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}, ""
    found = ", ".join(f"{k!r}: {type(v).__name__}" for k, v in list(obj.items())[:8])
    raise ValueError(f"no tensors found (looked under {', '.join(keys)}); top level holds {{{found}}}")


def check_weights(weights: object) -> str:
    """Validate a ``weights`` choice (``"auto"``, ``"ema"``, ``"generator"``; None = auto)."""
    return "auto" if weights is None else check_choice("weights", weights, WEIGHT_CHOICES)


def checkpoint_project(obj: Mapping[str, Any]) -> str | None:
    """The training code that wrote ``obj``, where its layout tells: "LongLive", "Self-Forcing".

    LongLive's trainer stores its optimizer states beside the weights and its EMA names keep
    FSDP's ``_fsdp_wrapped_module.`` (its inference strips them); Self-Forcing's stores only
    ``generator``, ``critic`` and ``generator_ema``, EMA names clean (its inference loads them
    strictly).  None: neither is certain.
    """
    ema = obj.get("generator_ema")
    fsdp_ema = is_state_dict(ema) and any(WRAPPER_SEGMENTS[0] in k for k in ema)
    if any(k in obj for k in _LONGLIVE_KEYS) or fsdp_ema:
        return "LongLive"
    if set(obj) <= _SELF_FORCING_KEYS:
        return "Self-Forcing"
    return None


def select_weights(obj: Any, weights: str = "auto") -> tuple[dict[str, torch.Tensor], str, str | None]:
    """The weights a checkpoint holds, ``(state_dict, where, note)``.

    A file holding both ``generator_ema`` and ``generator`` gives the one ``weights`` names;
    ``"auto"`` follows the file's own project (Self-Forcing's inference reads the EMA weights,
    ``--use_ema``; LongLive's reads ``generator``, ``use_ema: false``), EMA when that cannot be
    told, and ``note`` says which was loaded and how to load the other.  ``"ema"`` /
    ``"generator"`` on a file without that set raise ValueError; other files ignore ``"auto"``.
    """
    weights = check_weights(weights)
    if not isinstance(obj, Mapping):
        raise ValueError(f"expected a dict of tensors, found a {type(obj).__name__}")
    present = [c for c, key in _WEIGHT_KEYS.items() if is_state_dict(obj.get(key))]
    if weights != "auto" and weights not in present:
        held = ", ".join(repr(k) for k in list(obj)[:8])
        raise ValueError(f"weights={weights!r} asks for the {_WEIGHT_KEYS[weights]!r} weights, "
                         f"which this checkpoint does not hold (top level: {held})")
    note = None
    if weights == "auto" and len(present) == 2:
        project = checkpoint_project(obj)
        weights = "generator" if project == "LongLive" else "ema"
        why = {"LongLive": "LongLive's layout; its inference runs with use_ema: false",
               "Self-Forcing": "Self-Forcing's layout; its inference runs with --use_ema (a "
                               "Causal-Forcing chunk-wise file would be read as 'generator')",
               None: "the training project cannot be told from the file; LongLive's inference "
                     "would load 'generator'"}[project]
        other = "generator" if weights == "ema" else "ema"
        note = (f"checkpoint holds 'generator_ema' and 'generator': loaded "
                f"{_WEIGHT_KEYS[weights]!r} ({why}); for the other pass weights={other!r} "
                f"(CLI --weights {other}, loader node 'weights')")
    if weights != "auto":
        key = _WEIGHT_KEYS[weights]
        return {k: v for k, v in obj[key].items() if isinstance(v, torch.Tensor)}, key, note
    sd, where = unwrap(obj)
    return sd, where, note


def strip_wrappers(name: str) -> str:
    """Remove wrapper segments and leading container prefixes from a parameter name."""
    for seg in WRAPPER_SEGMENTS:
        name = name.replace(seg, "")
    changed = True
    while changed:
        changed = False
        for pre in LEADING_PREFIXES:
            if name.startswith(pre):
                name = name[len(pre):]
                changed = True
    return name


def strip_state_dict(sd: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """:func:`strip_wrappers` over every key; refuses collisions (two names for one weight)."""
    out: dict[str, torch.Tensor] = {}
    for k, v in sd.items():
        nk = strip_wrappers(k)
        if nk in out:
            raise ValueError(f"two checkpoint entries map to the same weight {nk!r} (second: {k!r})")
        out[nk] = v
    return out


def stored_config(obj: Any, meta: Mapping[str, str]) -> dict[str, Any] | None:
    """The model config a FadeMem-written file carries (safetensors metadata or pickle key)."""
    raw = meta.get(CONFIG_KEY)
    if raw is None and isinstance(obj, Mapping):
        raw = obj.get(CONFIG_KEY)
    if raw is None:
        return None
    try:
        cfg = json.loads(raw) if isinstance(raw, str) else dict(raw)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{CONFIG_KEY} entry is not valid JSON: {e}") from e
    if not isinstance(cfg, dict):
        raise ValueError(f"{CONFIG_KEY} entry must be a JSON object, got {type(cfg).__name__}")
    return cfg
