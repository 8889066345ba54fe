"""Test helpers: tiny checkpoints in every format :func:`fademem_core.load_model` reads.

``write_checkpoints(directory)`` writes one tiny random Wan (``tiny_model(seed)``) as
safetensors with diffusers names (with and without our config metadata), original Wan names
(bare, ``model.diffusion_model.`` and ``model.`` prefixes), and the training pickles of
Self-Forcing (``generator`` + ``critic`` + ``generator_ema``), LongLive (FSDP-decorated EMA
names; its trainer's layout with optimizer states, whose ``generator`` is the model), CausVid
(``model``) and thu-ml Causal-Forcing (one set: ``generator`` chunk-wise, FSDP-named
``generator_ema`` frame-wise); LoRA files in the LongLive/FadeMem-FT (PEFT, nested ``generator_lora``)
and kohya (per-module alpha) layouts; and files that must be refused.

The diffusers -> original renaming below is written independently of the loader (which uses
diffusers' converter the other way), so a round trip checks both.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .loading import save_model, tiny_model
from .causal_wan import CausalWan

# diffusers name -> original Wan name, applied in order
_TO_ORIGINAL = (
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"\.attn1\.", ".self_attn."),
    (r"\.attn2\.", ".cross_attn."),
    (r"\.to_q\.", ".q."),
    (r"\.to_k\.", ".k."),
    (r"\.to_v\.", ".v."),
    (r"\.to_out\.0\.", ".o."),
    (r"\.ffn\.net\.0\.proj\.", ".ffn.0."),
    (r"\.ffn\.net\.2\.", ".ffn.2."),
    (r"^(blocks\.\d+)\.scale_shift_table$", r"\1.modulation"),
    (r"^scale_shift_table$", "head.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"\.norm2\.", ".norm3."),  # diffusers' norm2 (affine cross-attention norm) is Wan's norm3
)


def original_name(name: str) -> str:
    """The original Wan name of a diffusers ``WanTransformer3DModel`` parameter."""
    for pattern, repl in _TO_ORIGINAL:
        name = re.sub(pattern, repl, name)
    return name


def original_state_dict(model: CausalWan, prefix: str = "") -> dict[str, torch.Tensor]:
    """The model's weights under original Wan names (cloned, contiguous)."""
    return {prefix + original_name(k): v.detach().clone().contiguous() for k, v in model.transformer.state_dict().items()}


def _save_pt(obj: object, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)
    return path


