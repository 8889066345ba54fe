"""A :class:`CausalWan` over weights another program already holds, shared rather than copied.

A host such as ComfyUI keeps a Wan2.1 DiT as its own module (original Wan names:
``blocks.0.self_attn.q.weight``, maybe under ``model.diffusion_model.``), with LoRA patches
already merged into the tensors it holds.  :func:`causal_wan_from_weights` takes that module's
state dict (or the module) and builds the engine's model on top of the *same* tensors: every
Linear weight and bias is used in place (same storage, no copy), whatever its dtype.

What is copied, and why:

* the few precision-critical parameters (timestep embedding, modulation tables, the q/k and
  cross-attention norm gains) are held in float32, as :func:`load_model` holds them (a few MiB
  for the 1.3B model);
* the patch-embedding convolution and any other non-Linear weight not in the compute dtype is
  cast once (tens of KiB).

Linear weights stored in another dtype than the compute dtype (float8 ``e4m3fn``/``e5m2``, or
bf16 weights computed in float32) are upcast per layer at every call (:class:`UpcastLinear`),
as ComfyUI's own "manual cast" layers do; scaled-fp8 files (a ``scale_weight`` per Linear)
are dequantised the same way, ``weight * scale_weight``.  Framework-free: no ComfyUI import.
"""
from __future__ import annotations

from typing import Mapping

import torch
import torch.nn.functional as F

from .causal_wan import FP32_MODULE_SUFFIXES, FP32_PARAM_NAMES, CausalWan
from .checkpoints import strip_state_dict
from .loading import build_transformer, check_structure, infer_config, rebuild_rope, refuse_i2v, to_diffusers_names
from .lora import to_diffusers_module_names

