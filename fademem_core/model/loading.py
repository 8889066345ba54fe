"""Load causal Wan2.1 text-to-video DiTs from any of the formats users have.

* ``.safetensors`` with original Wan names (optionally prefixed ``model.diffusion_model.`` or
  ``model.``) or diffusers names (ComfyUI repackages, diffusers exports, our own
  :func:`save_model` files);
* training checkpoints ``.pt``/``.pth`` (Self-Forcing, LongLive, CausVid): weights under
  ``generator_ema``, ``generator`` or ``model`` (a file holding both of the first two gives the
  one ``weights`` names, by default the one the file's own project loads; see
  :func:`fademem_core.model.checkpoints.select_weights`), names prefixed ``model.`` and maybe
  decorated with ``_fsdp_wrapped_module.``; read with ``torch.load(weights_only=True, mmap=True)``.

Original names go through diffusers' own converter; the configuration is inferred from tensor
shapes (layers, dim, ffn, text and frequency widths, patch, channels).  Heads: a config stored
in the file (``fademem_config`` metadata, written by :func:`save_model`) wins; otherwise
``dim / 128`` as in every released Wan, and head_dim 16 for dims that are not multiples of 128
(the tiny test models).
"""
from __future__ import annotations

import json
import math
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch

from ..files import set_default_permissions
from .checkpoints import CONFIG_KEY, check_weights, read_file, select_weights, stored_config, strip_state_dict
from .lora import check_alpha, load_lora, merge_lora_
from .causal_wan import CausalWan, cast_transformer_
from .recorded import read_record, sampler_record
from ..checks import check_int

# The tiny Wan used by tests, the demo and benchmarks: real architecture, ~41k parameters.
TINY_CONFIG: dict[str, Any] = {
    "patch_size": (1, 2, 2),
    "num_attention_heads": 2,
    "attention_head_dim": 16,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 32,
    "freq_dim": 32,
    "ffn_dim": 64,
    "num_layers": 2,
    "cross_attn_norm": True,
    "qk_norm": "rms_norm_across_heads",
    "eps": 1e-6,
}
CONFIG_ALIASES = {"heads": "num_attention_heads", "head_dim": "attention_head_dim", "layers": "num_layers", "ffn": "ffn_dim"}
CONFIG_FIELDS = tuple(TINY_CONFIG) + ("rope_max_seq_len",)

REAL_HEAD_DIM = 128
TINY_HEAD_DIM = 16
I2V_IN_CHANNELS = 36

_BLOCK = re.compile(r"^blocks\.(\d+)\.")


# ---------------------------------------------------------------------------- building
def _check_config(cfg: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(cfg) - set(CONFIG_FIELDS))
    if unknown:
        raise ValueError(f"unknown Wan config field(s) {unknown}; expected some of {list(CONFIG_FIELDS)}")
    out = dict(cfg)
    for name in ("num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "text_dim",
                 "freq_dim", "ffn_dim", "num_layers"):
        v = out.get(name)
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
            raise ValueError(f"{name} must be a positive integer, got {v!r}")
    hd = out.get("attention_head_dim", REAL_HEAD_DIM)
    if hd % 2:
        raise ValueError(f"attention_head_dim must be even (RoPE pairs), got {hd}")
    if out.get("in_channels") == I2V_IN_CHANNELS:
        raise ValueError("in_channels 36 is an image-to-video Wan; only text-to-video (16) is supported for now")
    patch = out.get("patch_size", (1, 2, 2))
    if (not isinstance(patch, (list, tuple)) or len(patch) != 3
            or any(isinstance(p, bool) or not isinstance(p, int) or p < 1 for p in patch)):
        raise ValueError(f"patch_size must be three positive integers, got {patch!r}")
    eps = out.get("eps", 1e-6)
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not 0 < eps < 1:
        raise ValueError(f"eps must be a number in (0, 1), got {eps!r}")
    out["patch_size"] = tuple(patch)
    return out


