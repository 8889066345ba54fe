"""Block-causal, KV-cached forward of a Wan2.1 DiT (diffusers' ``WanTransformer3DModel``).

The weights and sub-modules are diffusers'; the forward is ours: diffusers' own ``forward``
cannot see a KV memory (nothing but the rotary tensors reaches the attention), so the blocks
are driven here one sub-module at a time.

One chunk of latent frames is a query; its self-attention keys/values are whatever the cache's
``LayerKV.attend`` returns (memory entries + the chunk itself).  The text's cross-attention K/V
are computed once per prompt (:meth:`CausalWan.encode_text`).

Numerics follow the original Wan code: the residual stream, every norm, the modulation and the
timestep embedding run in float32; only the linear layers, the patch convolution and the
attention run in the weight dtype.  RoPE angles come from :mod:`fademem_core.rope` (float64
angles at float positions).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

import torch
import torch.nn.functional as F

from ..memory.contract import AttentionInputs, KVCache, KVGeometry
from ..rope import apply_rotary, axis_dims, grid_cos_sin
from ..wan import VAE_SPATIAL
from .recorded import SamplerRecord

if TYPE_CHECKING:  # pragma: no cover
    from diffusers import WanTransformer3DModel

# Sub-modules kept in float32 whatever the weight dtype: tiny and precision-critical (timestep
# embedding, modulation, the affine cross-attention norm, the q/k RMSNorm gains).
FP32_MODULE_SUFFIXES = (
    "condition_embedder.time_embedder",
    "condition_embedder.time_proj",
    "norm2",
    "norm_q",
    "norm_k",
)
FP32_PARAM_NAMES = ("scale_shift_table",)

# umT5 width and context length of the released Wan models: shorter prompts are zero-padded to
# 512 slots as in Wan's training (and diffusers' pipeline), so every slot gets its embedding.
UMT5_DIM = 4096
UMT5_SLOTS = 512

# self-attention hook: (layer, q, k, v, k_temporal_raw) -> attention output [B, S, H, D]
SelfAttention = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class TextKV:
    """Cross-attention keys/values of one prompt, one ``[B, H, L, D]`` pair per layer."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @property
    def batch(self) -> int:
        return self.keys[0].shape[0]

    def nbytes(self) -> int:
        """Bytes held by the text K/V (all layers)."""
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)


def cast_transformer_(transformer: torch.nn.Module, dtype: torch.dtype) -> torch.nn.Module:
    """In place: weights to ``dtype``, the precision-critical parameters kept in float32."""
    for name, module in transformer.named_modules():
        dotted = f".{name}."
        keep = any(f".{s}." in dotted for s in FP32_MODULE_SUFFIXES)  # the module or inside it
        for pname, p in module.named_parameters(recurse=False):
            want = torch.float32 if (keep or pname in FP32_PARAM_NAMES) else dtype
            if p.dtype != want:
                p.data = p.data.to(want)
    return transformer


