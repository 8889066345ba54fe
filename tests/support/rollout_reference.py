"""Independent reference for the rollout tests: full-sequence forwards with a frame mask.

Uses nothing of fademem_core: diffusers' own ``WanTransformer3DModel.forward`` (its own RoPE at
integer frame indices, its own per-token timestep path) with its own attention processor,
handed a boolean mask through a small wrapper.  At chunk ``c``, step ``j`` the whole video so
far is one sequence: the earlier frames as clean latents at ``context_noise``, the chunk at the
step's timestep; query frame ``i`` of chunk ``[start, end)`` sees key frame ``f`` iff
``visible(f, start, end)``.  Earlier frames
never see later ones, so their keys equal the ones a KV cache would have stored.
"""
from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch


class _MaskedProcessor:
    """Calls diffusers' Wan processor with an attention mask the block never passes."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.mask: torch.Tensor | None = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        return self.inner(attn, hidden_states, encoder_hidden_states, self.mask, rotary_emb)


@contextlib.contextmanager
def masked_attention(transformer) -> Iterator[list[_MaskedProcessor]]:
    """diffusers' own self-attention processor in every block, each taking the mask set on it."""
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor

    procs = [_MaskedProcessor(WanAttnProcessor()) for _ in transformer.blocks]
    for block, proc in zip(transformer.blocks, procs):
        block.attn1.processor = proc
    try:
        yield procs
    finally:
        for block in transformer.blocks:
            block.attn1.processor = WanAttnProcessor()


class _FramePositions(torch.nn.Module):
    """diffusers' RoPE with frame ``i`` of the sequence at temporal index ``positions[i]``.

    The tables are diffusers' own, computed for frames ``0..max(positions)`` and gathered per
    frame, so a sequence can show two frames at one position (clean and noisy halves)."""

    def __init__(self, rope: torch.nn.Module, positions: Sequence[float]) -> None:
        super().__init__()
        if any(p != int(p) or p < 0 for p in positions):
            raise ValueError(f"diffusers' RoPE takes integer frame indices >= 0, got {list(positions)}")
        self.rope = rope
        self.positions = [int(p) for p in positions]

    def forward(self, hidden_states: torch.Tensor):
        b, c, _, h, w = hidden_states.shape
        span = max(self.positions) + 1
        cos, sin = self.rope(hidden_states.new_empty(b, c, span, h, w))
        per_frame = cos.shape[1] // span
        index = (torch.tensor(self.positions).repeat_interleave(per_frame) * per_frame
                 + torch.arange(per_frame).repeat(len(self.positions)))
        return cos[:, index], sin[:, index]