def build_transformer(config: Mapping[str, Any], device: torch.device | str | None = None):
    """A ``WanTransformer3DModel`` with random weights (``device="meta"`` allocates nothing)."""
    from diffusers import WanTransformer3DModel

    cfg = _check_config(config)
    if device is None:
        return WanTransformer3DModel(**cfg)
    with torch.device(device):
        return WanTransformer3DModel(**cfg)


def tiny_model(seed: int = 0, **config_overrides: Any) -> CausalWan:
    """A small random Wan with the real architecture (float32, CPU) for tests, demos, benchmarks.

    Defaults: 2 layers, 2 heads x 16 (dim 32), ffn 64, text_dim 32, freq_dim 32, patch (1,2,2);
    override any diffusers config field (``num_layers=4``) or alias (``layers``, ``heads``,
    ``head_dim``, ``ffn``).  Same seed, same weights; the global RNG is left untouched.
    """
    seed = check_int("seed", seed, 0)
    cfg = dict(TINY_CONFIG)
    for key, value in config_overrides.items():
        cfg[CONFIG_ALIASES.get(key, key)] = value
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tr = build_transformer(cfg)
    return CausalWan(tr)


def model_config(model: CausalWan | torch.nn.Module) -> dict[str, Any]:
    """The JSON-serialisable diffusers config of a model (what :func:`save_model` stores)."""
    tr = model.transformer if isinstance(model, CausalWan) else model
    cfg = {k: tr.config[k] for k in CONFIG_FIELDS if k in tr.config}
    cfg["patch_size"] = list(cfg["patch_size"])
    return cfg


