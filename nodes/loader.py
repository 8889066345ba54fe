"""FadeMemModelLoader: a causal Wan2.1 checkpoint (+ optional LoRA) as a FADEMEM_MODEL; the
samplers' model input, which also takes a core MODEL (Load Diffusion Model, LoRA loaders)."""
from __future__ import annotations

from typing import Any

from fademem_core import WEIGHT_CHOICES

from . import comfy
from .inputs import FadeMemNode, combo, float_input, inputs, outputs

MODEL_TYPE = "FADEMEM_MODEL"
# the samplers' socket: ours, or a core MODEL holding a causal Wan2.1 T2V DiT (a ComfyUI union
# type; workflows saved with a FADEMEM_MODEL link keep loading)
MODEL_INPUT = f"{MODEL_TYPE},MODEL"
MODEL_TOOLTIP = ("From FadeMem Model Loader, or a core MODEL: Load Diffusion Model with a causal "
                 "Wan2.1 T2V checkpoint (Self-Forcing, LongLive, Causal-Forcing; weight_dtype "
                 "default or fp8, upcast per layer), through core LoRA loaders if you like.")
NO_LORA = "None"
DTYPES = ("default", "bf16", "fp16", "fp32")
# the weights shipped inside the package (fademem_core/weights/): menu entry -> EMBEDDED_WEIGHTS name
EMBEDDED = {"tiny_world (embedded, no download)": "tiny_world",
            "tiny_world_ft (embedded, FadeMem-FT, no download)": "tiny_world_ft"}


def _dtype(name: str, embedded: bool = False) -> str | None:
    """Widget value -> load_model's dtype (None: bf16 on a GPU, fp32 on the CPU).

    The embedded tiny models default to fp32 everywhere: 2.4 MB, and bf16 would only blur them."""
    if name not in DTYPES:
        raise ValueError(f"weight_dtype must be one of {DTYPES}, got {name!r}")
    if name == "default":
        return "fp32" if embedded else None
    return name


def _weights_path(model_name: str):
    """The file behind a model_name choice: an embedded tiny model, or a file in ComfyUI's folders."""
    if model_name in EMBEDDED:
        from fademem_core import embedded_weights

        return embedded_weights(EMBEDDED[model_name])
    return comfy.model_path("diffusion_models", model_name)