@torch.no_grad()
def diffusers_masked_forward(transformer, x: torch.Tensor, frame_timesteps: torch.Tensor,
                             text: torch.Tensor, positions: Sequence[float],
                             frame_mask: torch.Tensor) -> torch.Tensor:
    """diffusers' ``WanTransformer3DModel.forward`` on the whole sequence ``x [B, 16, F, h, w]``:
    per-frame timesteps ``[B, F]`` given per token, frame ``i`` at RoPE index ``positions[i]``,
    query frame ``i`` attending to key frame ``j`` iff ``frame_mask[i, j]``."""
    ph, pw = transformer.config.patch_size[1:]
    per_frame = (x.shape[3] // ph) * (x.shape[4] // pw)
    rope = transformer.rope
    transformer.rope = _FramePositions(rope, positions)
    try:
        with masked_attention(transformer) as procs:
            mask = frame_mask.repeat_interleave(per_frame, 0).repeat_interleave(per_frame, 1)
            for proc in procs:
                proc.mask = mask
            tokens_t = frame_timesteps.repeat_interleave(per_frame, dim=1)
            return transformer(x, tokens_t, text, return_dict=False)[0]
    finally:
        transformer.rope = rope


def full_visible() -> Callable[[int, int, int], bool]:
    """Block-causal: a chunk ``[start, end)`` sees every frame before its end."""
    return lambda f, start, end: f < end


def window_visible(chunk: int, window: int, sink: int = 0) -> Callable[[int, int, int], bool]:
    """A chunk sees its own frames, the ``window - chunk`` frames before it, and the first ``sink``."""

    def visible(f: int, start: int, end: int) -> bool:
        if f >= end:
            return False
        return f >= start - (window - chunk) or f < sink

    return visible


def peer_context_sigma(t: float, shift: float) -> float:
    """Noise level Self-Forcing's training rollout adds for timestep ``t``: its scheduler
    (FlowMatchScheduler(shift, sigma_min=0, extra_one_step=True), 1000 steps) tabulates
    sigma = shift*u / (1 + (shift-1)*u) for u = linspace(1, 0, 1001)[:-1] and ``add_noise``
    takes the entry whose timestep (1000 * sigma) is nearest ``t``."""
    u = torch.linspace(1.0, 0.0, 1001, dtype=torch.float64)[:-1]
    table = shift * u / (1 + (shift - 1) * u)
    return float(table[(1000.0 * table - t).abs().argmin()])


def spans(num_frames: int, chunk: int, prefix_frames: int = 0) -> list[tuple[int, int]]:
    """``(start, end)`` of each chunk: the prefix in chunks (any remainder first), then the new frames."""
    rest = prefix_frames % chunk
    head = [0] if rest else []
    cuts = head + list(range(rest, prefix_frames, chunk)) + list(range(prefix_frames, prefix_frames + num_frames, chunk))
    ends = cuts[1:] + [prefix_frames + num_frames]
    return list(zip(cuts, ends))


def warped(steps, shift: float) -> list[float]:
    out = []
    for t in steps:
        s = t / 1000.0
        out.append(1000.0 * shift * s / (1.0 + (shift - 1.0) * s))
    return out


@torch.no_grad()
def diffusers_rollout(
    transformer,
    text: torch.Tensor,
    num_frames: int,
    h: int,
    w: int,
    seed: int,
    visible: Callable[[int, int, int], bool],
    steps=(1000, 750, 500, 250),
    shift: float = 5.0,
    chunk: int = 3,
    context_noise: float = 0.0,
    context_input: str = "clean",
    euler: bool = False,
    prefix: torch.Tensor | None = None,
) -> torch.Tensor:
    """Latents ``[B, 16, num_frames, h, w]`` of the rollout, computed without any KV cache.

    Earlier frames enter as context labelled ``context_noise``: their clean x0 (Self-Forcing's
    and LongLive's inference pipelines) or, with ``context_input="noised"``, x0 noised to that
    timestep's grid sigma (Self-Forcing's training rollout).  ``euler``: integrate the flow ODE
    instead, ``x <- x + (sigma_next - sigma) v`` down to 0.

    ``prefix`` ``[B, 16, P, h, w]``: given frames 0..P-1, cut into chunks like the new frames
    (any remainder first); a prefix chunk skips denoising but draws (and drops) the noise a
    generated chunk would draw, then is written as context like any chunk.  Returns the new
    frames only."""
    with masked_attention(transformer) as procs:
        b = text.shape[0]
        ph, pw = transformer.config.patch_size[1:]
        n_tok = (h // ph) * (w // pw)
        times = warped(steps, shift)
        sigmas = [t / 1000.0 for t in times]
        gen = torch.Generator().manual_seed(seed)
        primed = 0 if prefix is None else prefix.shape[2]
        total = primed + num_frames
        out = torch.zeros(b, 16, total, h, w)
        ctx = torch.zeros(b, 16, total, h, w)  # what the clean pass saw
        chunks = spans(num_frames, chunk, primed)
        chunk_of = [next((s, e) for s, e in chunks if s <= i < e) for i in range(total)]
        for start, end in chunks:
            n = end - start
            fmask = torch.tensor([[visible(f, *chunk_of[i]) for f in range(end)] for i in range(end)])
            mask = fmask.repeat_interleave(n_tok, 0).repeat_interleave(n_tok, 1)
            for p in procs:
                p.mask = mask
            if start < primed:
                for _ in range(1 if euler else len(times)):  # the draws a generated chunk makes
                    torch.randn(b, 16, n, h, w, generator=gen)
                x0 = prefix[:, :, start:end].float()
            else:
                x = torch.randn(b, 16, n, h, w, generator=gen)
                x0 = x
                for j, t in enumerate(times):
                    seq = torch.cat([ctx[:, :, :start], x], dim=2)
                    per_frame = torch.tensor([context_noise] * start + [t] * n, dtype=torch.float32)
                    tt = per_frame.repeat_interleave(n_tok)[None].expand(b, -1)
                    v = transformer(seq, tt, text, return_dict=False)[0][:, :, start:end]
                    x0 = x - sigmas[j] * v
                    if euler:
                        nxt = sigmas[j + 1] if j + 1 < len(times) else 0.0
                        x = x + (nxt - sigmas[j]) * v
                        x0 = x
                    elif j + 1 < len(times):
                        x = (1 - sigmas[j + 1]) * x0 + sigmas[j + 1] * torch.randn(b, 16, n, h, w, generator=gen)
            out[:, :, start:end] = x0
            if context_noise > 0 and context_input == "noised":
                sc = peer_context_sigma(context_noise, shift)
                ctx[:, :, start:end] = (1 - sc) * x0 + sc * torch.randn(b, 16, n, h, w, generator=gen)
            else:
                ctx[:, :, start:end] = x0
        return out[:, :, primed:]