def save_model(model: CausalWan | torch.nn.Module, path: str | Path,
               metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``model`` as ``.safetensors`` (diffusers names, config in the metadata), atomically.

    ``metadata``: extra string entries stored beside the config (e.g. what it was trained on).
    The one checkpoint writer of the pack (the tiny world's training uses it too).
    """
    from safetensors.torch import save_file

    p = Path(path)
    if p.suffix != ".safetensors":
        raise ValueError(f"save_model writes .safetensors files, got {p.name!r}")
    tr = model.transformer if isinstance(model, CausalWan) else model
    sd = {k: v.detach().cpu().contiguous() for k, v in tr.state_dict().items()}
    meta = {**(metadata or {}), CONFIG_KEY: json.dumps(model_config(tr)), "format": "pt"}
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    try:
        save_file(sd, tmp, metadata=meta)
        set_default_permissions(Path(tmp))  # mkstemp made it 0600; honour the umask like open()
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


# ---------------------------------------------------------------------------- names + config
def _sample(keys: Any, n: int = 4) -> str:
    keys = list(keys)
    return ", ".join(repr(k) for k in keys[:n]) + (f" ... ({len(keys)} keys)" if len(keys) > n else "")


def to_diffusers_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Stripped state dict in diffusers names (original Wan names converted by diffusers)."""
    keys = list(sd)
    if any(k.startswith("condition_embedder.") or ".attn1." in k for k in keys):
        return sd
    if any(k.startswith(("text_embedding.", "time_embedding.", "head.head")) or ".self_attn." in k for k in keys):
        from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

        return convert_wan_transformer_to_diffusers(dict(sd))  # it empties its input: give it a copy
    raise ValueError(f"not a Wan DiT checkpoint: no Wan transformer weights found (keys: {_sample(keys)})")


def refuse_i2v(sd: Mapping[str, torch.Tensor]) -> None:
    pe = sd.get("patch_embedding.weight")
    in_dim = pe.shape[1] if pe is not None and pe.ndim == 5 else None
    image_keys = [k for k in sd if "image_embedder" in k or "add_k_proj" in k or k.startswith("img_emb")]
    if in_dim == I2V_IN_CHANNELS or image_keys:
        raise ValueError(
            f"image-to-video Wan checkpoint (in_dim {in_dim}, {len(image_keys)} image-conditioning weights) "
            "is not supported yet; use a text-to-video (in_dim 16) model"
        )


def _tensor(sd: Mapping[str, torch.Tensor], key: str, ndim: int) -> torch.Tensor:
    t = sd[key]
    if t.ndim != ndim or 0 in t.shape:
        raise ValueError(f"not a Wan DiT checkpoint: {key} is {tuple(t.shape)}, expected a "
                         f"non-empty {ndim}-D tensor")
    return t


def _stored_heads_eps(stored: Mapping[str, Any], dim: int) -> tuple[int | None, float | None]:
    """The heads and eps a file's own config states, validated (files can lie)."""
    heads, eps = stored.get("num_attention_heads"), stored.get("eps")
    if heads is not None and (isinstance(heads, bool) or not isinstance(heads, int) or not 1 <= heads <= dim
                              or dim % heads):
        raise ValueError(f"{CONFIG_KEY} num_attention_heads must be a positive integer dividing the model "
                         f"width {dim}, got {heads!r}")
    if eps is not None and (isinstance(eps, bool) or not isinstance(eps, (int, float))
                            or not 0 < float(eps) < 1):  # NaN fails too
        raise ValueError(f"{CONFIG_KEY} eps must be a number in (0, 1), got {eps!r}")
    return heads or None, None if eps is None else float(eps)


def infer_config(sd: Mapping[str, torch.Tensor], stored: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """diffusers config from tensor shapes (diffusers names); ``stored`` supplies the heads."""
    required = (
        "patch_embedding.weight",
        "condition_embedder.text_embedder.linear_1.weight",
        "condition_embedder.time_embedder.linear_1.weight",
        "blocks.0.ffn.net.0.proj.weight",
        "proj_out.weight",
    )
    missing = [k for k in required if k not in sd]
    if missing:
        raise ValueError(f"not a Wan DiT checkpoint: missing {missing} (keys: {_sample(sd)})")
    pe = _tensor(sd, "patch_embedding.weight", 5)
    dim, in_ch = int(pe.shape[0]), int(pe.shape[1])
    patch = tuple(int(s) for s in pe.shape[2:])
    layers = 1 + max(int(m.group(1)) for k in sd if (m := _BLOCK.match(k)))
    proj = _tensor(sd, "proj_out.weight", 2)
    if proj.shape[0] % math.prod(patch):
        raise ValueError(f"not a Wan DiT checkpoint: proj_out.weight has {proj.shape[0]} rows, not a "
                         f"multiple of the patch volume {math.prod(patch)} (patch {patch})")
    cfg: dict[str, Any] = {
        "patch_size": patch,
        "in_channels": in_ch,
        "out_channels": int(proj.shape[0]) // math.prod(patch),
        "text_dim": int(_tensor(sd, "condition_embedder.text_embedder.linear_1.weight", 2).shape[1]),
        "freq_dim": int(_tensor(sd, "condition_embedder.time_embedder.linear_1.weight", 2).shape[1]),
        "ffn_dim": int(_tensor(sd, "blocks.0.ffn.net.0.proj.weight", 2).shape[0]),
        "num_layers": layers,
        "cross_attn_norm": "blocks.0.norm2.weight" in sd,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
    }
    heads, eps = _stored_heads_eps(stored or {}, dim)
    if eps is not None:
        cfg["eps"] = eps
    if heads is None:
        if dim % REAL_HEAD_DIM == 0:
            heads = dim // REAL_HEAD_DIM
        elif dim % TINY_HEAD_DIM == 0:
            heads = dim // TINY_HEAD_DIM
        else:
            raise ValueError(f"cannot infer the number of heads for width {dim} (not a multiple of 128 or 16)")
    cfg["num_attention_heads"] = heads
    cfg["attention_head_dim"] = dim // heads
    return cfg


def check_structure(sd: Mapping[str, torch.Tensor], cfg: Mapping[str, Any]) -> None:
    """Refuse (ValueError naming the key) a state dict that does not fit ``cfg`` exactly.

    Runs before the model is built: block indices must be 0..num_layers-1, every name must be
    one the architecture has (and none missing), every tensor floating point with the shape a
    model of ``cfg`` gives it.  The expected shapes come from a one-block model on the meta
    device (nothing allocated), so a file naming ``blocks.30000`` costs nothing to refuse.
    """
    cfg = _check_config(cfg)
    layers = cfg["num_layers"]
    found = {int(m.group(1)) for k in sd if (m := _BLOCK.match(k))}
    if found != set(range(layers)):
        gaps = sorted(set(range(layers)) - found)
        raise ValueError(f"block indices must run 0..{layers - 1} without gaps; missing "
                         f"{_sample(f'blocks.{i}' for i in gaps)}")
    one = build_transformer({**cfg, "num_layers": 1}, device="meta").state_dict()
    shared = {k: tuple(v.shape) for k, v in one.items() if not k.startswith("blocks.")}
    per_block = {k[len("blocks.0."):]: tuple(v.shape) for k, v in one.items() if k.startswith("blocks.0.")}
    expected = dict(shared)
    for i in range(layers):
        expected.update({f"blocks.{i}.{k}": shape for k, shape in per_block.items()})
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    if missing or unexpected:
        raise ValueError(f"weights do not fit a Wan DiT of the inferred shape (missing {_sample(missing)}; "
                         f"unexpected {_sample(unexpected)})")
    for key, want in expected.items():
        t = sd[key]
        if not t.is_floating_point():
            raise ValueError(f"{key} must hold floating-point weights, got {t.dtype}")
        if tuple(t.shape) != want:
            raise ValueError(f"{key} is {tuple(t.shape)}, expected {want} for the inferred config "
                             f"(width {cfg['num_attention_heads'] * cfg['attention_head_dim']}, "
                             f"ffn {cfg['ffn_dim']}, text {cfg['text_dim']}, freq {cfg['freq_dim']})")


def check_finite(module: torch.nn.Module, source: str) -> None:
    """ValueError naming the first weight holding NaN/inf (in the dtype the model runs in)."""
    for key, t in module.state_dict().items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{source}: weight {key} holds NaN or inf values (as {t.dtype})")


def resolve_device(device: Any) -> torch.device:
    """``device`` as a torch.device, refused (ValueError) before any file is read if unusable."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda:0', got {device!r}") from e
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} asks for CUDA, which this machine does not have")
    return dev


def _resolve_dtype_device(dtype: Any, device: Any) -> tuple[torch.dtype, torch.device]:
    dev = resolve_device(device)
    if dtype is None:
        dt = torch.bfloat16 if dev.type == "cuda" else torch.float32
    elif isinstance(dtype, str):
        names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
                 "fp32": torch.float32, "float32": torch.float32}
        if dtype not in names:
            raise ValueError(f"dtype must be one of {sorted(names)} or a torch.dtype, got {dtype!r}")
        dt = names[dtype]
    elif dtype in (torch.bfloat16, torch.float16, torch.float32):
        dt = dtype
    else:
        raise ValueError(f"dtype must be torch.bfloat16, torch.float16 or torch.float32, got {dtype!r}")
    return dt, dev


# ---------------------------------------------------------------------------- loading
def load_state_dict(
    path: str | Path, weights: str = "auto"
) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """Read a DiT checkpoint into diffusers names; returns ``(state_dict, stored config)``.

    ``weights``: ``"auto"``, ``"ema"`` or ``"generator"`` for a training checkpoint holding both
    (see :func:`fademem_core.model.checkpoints.select_weights`); which one ``"auto"`` loaded is printed
    to stderr.
    """
    weights = check_weights(weights)
    obj, meta = read_file(path, what="checkpoint")
    try:
        sd, _where, note = select_weights(obj, weights)
    except ValueError as e:
        raise ValueError(f"not a Wan DiT checkpoint ({Path(path).name}): {e}") from e
    if note is not None:
        print(f"{Path(path).name}: {note}", file=sys.stderr)
    sd = to_diffusers_names(strip_state_dict(sd))
    refuse_i2v(sd)
    return sd, stored_config(obj, meta)


def load_model(
    path: str | Path,
    lora: str | Path | None = None,
    lora_strength: float = 1.0,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str | None = None,
    weights: str = "auto",
    lora_alpha: float | None = None,
) -> CausalWan:
    """Load a causal Wan2.1 T2V DiT (any supported format), optionally merging a LoRA.

    ``weights`` picks the set of a training checkpoint that holds both ``generator_ema`` and
    ``generator``: ``"ema"``, ``"generator"`` or ``"auto"`` (default: what the file's own
    project loads, Self-Forcing the EMA, LongLive ``generator``; the EMA when that cannot be
    told; a note on stderr says which was loaded).

    ``dtype`` defaults to bfloat16 on CUDA and float32 on CPU (norms, modulation and the time
    embedding stay float32 either way); ``device`` defaults to CUDA when available.
    ``lora`` (LongLive ``lora.pt``, FadeMem-FT, PEFT/kohya files) is merged as
    ``W + lora_strength * alpha / rank * B @ A``; ``lora_alpha`` replaces the alpha, which
    otherwise comes from the file, a PEFT ``adapter_config.json`` beside it, or is assumed
    = rank (printed; right for LongLive's rank-256/alpha-256 ``lora.pt``).
    The JSON next to ``path`` (if any) may name the sampler the weights are trained for; the
    model carries it as ``sampler_record`` (see :mod:`fademem_core.model.recorded`).
    Raises FileNotFoundError / ValueError with what was found for anything it cannot load.
    """
    dt, dev = _resolve_dtype_device(dtype, device)
    weights = check_weights(weights)
    lora_alpha = check_alpha(lora_alpha)
    if not isinstance(lora_strength, (int, float)) or isinstance(lora_strength, bool) or not math.isfinite(lora_strength):
        raise ValueError(f"lora_strength must be a finite number, got {lora_strength!r}")
    adapters = load_lora(lora, alpha=lora_alpha) if lora is not None else None  # fail on a bad LoRA before the big read
    record = sampler_record(read_record(path), Path(path).with_suffix(".json").name)  # before the big read
    sd, stored = load_state_dict(path, weights)
    cfg = infer_config(sd, stored)
    if adapters is not None:
        merge_lora_(sd, adapters, float(lora_strength), dtype=dt)
    try:
        check_structure(sd, cfg)
    except ValueError as e:
        raise ValueError(f"{Path(path).name}: {e}") from None
    tr = build_transformer(cfg, device="meta")
    tr.load_state_dict(sd, strict=True, assign=True)
    rebuild_rope(tr, cfg)
    cast_transformer_(tr, dt)
    check_finite(tr, Path(path).name + (f" + {Path(lora).name}" if lora is not None else ""))
    tr.to(dev)
    return CausalWan(tr, sampler_record=record)


def rebuild_rope(tr: torch.nn.Module, cfg: Mapping[str, Any]) -> None:
    """The (unused by us, weight-free) diffusers rope module was built on meta: make it real."""
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    tr.rope = WanRotaryPosEmbed(cfg["attention_head_dim"], tuple(cfg["patch_size"]), cfg.get("rope_max_seq_len", 1024))


__all__ = [
    "TINY_CONFIG",
    "build_transformer",
    "check_finite",
    "check_structure",
    "infer_config",
    "load_model",
    "load_state_dict",
    "model_config",
    "resolve_device",
    "save_model",
    "tiny_model",
    "to_diffusers_names",
]