class FadeMemModelLoader(FadeMemNode):
    """Loads Self-Forcing / LongLive / FadeMem-FT weights for the FadeMem sampler."""

    FUNCTION = "load"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        (MODEL_TYPE, "model", "The causal Wan2.1 model, for FadeMem Sampler only (not a core MODEL)."))
    DESCRIPTION = (
        "Loads a causal (autoregressive) Wan2.1-T2V-1.3B checkpoint from models/diffusion_models: "
        "LongLive `longlive_base.pt`, Self-Forcing `self_forcing_dmd.pt` or thu-ml Causal-Forcing "
        "`causal_forcing.pt` (chunk-wise: chunk 3; frame-wise: chunk 1) (.pt pickles are read "
        "with weights_only=True), optionally merging a LoRA from models/loras (LongLive `lora.pt`, "
        "or the FadeMem-FT LoRA). Other models are unloaded from VRAM first. The two tiny_world "
        "entries are toy models shipped inside the pack: try the pack without downloading "
        "anything (workflow fademem_tiny_world)."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return inputs({
            "model_name": combo(list(EMBEDDED) + comfy.list_models("diffusion_models"),
                                "Causal Wan checkpoint in models/diffusion_models (or models/unet): "
                                "longlive_base.pt, self_forcing_dmd.pt, Causal-Forcing's "
                                "causal_forcing.pt, or a safetensors copy. "
                                "tiny_world / tiny_world_ft: the tiny toy-world models shipped in "
                                "the pack (base and FadeMem-FT; no download, 64x64, prompt them "
                                "with FadeMem Tiny World Prompt, view with FadeMem Tiny World "
                                "Decode); FadeMem Sampler's sampler=auto uses the Euler sampler "
                                "they are trained for."),
            "lora_name": combo([NO_LORA] + comfy.list_models("loras"),
                               "Optional LoRA merged into the weights: LongLive's lora.pt (needed "
                               "for LongLive), or the FadeMem-FT LoRA. None: no LoRA.",
                               default=NO_LORA),
            "lora_strength": float_input(1.0, -4.0, 4.0, "Scale of the LoRA update (1.0 = as "
                                                         "trained). Ignored without a LoRA.",
                                         step=0.05),
            "weight_dtype": combo(DTYPES, "Weight dtype. default: bf16 on a GPU, fp32 on CPU (the "
                                          "embedded tiny models: fp32). fp16 saves nothing over "
                                          "bf16 and may overflow.",
                                  default="default"),
            "weights": combo(WEIGHT_CHOICES,
                             "For a training .pt holding both generator_ema and generator: which to "
                             "load. auto: what the file's own project loads (Self-Forcing: ema, as "
                             "its --use_ema; LongLive: generator, its use_ema: false), ema when that "
                             "cannot be told (the console says which was loaded). Other files: "
                             "ignored.", default="auto"),
            "lora_alpha": float_input(0.0, 0.0, 65536.0,
                                      "LoRA alpha (scale = strength * alpha / rank). 0: from the "
                                      "file; a plain PEFT file (LongLive's lora.pt, FadeMem-FT) "
                                      "stores none, so it comes from an adapter_config.json beside "
                                      "the file, else alpha = rank is ASSUMED (scale 1: right for "
                                      "LongLive's rank-256/alpha-256 LoRA). Set it for a PEFT LoRA "
                                      "trained with another alpha.", step=1.0),
        })

    def load(self, model_name, lora_name, lora_strength, weight_dtype, weights="auto", lora_alpha=0.0):
        from fademem_core import load_model

        dtype = _dtype(weight_dtype, embedded=model_name in EMBEDDED)
        path = _weights_path(model_name)
        lora = None if lora_name in (NO_LORA, "", None) else comfy.model_path("loras", lora_name)
        comfy.free_vram_for_new_model()
        alpha = None if not lora_alpha else float(lora_alpha)  # 0: from the file
        model = load_model(path, lora=lora, lora_strength=float(lora_strength), dtype=dtype,
                           device=comfy.torch_device(), weights=weights, lora_alpha=alpha)
        return (model,)


def unwrap_model(model: Any) -> tuple[Any, Any]:
    """``(CausalWan, core patcher or None)`` for the samplers' model input.

    A core MODEL becomes a CausalWan over the weights ComfyUI holds right now (for validation
    and sizes); :func:`core_causal_wan` rebuilds it once ComfyUI has loaded and patched them.
    """
    from fademem_core import CausalWan

    if isinstance(model, CausalWan):
        return model, None
    if not comfy.is_core_model(model):
        raise ValueError("model must come from FadeMem Model Loader or core Load Diffusion Model (a "
                         f"causal Wan2.1 T2V checkpoint), got {type(model).__name__}")
    return core_causal_wan(model), model


def core_causal_wan(patcher: Any):
    """The engine's model over a core MODEL's weights (shared, with the patches ComfyUI applied)."""
    from fademem_core import causal_wan_from_weights

    weights, compute_dtype = comfy.core_model_weights(patcher)
    try:
        return causal_wan_from_weights(weights, compute_dtype)
    except ValueError as e:
        raise ValueError(f"the MODEL from Load Diffusion Model is not usable by FadeMem: {e}") from e


NODE_CLASS_MAPPINGS = {"FadeMemModelLoader": FadeMemModelLoader}
NODE_DISPLAY_NAME_MAPPINGS = {"FadeMemModelLoader": "FadeMem Model Loader"}