COMPUTE_DTYPES = (torch.float32, torch.bfloat16, torch.float16)
FP8_DTYPES = tuple(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e5m2") if hasattr(torch, n))
SCALE_WEIGHT = ".scale_weight"
# entries of scaled-fp8 files that are no weights: the file marker and the input scales (used by
# fp8 matrix multiplies only; an upcast layer multiplies in the compute dtype and needs none)
_SCALE_EXTRAS = (".scale_input",)
_SCALE_MARKERS = ("scaled_fp8",)


class UpcastLinear(torch.nn.Module):
    """A Linear whose (shared) weight is stored in another dtype, cast to the input's per call.

    ``weight [out, in]`` / ``bias [out]`` are kept as given (no copy); ``scale`` (a scalar or
    per-row tensor, scaled-fp8 files) multiplies the upcast weight.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, scale: torch.Tensor | None = None) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else torch.nn.Parameter(bias, requires_grad=False)
        self.register_buffer("scale", scale, persistent=False)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.to(x.dtype)
        if self.scale is not None:
            w = w * self.scale.to(x.dtype)
        b = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, w, b)


def _plain_weights(weights: Mapping[str, torch.Tensor] | torch.nn.Module) -> dict[str, torch.Tensor]:
    if isinstance(weights, torch.nn.Module):
        return dict(weights.state_dict())  # detached views of the module's own tensors
    if not isinstance(weights, Mapping):
        raise ValueError(f"weights must be a state dict or a torch module, got {type(weights).__name__}")
    return {k: v for k, v in weights.items() if isinstance(v, torch.Tensor)}


def _split_scales(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(weights, {module: scale_weight})`` with scaled-fp8 entries taken out; names diffusers'."""
    scales = {k[: -len(SCALE_WEIGHT)]: v for k, v in sd.items() if k.endswith(SCALE_WEIGHT)}
    rest = {k: v for k, v in sd.items() if not (k.endswith(SCALE_WEIGHT) or k.endswith(_SCALE_EXTRAS)
                                                   or k in _SCALE_MARKERS)}
    names = to_diffusers_module_names(sorted(scales)) if scales else {}
    return rest, {names[m]: s for m, s in scales.items()}


_CHOOSE = ("load the model with weight_dtype default (its bf16/fp16/fp32 weights) or fp8_e4m3fn / "
           "fp8_e5m2 (upcast per layer)")


def _check_dtypes(sd: Mapping[str, torch.Tensor]) -> None:
    """Refuse weights stored in a dtype no layer can be run from (int8, packed quantisations)."""
    for key, t in sd.items():
        if t.dtype not in COMPUTE_DTYPES + FP8_DTYPES:
            raise ValueError(f"Wan weight {key} is stored as {str(t.dtype).removeprefix('torch.')}, which "
                             f"FadeMem cannot run; {_CHOOSE}")


def compute_dtype_for(weight_dtype: torch.dtype, requested: torch.dtype | None = None) -> torch.dtype:
    """The dtype the model computes in: ``requested``, else the weights' own (bf16 for fp8)."""
    if requested is not None:
        if requested not in COMPUTE_DTYPES:
            raise ValueError(f"compute dtype must be one of float32, bfloat16, float16, got {requested}")
        return requested
    if weight_dtype in COMPUTE_DTYPES:
        return weight_dtype
    if weight_dtype in FP8_DTYPES:
        return torch.bfloat16
    raise ValueError(f"Wan weights stored as {weight_dtype} cannot be run; {_CHOOSE}")


def _keep_fp32(name: str) -> bool:
    dotted = f".{name}"
    return any(f".{s}." in dotted for s in FP32_MODULE_SUFFIXES) or name.rsplit(".", 1)[-1] in FP32_PARAM_NAMES


def _linear_names(tr: torch.nn.Module) -> set[str]:
    return {name for name, m in tr.named_modules() if isinstance(m, torch.nn.Linear)}


def causal_wan_from_weights(
    weights: Mapping[str, torch.Tensor] | torch.nn.Module,
    compute_dtype: torch.dtype | None = None,
) -> CausalWan:
    """A :class:`CausalWan` using ``weights`` in place (original, ComfyUI or diffusers names).

    ``weights``: a Wan2.1 T2V DiT's state dict or module (any device; the model runs where the
    weights are).  ``compute_dtype``: what the layers compute in (default: the Linear weights'
    dtype; bfloat16 for float8 weights).  Linear weights and biases are shared (same storage);
    the small precision-critical parameters are float32 copies.  Raises ValueError, before any
    allocation, for weights that are not a text-to-video Wan or cannot be run.
    """
    sd, scales = _split_scales(strip_state_dict(_plain_weights(weights)))
    _check_dtypes(sd)
    sd = to_diffusers_names(sd)
    refuse_i2v(sd)
    cfg = infer_config(sd)
    check_structure(sd, cfg)
    linear_dtype = sd["blocks.0.attn1.to_q.weight"].dtype
    dt = compute_dtype_for(linear_dtype, compute_dtype)
    tr = build_transformer(cfg, device="meta")
    linears = _linear_names(tr)
    unknown = sorted(set(scales) - linears)
    if unknown:
        raise ValueError(f"scale_weight entries for modules that are no Linear layers: {unknown[:4]}")
    placed: dict[str, torch.Tensor] = {}
    for name, t in sd.items():
        module = name.rsplit(".", 1)[0]
        if _keep_fp32(name):  # a copy only when not float32 already; dequantised if scaled
            placed[name] = t.detach().to(torch.float32)
            if module in scales and name.endswith(".weight"):
                placed[name] = placed[name] * scales[module].to(torch.float32)
        elif module in linears:
            placed[name] = t.detach()  # shared, whatever its dtype (cast per call when needed)
        else:
            placed[name] = t.detach().to(dt)
    tr.load_state_dict(placed, strict=True, assign=True)
    for name in sorted(linears):
        mod = tr.get_submodule(name)
        stored = {mod.weight.dtype} | ({mod.bias.dtype} if mod.bias is not None else set())
        if stored != {dt} or name in scales:
            if _keep_fp32(name + ".weight"):
                continue  # already a float32 copy
            parent, _, child = name.rpartition(".")
            setattr(tr.get_submodule(parent) if parent else tr, child,
                    UpcastLinear(mod.weight.data, None if mod.bias is None else mod.bias.data, scales.get(name)))
    rebuild_rope(tr, cfg)
    return CausalWan(tr)


__all__ = ["UpcastLinear", "causal_wan_from_weights", "compute_dtype_for"]