def _save_st(sd: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    save_file({k: v.contiguous() for k, v in sd.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)
    return path


def _touch(path: str) -> None:
    Path(path).touch()


class _NeedsCode:
    """Unpickling this calls a function (it would create ``marker``): ``weights_only`` must refuse."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


@dataclass
class TinyLora:
    """A LoRA written by :func:`write_checkpoints`: expected ``W + s * alpha / rank * B @ A``."""

    down: dict[str, torch.Tensor] = field(default_factory=dict)  # diffusers module name -> A
    up: dict[str, torch.Tensor] = field(default_factory=dict)  # -> B
    rank: int = 4
    alpha: float = 4.0


@dataclass
class TinyCheckpoints:
    """Paths of everything :func:`write_checkpoints` wrote, plus the truth to compare against."""

    model: CausalWan
    formats: dict[str, Path]  # name -> file that loads to exactly ``model``'s weights
    other_generator: Path  # Self-Forcing file whose non-EMA weights differ (EMA = model)
    loras: dict[str, Path]
    lora: TinyLora  # what every file in ``loras`` holds (kohya file: alpha = lora.alpha)
    peft_alpha: float  # alpha the PEFT files imply (= rank: PEFT state dicts store none)
    refused: dict[str, Path]  # files that must be refused, by reason
    payload_marker: Path  # created if the code-executing pickle ever runs


def _lora_targets(model: CausalWan) -> list[str]:
    names = []
    for i in range(model.num_layers):
        for attn in ("attn1", "attn2"):
            for proj in ("to_q", "to_k", "to_v", "to_out.0"):
                names.append(f"blocks.{i}.{attn}.{proj}")
        names += [f"blocks.{i}.ffn.net.0.proj", f"blocks.{i}.ffn.net.2"]
    return names


def make_lora(model: CausalWan, rank: int = 4, alpha: float = 8.0, seed: int = 1) -> TinyLora:
    """Random LoRA over every Linear of the attention blocks (what LongLive adapts)."""
    g = torch.Generator().manual_seed(seed)
    sd = model.transformer.state_dict()
    lora = TinyLora(rank=rank, alpha=alpha)
    for name in _lora_targets(model):
        out_f, in_f = sd[f"{name}.weight"].shape
        lora.down[name] = torch.randn(rank, in_f, generator=g) * 0.1
        lora.up[name] = torch.randn(out_f, rank, generator=g) * 0.1
    return lora


def _write_loras(model: CausalWan, d: Path) -> tuple[TinyLora, dict[str, Path]]:
    """One LoRA of ``model`` in the PEFT, LongLive (nested) and kohya formats."""
    lora = make_lora(model)
    peft = {}
    for name in lora.down:
        on = original_name(f"{name}.weight")[: -len(".weight")]
        peft[f"base_model.model.{on}.lora_A.weight"] = lora.down[name]
        peft[f"base_model.model.{on}.lora_B.weight"] = lora.up[name]
    kohya = {}
    for name in lora.down:
        kohya[f"diffusion_model.{name}.lora_down.weight"] = lora.down[name]
        kohya[f"diffusion_model.{name}.lora_up.weight"] = lora.up[name]
        kohya[f"diffusion_model.{name}.alpha"] = torch.tensor(float(lora.alpha))
    loras = {
        "peft.pt": _save_pt(peft, d / "lora_peft.pt"),
        "longlive_nested.pt": _save_pt({"generator_lora": peft}, d / "lora_longlive.pt"),
        "kohya.safetensors": _save_st(kohya, d / "lora_kohya.safetensors"),
    }

    return lora, loras


def _write_refused(model: CausalWan, orig: dict, prefixed: dict, formats: dict[str, Path],
                   d: Path) -> dict[str, Path]:
    """Files the loader must refuse: image-to-video, not a Wan, truncated, pickled code, a
    mismatched LoRA."""
    refused = {}
    i2v = dict(orig)
    i2v["patch_embedding.weight"] = torch.zeros(orig["patch_embedding.weight"].shape[0], 36,
                                                *orig["patch_embedding.weight"].shape[2:])
    refused["i2v"] = _save_st(i2v, d / "i2v.safetensors")
    refused["not_wan"] = _save_st({"encoder.layer.0.weight": torch.zeros(4, 4)}, d / "not_wan.safetensors")
    whole = formats["original.safetensors"].read_bytes()
    trunc = d / "truncated.safetensors"
    trunc.write_bytes(whole[: len(whole) // 2])
    refused["truncated"] = trunc
    whole_pt = formats["self_forcing.pt"].read_bytes()
    trunc_pt = d / "truncated.pt"
    trunc_pt.write_bytes(whole_pt[: len(whole_pt) // 2])
    refused["truncated_pt"] = trunc_pt
    refused["needs_code"] = _save_pt({"generator": prefixed, "hook": _NeedsCode(d / "PAYLOAD_RAN")},
                                     d / "needs_code.pt")
    bad_lora = {"base_model.model.blocks.0.self_attn.q.lora_A.weight": torch.zeros(4, 7),
                "base_model.model.blocks.0.self_attn.q.lora_B.weight": torch.zeros(model.dim, 4),
                "base_model.model.blocks.99.self_attn.q.lora_A.weight": torch.zeros(4, model.dim),
                "base_model.model.blocks.99.self_attn.q.lora_B.weight": torch.zeros(model.dim, 4)}
    refused["lora_mismatch"] = _save_pt(bad_lora, d / "lora_mismatch.pt")
    return refused


def write_checkpoints(directory: str | Path, seed: int = 0, **config_overrides) -> TinyCheckpoints:
    """Write a tiny model (``tiny_model(seed, **config_overrides)``) in every supported format."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    model = tiny_model(seed, **config_overrides)
    diff_sd = {k: v.detach().clone().contiguous() for k, v in model.transformer.state_dict().items()}
    orig = original_state_dict(model)

    formats = {
        "diffusers_meta.safetensors": save_model(model, d / "diffusers_meta.safetensors"),
        "diffusers.safetensors": _save_st(diff_sd, d / "diffusers.safetensors"),
        "original.safetensors": _save_st(orig, d / "original.safetensors"),
        "comfy.safetensors": _save_st(original_state_dict(model, "model.diffusion_model."), d / "comfy.safetensors"),
        "model_prefix.safetensors": _save_st(original_state_dict(model, "model."), d / "model_prefix.safetensors"),
        "original_bf16.safetensors": _save_st({k: v.bfloat16() for k, v in orig.items()}, d / "original_bf16.safetensors"),
    }
    prefixed = original_state_dict(model, "model.")
    perturbed = {k: v + 1.0 for k, v in prefixed.items()}
    # Self-Forcing's trainer layout: its inference reads generator_ema (--use_ema)
    formats["self_forcing.pt"] = _save_pt({"generator": perturbed, "critic": perturbed, "generator_ema": prefixed},
                                          d / "self_forcing.pt")
    # FSDP wraps the model and each block: model._fsdp_wrapped_module.blocks.0._fsdp_wrapped_module.q...
    def fsdp_names(sd):
        return {re.sub(r"^model\.(blocks\.\d+\.)?", lambda m: "model._fsdp_wrapped_module." + (
            m.group(1) + "_fsdp_wrapped_module." if m.group(1) else ""), k): v for k, v in sd.items()}

    formats["longlive.pth"] = _save_pt({"generator_ema": fsdp_names(prefixed)}, d / "longlive.pth")
    # LongLive's trainer layout (optimizer states beside the weights): its inference reads generator
    optim = {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0]}]}
    formats["longlive_trainer.pt"] = _save_pt(
        {"generator": prefixed, "critic": perturbed, "generator_ema": fsdp_names(perturbed),
         "generator_optimizer": optim, "critic_optimizer": optim, "step": 1200}, d / "longlive_trainer.pt")
    formats["causvid.pt"] = _save_pt({"model": prefixed}, d / "causvid.pt")
    # thu-ml Causal-Forcing's distillation trainer saves ONE set: generator (its chunk-wise
    # inference reads it) or, past ema_start_step, generator_ema (frame-wise, --use_ema), whose
    # names keep FSDP's segments (its inference strips model._fsdp_wrapped_module.)
    formats["causal_forcing_chunkwise.pt"] = _save_pt({"generator": prefixed}, d / "causal_forcing_chunkwise.pt")
    formats["causal_forcing_framewise.pt"] = _save_pt({"generator_ema": fsdp_names(prefixed)},
                                                      d / "causal_forcing_framewise.pt")
    formats["flat.pt"] = _save_pt(dict(orig), d / "flat.pt")
    other = _save_pt({"generator": perturbed}, d / "generator_only.pt")

    lora, loras = _write_loras(model, d)
    refused = _write_refused(model, orig, prefixed, formats, d)
    return TinyCheckpoints(model, formats, other, loras, lora, float(lora.rank), refused, d / "PAYLOAD_RAN")


__all__ = ["TinyCheckpoints", "TinyLora", "make_lora", "original_name", "original_state_dict", "write_checkpoints"]