def _rms_norm(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    """RMSNorm over the last dim in float32 (``norm`` is a ``torch.nn.RMSNorm``)."""
    w = None if norm.weight is None else norm.weight.float()
    eps = norm.eps if norm.eps is not None else torch.finfo(torch.float32).eps
    return F.rms_norm(x.float(), (x.shape[-1],), w, eps)


def _layer_norm(x: torch.Tensor, norm: torch.nn.Module) -> torch.Tensor:
    """LayerNorm over the last dim in float32 (diffusers' ``FP32LayerNorm``)."""
    w = None if norm.weight is None else norm.weight.float()
    b = None if norm.bias is None else norm.bias.float()
    return F.layer_norm(x.float(), (x.shape[-1],), w, b, norm.eps)


def _modulate(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``x * (1 + scale) + shift`` with per-frame (or per-sample) modulation.

    ``x`` is ``[B, S, C]``; ``shift``/``scale`` are ``[B, G, C]`` with ``G`` groups of equal,
    consecutive tokens (``G = 1`` one timestep per sample, ``G = F`` one per frame).
    """
    b, s, c = x.shape
    g = shift.shape[1]
    xv = x.reshape(b, g, s // g, c)
    return (xv * (1 + scale[:, :, None]) + shift[:, :, None]).reshape(b, s, c)


def _gate(x: torch.Tensor, y: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """Residual update ``x + y * gate`` in float32 (``gate`` as in :func:`_modulate`)."""
    b, s, c = x.shape
    g = gate.shape[1]
    out = x.reshape(b, g, s // g, c) + y.float().reshape(b, g, s // g, c) * gate[:, :, None]
    return out.reshape(b, s, c)


class CausalWan:
    """A Wan2.1 text-to-video DiT run chunk by chunk against a KV cache.

    ``transformer`` is a diffusers ``WanTransformer3DModel``; use :func:`fademem_core.load_model`
    or :func:`fademem_core.tiny_model` to build one.  The object owns no rollout state: the
    memory lives in the cache, the schedule in the sampler.
    """

    def __init__(self, transformer: "WanTransformer3DModel",
                 sampler_record: SamplerRecord | None = None) -> None:
        cfg = transformer.config
        if cfg.get("image_dim") is not None or cfg.get("added_kv_proj_dim") is not None:
            raise ValueError("image-to-video Wan transformers are not supported (found image_dim/added_kv_proj_dim)")
        self.transformer = transformer
        self.config = cfg
        # the sampler the weights were trained for, from the JSON beside them (None: not recorded)
        self.sampler_record = sampler_record
        self.num_layers = int(cfg["num_layers"])
        self.heads = int(cfg["num_attention_heads"])
        self.head_dim = int(cfg["attention_head_dim"])
        self.dim = self.heads * self.head_dim
        self.text_dim = int(cfg["text_dim"])
        self.text_len = UMT5_SLOTS if self.text_dim == UMT5_DIM else None  # pad target (None: as given)
        self.in_channels = int(cfg["in_channels"])
        self.out_channels = int(cfg["out_channels"] or cfg["in_channels"])
        self.patch_size = tuple(int(p) for p in cfg["patch_size"])
        axis_dims(self.head_dim)  # validates head_dim for RoPE early
        # the 5 forwards of a chunk share one rotary table: keep the last one
        self._rope: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None
        transformer.eval()
        transformer.requires_grad_(False)

    # ------------------------------------------------------------------ properties
    @property
    def dtype(self) -> torch.dtype:
        """Weight dtype of the linear layers (the compute dtype)."""
        return self.transformer.patch_embedding.weight.dtype

    @property
    def device(self) -> torch.device:
        return self.transformer.patch_embedding.weight.device

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "CausalWan":
        """Move/cast in place (float32 kept where it matters); returns ``self``."""
        if device is not None:
            self.transformer.to(device)
        if dtype is not None:
            cast_transformer_(self.transformer, dtype)
        return self

    def __repr__(self) -> str:
        return (
            f"CausalWan(layers={self.num_layers}, dim={self.dim}, heads={self.heads}x{self.head_dim}, "
            f"text_dim={self.text_dim}, dtype={self.dtype}, device={self.device})"
        )

    # ------------------------------------------------------------------ geometry
    def latent_grid(self, height: int, width: int) -> tuple[int, int]:
        """Token grid ``(rows, cols)`` of one latent frame for a ``height x width`` video."""
        step_h = VAE_SPATIAL * self.patch_size[1]
        step_w = VAE_SPATIAL * self.patch_size[2]
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (height, width))
        if not ints or height <= 0 or width <= 0 or height % step_h or width % step_w:
            raise ValueError(
                f"height and width must be positive multiples of {step_h}x{step_w} pixels, got {height}x{width}"
            )
        return height // step_h, width // step_w

    def tokens_per_frame(self, height: int, width: int) -> int:
        rows, cols = self.latent_grid(height, width)
        return rows * cols

    def geometry(self, batch: int, height: int, width: int) -> "KVGeometry":
        """KV geometry of a rollout at ``height x width`` pixels (the cache's allocation unit)."""
        return KVGeometry(
            num_layers=self.num_layers,
            batch=batch,
            tokens_per_frame=self.tokens_per_frame(height, width),
            num_heads=self.heads,
            head_dim=self.head_dim,
            dtype=self.dtype,
            device=self.device,
            grid=self.latent_grid(height, width),
        )

    # ------------------------------------------------------------------ text
    def encode_text(self, text: torch.Tensor) -> TextKV:
        """Per-layer cross-attention K/V of ``text [B, L, text_dim]`` (computed once per prompt).

        For umT5-width models a prompt shorter than 512 slots is zero-padded to 512 first.
        Gradients flow when grad mode is on and the weights require them (training); the
        rollout runs it under ``torch.no_grad()``.
        """
        if text.ndim != 3 or text.shape[-1] != self.text_dim:
            raise ValueError(f"text must be [B, L, {self.text_dim}], got {tuple(text.shape)}")
        if self.text_len is not None and text.shape[1] < self.text_len:
            text = F.pad(text, (0, 0, 0, self.text_len - text.shape[1]))
        return text_kv(self.transformer, text)

    # ------------------------------------------------------------------ forward
    def forward_chunk(
        self,
        x: torch.Tensor,
        timestep: float | torch.Tensor,
        text: TextKV,
        cache: "KVCache",
        positions: Sequence[float],
        write: bool,
        first_step: bool = False,
    ) -> torch.Tensor:
        """Velocity for the chunk ``x [B, C, F, h, w]`` attending to ``cache`` (float32, same shape).

        ``timestep``: a float, ``[B]`` or per frame ``[B, F]``.  ``positions``: the chunk's
        temporal RoPE positions (what ``cache.begin_chunk`` / ``begin_recache`` returned).
        ``write=True`` lets the cache remember this pass's K/V (the clean pass).
        ``first_step``: this pass is the chunk's first denoising step.  The cache gets only the
        attention inputs it declares (``cache.attention_needs``: queries, text keys, the flag).
        """
        layers = cache.layers
        if len(layers) != self.num_layers:
            raise ValueError(f"cache has {len(layers)} layers, the model has {self.num_layers}")
        needs = getattr(cache, "attention_needs", frozenset())

        def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_raw: torch.Tensor) -> torch.Tensor:
            if not needs:  # a cache that asks for nothing is called as before
                k_ctx, v_ctx = layers[i].attend(k, v, k_raw, write)
            else:
                k_ctx, v_ctx = layers[i].attend(k, v, k_raw, write, AttentionInputs(
                    q if "queries" in needs else None,
                    text.keys[i] if "text_keys" in needs else None,
                    bool(first_step) and "first_step" in needs))
            return _sdpa(q, k_ctx, v_ctx)

        _check_inputs(self.transformer, x, positions, text)
        pt, ph, pw = self.patch_size
        rotary = self._rotary(positions, x.shape[3] // ph, x.shape[4] // pw, self.device)
        return wan_forward(self.transformer, x, timestep, text, rotary, attend)

    def forward_masked(
        self,
        x: torch.Tensor,
        timestep: float | torch.Tensor,
        text: TextKV,
        positions: Sequence[float],
        frame_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Full-sequence forward with a frame-level attention mask (training / analysis).

        ``frame_mask [F, F]`` (bool, True = query frame may attend key frame) is expanded to
        tokens; ``None`` attends everywhere.  No cache is involved (see :func:`forward_masked`).
        """
        return forward_masked(self.transformer, x, timestep, text, positions, frame_mask)

    def _rotary(self, positions: Sequence[float], hp: int, wp: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        key = (tuple(float(p) for p in positions), hp, wp, str(device))
        if self._rope is None or self._rope[0] != key:
            self._rope = (key, grid_cos_sin(key[0], hp, wp, self.head_dim, device=device))
        return self._rope[1]


# ---------------------------------------------------------------------- the one Wan forward
# Module-level so that the rollout (CausalWan, weights frozen) and training (a trainable
# transformer, gradients on) run the very same code.
def _dims(tr: torch.nn.Module) -> tuple[int, int]:
    return int(tr.config["num_attention_heads"]), int(tr.config["attention_head_dim"])


def text_kv(tr: torch.nn.Module, text: torch.Tensor) -> TextKV:
    """Per-layer cross-attention K/V of ``text [B, L, text_dim]`` (differentiable; no padding)."""
    heads, head_dim = _dims(tr)
    weight = tr.patch_embedding.weight
    emb = tr.condition_embedder.text_embedder(text.to(weight.device, weight.dtype))
    keys, values = [], []
    for block in tr.blocks:
        attn = block.attn2
        k = _rms_norm(attn.to_k(emb), attn.norm_k).to(weight.dtype)
        v = attn.to_v(emb)
        keys.append(k.unflatten(-1, (heads, head_dim)).transpose(1, 2).contiguous())
        values.append(v.unflatten(-1, (heads, head_dim)).transpose(1, 2).contiguous())
    return TextKV(keys, values)


def timestep_sinusoid(t: torch.Tensor, dim: int) -> torch.Tensor:
    """``[cos | sin](t * 10000^(-j / half))``, ``[N, dim]``: Wan's ``sinusoidal_embedding_1d``.

    Computed in float64 as the original Wan code does, then cast to float32 (diffusers'
    ``Timesteps`` works in float32: at t ~ 1000 its angles are off by ~1e-4 rad, the largest
    difference to the official Self-Forcing outputs).  MPS has no float64: computed on the CPU.
    """
    half = dim // 2
    where = torch.device("cpu") if t.device.type == "mps" else t.device
    t64 = t.detach().to(where, torch.float64)
    freqs = torch.pow(10000.0, -torch.arange(half, dtype=torch.float64, device=where) / half)
    angles = torch.outer(t64, freqs)
    return torch.cat([angles.cos(), angles.sin()], dim=1).to(t.device, torch.float32)


def timestep_embedding(tr: torch.nn.Module, timestep: float | torch.Tensor, batch: int,
                       frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``temb [B, G, dim]`` and modulation ``[B, G, 6, dim]`` (float32), ``G`` in {1, F}.

    ``timestep``: a float, ``[B]`` (or ``[1]``) or per frame ``[B, F]``.
    """
    device = tr.patch_embedding.weight.device
    if isinstance(timestep, (int, float)):  # a fill on the device: no host->device copy (sync)
        t = torch.full((), float(timestep), dtype=torch.float32, device=device)
    else:
        t = torch.as_tensor(timestep, dtype=torch.float32, device=device)
    if t.ndim == 0:
        t = t.expand(batch)
    if t.ndim == 1:
        if t.shape[0] not in (1, batch):
            raise ValueError(f"timestep must be a float, [B] or [B, F]; got shape {tuple(t.shape)}")
        t = t.expand(batch)[:, None]
    elif t.ndim != 2 or t.shape[0] != batch or t.shape[1] != frames:
        raise ValueError(f"timestep must be a float, [{batch}] or [{batch}, {frames}]; got {tuple(t.shape)}")
    g = t.shape[1]
    emb = tr.condition_embedder
    sinus = timestep_sinusoid(t.reshape(-1), emb.timesteps_proj.num_channels)
    temb = emb.time_embedder(sinus)
    mod = emb.time_proj(F.silu(temb))
    return temb.reshape(batch, g, -1), mod.reshape(batch, g, 6, -1)


def _check_inputs(tr: torch.nn.Module, x: torch.Tensor, positions: Sequence[float], text: TextKV) -> None:
    cfg = tr.config
    patch = tuple(int(p) for p in cfg["patch_size"])
    if x.ndim != 5 or x.shape[1] != int(cfg["in_channels"]):
        raise ValueError(f"x must be [B, {int(cfg['in_channels'])}, F, h, w], got {tuple(x.shape)}")
    f, h, w = x.shape[2:]
    if f % patch[0] or h % patch[1] or w % patch[2]:
        raise ValueError(f"latent shape {tuple(x.shape)} is not divisible by the patch {patch}")
    if len(positions) != f // patch[0]:
        raise ValueError(f"got {len(positions)} positions for {f // patch[0]} latent frames")
    if text.batch not in (1, x.shape[0]):
        raise ValueError(f"text batch {text.batch} does not match latent batch {x.shape[0]}")


def wan_block(block: torch.nn.Module, i: int, hs: torch.Tensor, mod: torch.Tensor,
              rotary: tuple[torch.Tensor, torch.Tensor], text: TextKV,
              self_attention: SelfAttention, heads: int, dt: torch.dtype) -> torch.Tensor:
    """One Wan transformer block on the float32 residual stream ``hs [B, S, dim]``.

    ``mod [B, G, 6, dim]`` is the timestep modulation, ``rotary`` the q/k cos/sin table and
    ``self_attention(i, q, k, v, k_temporal_raw)`` supplies the attention over the context
    (a KV cache during a rollout, a mask in training); ``dt`` is the weight (compute) dtype.
    """
    head_dim = hs.shape[-1] // heads
    cos, sin = rotary
    shift, scale, gate, c_shift, c_scale, c_gate = (block.scale_shift_table.float() + mod).unbind(2)

    # self-attention through the caller's hook (cache or mask)
    n = _modulate(_layer_norm(hs, block.norm1), shift, scale).to(dt)
    a = block.attn1
    q = _rms_norm(a.to_q(n), a.norm_q).to(dt).unflatten(-1, (heads, head_dim))
    k = _rms_norm(a.to_k(n), a.norm_k).to(dt).unflatten(-1, (heads, head_dim))
    v = a.to_v(n).unflatten(-1, (heads, head_dim))
    k_raw = k[..., : axis_dims(head_dim)[0]]
    o = self_attention(i, apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v, k_raw)
    hs = _gate(hs, a.to_out[0](o.flatten(2).to(dt)), gate)

    # cross-attention to the prompt (norm2 is the affine cross-attention norm)
    n = _layer_norm(hs, block.norm2).to(dt) if hasattr(block.norm2, "weight") else hs.to(dt)
    c = block.attn2
    q = _rms_norm(c.to_q(n), c.norm_q).to(dt).unflatten(-1, (heads, head_dim))
    o = _sdpa(q, text.keys[i], text.values[i], heads_first=True)
    hs = hs + c.to_out[0](o.flatten(2).to(dt)).float()

    # feed-forward
    n = _modulate(_layer_norm(hs, block.norm3), c_shift, c_scale).to(dt)
    return _gate(hs, block.ffn(n), c_gate)


def wan_forward(tr: torch.nn.Module, x: torch.Tensor, timestep: float | torch.Tensor,
                text: TextKV, rotary: tuple[torch.Tensor, torch.Tensor],
                self_attention: SelfAttention) -> torch.Tensor:
    """Velocity ``[B, C, F, h, w]`` (float32) of diffusers' ``WanTransformer3DModel`` ``tr``.

    ``rotary``: the chunk's q/k cos/sin table (:func:`fademem_core.rope.grid_cos_sin`);
    inputs are checked by the callers (:meth:`CausalWan.forward_chunk`, :func:`forward_masked`).
    """
    b, _, f, h, w = x.shape
    pt, ph, pw = (int(p) for p in tr.config["patch_size"])
    fp, hp, wp = f // pt, h // ph, w // pw
    weight = tr.patch_embedding.weight
    heads, _ = _dims(tr)
    temb, mod = timestep_embedding(tr, timestep, b, fp)
    hs = tr.patch_embedding(x.to(device=weight.device, dtype=weight.dtype))
    hs = hs.flatten(2).transpose(1, 2).float()  # residual stream in float32: [B, S, dim]
    for i, block in enumerate(tr.blocks):
        hs = wan_block(block, i, hs, mod, rotary, text, self_attention, heads, weight.dtype)
    shift, scale = (tr.scale_shift_table.float() + temb[:, :, None]).unbind(2)
    out = _modulate(_layer_norm(hs, tr.norm_out), shift, scale).to(weight.dtype)
    out = tr.proj_out(out).float()
    # unpatchify: [B, (F h w), (pt ph pw C)] -> [B, C, F*pt, h*ph, w*pw]
    out = out.reshape(b, fp, hp, wp, pt, ph, pw, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
    return out.reshape(b, -1, f, h, w)


def forward_masked(tr: torch.nn.Module, x: torch.Tensor, timestep: float | torch.Tensor,
                   text: TextKV, positions: Sequence[float],
                   frame_mask: torch.Tensor | None = None) -> torch.Tensor:
    """Full-sequence forward of ``tr`` with a frame-level mask ``[F, F]`` (True = may attend).

    Differentiable (training calls it on a trainable transformer); :meth:`CausalWan.forward_masked`
    is the same on a frozen model.
    """
    _check_inputs(tr, x, positions, text)
    _, head_dim = _dims(tr)
    patch = tuple(int(p) for p in tr.config["patch_size"])
    f, hp, wp = x.shape[2], x.shape[3] // patch[1], x.shape[4] // patch[2]
    device = tr.patch_embedding.weight.device
    mask = None
    if frame_mask is not None:
        if frame_mask.shape != (f, f):
            raise ValueError(f"frame_mask must be [{f}, {f}], got {tuple(frame_mask.shape)}")
        mask = frame_mask.to(device=device, dtype=torch.bool)  # where q/k live
        mask = mask.repeat_interleave(hp * wp, 0).repeat_interleave(hp * wp, 1)

    def attend(i: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, k_raw: torch.Tensor) -> torch.Tensor:
        return _sdpa(q, k, v, mask)

    rotary = grid_cos_sin([float(p) for p in positions], hp, wp, head_dim, device=device)
    return wan_forward(tr, x, timestep, text, rotary, attend)


def _sdpa(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    mask: torch.Tensor | None = None,
    heads_first: bool = False,
) -> torch.Tensor:
    """Attention of ``q [B, S, H, D]`` over ``k, v`` (``[B, Sk, H, D]``, or ``[B, H, Sk, D]`` when
    ``heads_first``); returns ``[B, S, H, D]``.  A batch-1 ``k, v`` broadcasts over ``q``'s batch."""
    qh = q.transpose(1, 2)
    kh = k if heads_first else k.transpose(1, 2)
    vh = v if heads_first else v.transpose(1, 2)
    if kh.shape[0] != qh.shape[0]:
        kh = kh.expand(qh.shape[0], -1, -1, -1)
        vh = vh.expand(qh.shape[0], -1, -1, -1)
    kh = kh.to(qh.dtype)
    vh = vh.to(qh.dtype)
    out = F.scaled_dot_product_attention(qh, kh, vh, attn_mask=mask)
    return out.transpose(1, 2)


__all__ = ["CausalWan", "TextKV", "cast_transformer_", "forward_masked", "text_kv", "timestep_embedding",
           "timestep_sinusoid",
           "wan_block", "wan_forward"]

