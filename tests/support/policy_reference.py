"""Independent references of the peer memories, written out from their public descriptions.

Nothing here imports the code under test.  Each function states, for a chunk that starts at
frame ``start``, which frames the memory holds, what every aggregated slot holds (as weights
over the frames it summarises) and at which temporal RoPE position every entry sits.  Sources:
``shared/reference/official-release.md`` (the FadeMem release), ``peers.md`` and the peers'
public code, read for facts (Self-Forcing, Infinity-RoPE, MemRoPE).

A slot's content is a dict ``{frame: weight}``: the slot holds ``sum(weight * x[frame])`` of the
frames' un-roped keys (and values); a MemRoPE moving-average slot holds weights over the
frames' *token means* (every token of the slot holds the same vector), marked ``mean=True``.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class RefEntry:
    """One memory entry of a reference: centre, span, anchor flag, content, position."""

    mu: float
    span: int
    content: dict[int, float]
    anchor: bool = False
    mean: bool = False  # content is over per-frame token means, broadcast to every token
    pos: float = float("nan")
    extra: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- FadeMem release
def released_bank(start: int, chunk: int = 3, budget: int = 12, beta: float = 0.3,
                  gamma: float = 0.5, anchor: bool = True) -> list[RefEntry]:
    """The release's bank when the chunk at ``start`` is generated (official-release.md 1-4).

    Frames ``0..start-1`` were evicted one chunk at a time; the frames of the chunk starting at
    ``c`` are inserted when the chunk at ``c + chunk`` arrives, each with age reference
    ``t = c + chunk``.  Full bank: merge the adjacent pair with the smallest
    ``|a_i**beta - a_{i+1}**beta|`` (``a = t - mu``), the pair holding the newest entry
    excluded, ties to the oldest; ``mu = round(span-weighted mean)`` (Python's round), K/V
    weights ``s**gamma / (s_a**gamma + s_b**gamma)``; a pair with the anchor keeps the anchor's
    K/V and mu 0, spans add.
    """
    bank: list[RefEntry] = []
    for c in range(0, start, chunk):
        t = min(c + chunk, start)
        for f in range(c, t):
            new = RefEntry(float(f), 1, {f: 1.0}, anchor=anchor and f == 0)
            if len(bank) < budget:
                bank.append(new)
                continue
            work = bank + [new]
            warped = [(t - e.mu) ** beta if t - e.mu > 0 else 0.0 for e in work]
            gaps = [abs(warped[i] - warped[i + 1]) for i in range(len(work) - 1)]
            i = min(range(len(gaps) - 1), key=lambda j: gaps[j])
            a, b = work[i], work[i + 1]
            span = a.span + b.span
            if a.anchor or b.anchor:
                kept = a if a.anchor else b
                merged = RefEntry(0.0, span, dict(kept.content), anchor=True)
            else:
                mu = float(round(a.span / span * a.mu + b.span / span * b.mu))
                wa = a.span ** gamma / (a.span ** gamma + b.span ** gamma)
                content = {k: wa * w for k, w in a.content.items()}
                for k, w in b.content.items():
                    content[k] = content.get(k, 0.0) + (1 - wa) * w
                merged = RefEntry(mu, span, content)
            bank = work[:i] + [merged] + work[i + 2:]
    return bank


def released_positions(bank: list[RefEntry], start: int, budget: int = 12,
                       beta: float = 0.3) -> tuple[list[float], float]:
    """Positions of the bank entries and of the chunk's first frame (official-release.md 5).

    Absolute (entry at its mu, chunk at ``start``) until ``start >= 18`` with a full bank;
    then the 21-frame window: anchor at 0, chunk at 18.., the 3 newest entries at 15, 16, 17,
    the far ones (oldest first) at ``18 - g`` with strictly decreasing gaps ``g`` in [4, 17],
    each gap the one in its allowed range closest in ``g**beta`` to
    ``clamp(start - mu, 4, 17)**beta`` (the smallest such gap on ties).
    """
    if start < 18 or len(bank) < budget:
        return [e.mu for e in bank], float(start)
    pos: list[float] = [float("nan")] * len(bank)
    anchors = [i for i, e in enumerate(bank) if e.anchor][:1]
    normal = sorted((i for i in range(len(bank)) if i not in anchors), key=lambda i: bank[i].mu)
    for i in anchors:
        pos[i] = 0.0
    near, far = normal[-3:], normal[:-3]
    for offset, i in enumerate(near):
        pos[i] = 18.0 - (len(near) - offset)
    previous = 18
    for idx, i in enumerate(far):
        lo, hi = 4 + (len(far) - idx - 1), previous - 1
        target = min(max(max(1, start - int(bank[i].mu)), 4), 17) ** beta
        gap = min(range(lo, hi + 1), key=lambda g: abs(g ** beta - target))
        pos[i] = 18.0 - gap
        previous = gap
    return pos, 18.0


# Simulated 60 s layout from official-release.md (237 evicted frames, M 12, beta 0.3)
RELEASE_60S_ENTRIES = [(0, 44), (75, 64), (129, 43), (159, 17), (177, 19), (194, 15),
                       (207, 12), (218, 8), (225, 7), (231, 5), (234, 2), (236, 1)]
RELEASE_60S_POSITIONS = [0, 1, 2, 3, 4, 5, 6, 7, 8, 15, 16, 17]


# ----------------------------------------------------------------------------- windows
def self_forcing_frames(start: int, window: int = 21, chunk: int = 3) -> list[int]:
    """Self-Forcing's rolling KV past 21 frames: the ``window`` newest frames including the
    chunk, keys at their absolute frame index (its causal_model rolls the oldest tokens out)."""
    return list(range(max(0, start - (window - chunk)), start))


def infinity_rope_state(start: int, sink: int = 1, window: int = 6,
                        chunk: int = 3) -> tuple[list[int], list[float], list[float]]:
    """Infinity-RoPE: frames held, their positions and the chunk's positions.

    The cache holds ``window`` frames including the chunk; the first ``sink`` frames never
    leave; every step the held frames are re-roped at 0, 1, 2, ... in order and the chunk's
    queries/keys sit right after them (block-relativistic RoPE).
    """
    keep = window - chunk - sink
    tail = list(range(max(sink, start - keep), start))
    frames = list(range(min(sink, start))) + tail
    return frames, [float(i) for i in range(len(frames))], \
        [float(len(frames) + j) for j in range(chunk)]


def infinity_rope_flush(frames: list[int], sink: int = 1, keep: int = 2) -> list[int]:
    """At a prompt switch the release keeps the sink and the ``keep`` newest frames (no
    re-cache under the new prompt)."""
    return frames[:sink] + [f for f in frames[sink:]][-keep:]


# ----------------------------------------------------------------------------- MemRoPE
def memrope_state(start: int, sink: int = 3, recent: int = 4, chunk: int = 3,
                  alpha_long: float = 0.01, alpha_short: float = 0.1) -> list[RefEntry]:
    """MemRoPE's cache (EMA mode, scalar alphas) when the chunk at ``start`` is generated.

    Window ``W = sink + 2 + recent + chunk`` frames.  While everything fits, all frames stay
    at positions 0..n-1.  At the first roll the two slots after the sink become the long and
    the short moving average: the frames they held (``sink`` and ``sink + 1``) are dropped and
    both are initialised with the token mean of the frames evicted then (all but the
    ``recent`` newest of the rest); afterwards every chunk evicts the oldest frames beyond
    ``recent`` and updates ``L = a_l * m + (1 - a_l) * L``, ``S = a_s * m + (1 - a_s) * S``
    with ``m`` the token mean of the evicted frames.  Positions once rolling: sink 0.., L,
    S, recent, then the chunk at ``W - chunk ..``.
    """
    window = sink + 2 + recent + chunk
    frames = list(range(start))
    if start + chunk <= window:
        return [RefEntry(float(f), 1, {f: 1.0}, pos=float(f)) for f in frames]
    first = next(c for c in range(0, start + 1, chunk) if c + chunk > window)
    held = list(range(sink + 2, first))
    evicted, held = held[:-recent], held[-recent:]
    long = {f: 1.0 / len(evicted) for f in evicted}
    short = dict(long)
    for c in range(first + chunk, start + 1, chunk):
        held = held + list(range(c - chunk, c))
        evicted, held = held[:-recent], held[-recent:]
        m = {f: 1.0 / len(evicted) for f in evicted}
        long = _ema(long, m, alpha_long)
        short = _ema(short, m, alpha_short)
    out = [RefEntry(float(f), 1, {f: 1.0}, pos=float(f)) for f in range(sink)]
    out.append(RefEntry(float("nan"), 0, long, mean=True, pos=float(sink)))
    out.append(RefEntry(float("nan"), 0, short, mean=True, pos=float(sink + 1)))
    out += [RefEntry(float(f), 1, {f: 1.0}, pos=float(sink + 2 + j)) for j, f in enumerate(held)]
    return out


def _ema(old: dict[int, float], new: dict[int, float], alpha: float) -> dict[int, float]:
    out = {f: (1 - alpha) * w for f, w in old.items()}
    for f, w in new.items():
        out[f] = out.get(f, 0.0) + alpha * w
    return out
