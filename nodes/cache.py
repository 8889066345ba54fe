"""FadeMemCache and FadeMemBaselineCache: build a cache policy (FADEMEM_CACHE) for the sampler.

A FADEMEM_CACHE is one of ``fademem_core``'s frozen policy dataclasses (FadeMem, SinkWindow,
SlidingWindow, FullCache, FadeMemRelease, InfinityRope, MemRope); the sampler builds the actual
memory from it for each rollout.
"""
from __future__ import annotations

from fademem_core import OPERATORS, POSITION_STRATEGIES

from .inputs import FadeMemNode, bool_input, combo, float_input, inputs, int_input, outputs

CACHE_TYPE = "FADEMEM_CACHE"
MAX_BUDGET = 256  # FadeMem Cache's budget widget (also the plan route's cap)

POSITIONS_TOOLTIP = (
    "Temporal RoPE position each memory entry is shown at. absolute: at its (merged) centre mu, "
    "the chunk at its real frame index (the paper). packed: entries at 0..n-1 in order, the "
    "chunk right after them (keeps positions inside the range the model was trained on).")


class FadeMemCache(FadeMemNode):
    """FadeMem: a bounded memory whose temporal resolution fades with distance."""

    FUNCTION = "build"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        (CACHE_TYPE, "cache", "The FadeMem memory policy; connect it to FadeMem Sampler or "
                              "FadeMem Memory Layout."))
    DESCRIPTION = (
        "FadeMem memory (paper defaults M=12, beta=0.3, anchor on, weighted average). The memory "
        "never holds more than M latent frames of keys/values; when full, the adjacent pair "
        "closest in warped time (t - mu)^beta is merged, so recent frames stay exact and distant "
        "ones are consolidated. The picture on the node shows the layout after a 60 s rollout "
        "(or the connected sampler's length) and follows beta, M and anchor live."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return inputs({
            "budget": int_input(12, 3, MAX_BUDGET,
                                "M: memory entries (latent frames of keys/values) held between "
                                "chunks, the anchor included. A chunk sees M + chunk frames. KV "
                                "memory grows linearly with M (about 274 MiB per entry at 480x832 "
                                "in bf16)."),
            "beta": float_input(0.3, 0.01, 1.0,
                                "Distance warp exponent (0 < beta <= 1). Small beta: distant "
                                "history is compressed hard and recent frames stay fine (best "
                                "consistency, paper default 0.3). beta = 1: uniform consolidation "
                                "(more motion).", step=0.01, round=0.01, slider=True),
            "anchor": bool_input(True, "Keep the first latent frame exact forever as a global "
                                       "anchor (needs M >= 3). Off: slightly more consistent, much "
                                       "less motion (paper ablation)."),
            "operator": combo(OPERATORS, "How two adjacent entries are merged: weighted_average "
                                         "(by span, paper default), average, select_nearest (keep "
                                         "the entry nearer the present) or max_pool (not "
                                         "recommended: kills motion).",
                              default="weighted_average"),
            "positions": combo(POSITION_STRATEGIES, POSITIONS_TOOLTIP, default="absolute"),
        })

    def build(self, budget, beta, anchor, operator, positions):
        from fademem_core import FadeMem

        return (FadeMem(budget=int(budget), beta=float(beta), anchor=bool(anchor),
                        operator=operator, positions=positions),)


# the kinds are fademem_core's registered policy names; a kind reads the widgets named like its
# policy's parameters, and a widget left at its sentinel (-1, 0.0 or "default") takes the
# policy's own default
BASELINES = ("sink_window", "sliding_window", "full", "self_forcing", "fademem_release",
             "infinity_rope", "memrope", "deep_forcing", "memflow")
_UNSET = (-1, 0.0, "default")


def _int(default_note: str, tooltip: str):
    return int_input(-1, -1, 256, f"{tooltip} -1: the kind's default ({default_note}).")


def _rate(tooltip: str, default_note: str):
    return float_input(0.0, 0.0, 1.0, f"{tooltip} 0: the kind's default ({default_note}).",
                       step=0.001, round=0.001)


class FadeMemBaselineCache(FadeMemNode):
    """The memories FadeMem is compared with (paper Table 1), one ``kind`` each."""

    FUNCTION = "build"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        (CACHE_TYPE, "cache", "A baseline memory policy for side-by-side comparisons with FadeMem."))
    DESCRIPTION = (
        "Baseline memories on the same weights. sink_window (LongLive): the first `sink` latent "
        "frames forever plus the `window` most recent (chunk included). sliding_window: the "
        "`window` most recent. full: every frame (unbounded). self_forcing: Self-Forcing's "
        "21-frame rolling window. fademem_release: FadeMem as the official release codes it (the "
        "memory the FadeMem-FT LoRA was trained with). infinity_rope: sink + short window re-roped "
        "at 0..W-1 every chunk, a KV flush instead of a re-cache at a prompt switch. memrope: sink "
        "+ a slow and a fast moving average of the evicted frames + recent frames, positions "
        "0..11. deep_forcing: a deep sink re-positioned just before the recent frames plus the "
        "tokens the chunk's queries attend to most (participative compression). memflow: "
        "LongLive's sink + window plus a bank of prototype frames kept by relevance to the prompt. "
        "Widgets a kind does not use are ignored; -1 / 0 / default mean the kind's own "
        "default (see the README's policy table)."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return inputs({
            "kind": combo(BASELINES, "sink_window: LongLive's sink + window. sliding_window: last "
                                     "frames only. full: keep everything (memory grows with the "
                                     "video). self_forcing: Self-Forcing's 21-frame FIFO. "
                                     "fademem_release: the official FadeMem code. infinity_rope: "
                                     "Infinity-RoPE. memrope: MemRoPE. deep_forcing: Deep Forcing "
                                     "(deep sink + participative compression). memflow: MemFlow's "
                                     "prototype bank (training-free).", default="sink_window"),
            "sink": int_input(-1, -1, 64, "sink_window, infinity_rope, memrope, deep_forcing, "
                                          "memflow: first latent frames that are never evicted "
                                          "(LongLive 3, Infinity-RoPE 1, MemRoPE 3, Deep Forcing 10, "
                                          "MemFlow 3; -1: the kind's default)."),
            "window": int_input(-1, -1, 256,
                                "Most recent latent frames a chunk sees, the chunk itself included: "
                                "sink_window 9 besides the sink (LongLive), sliding_window 12, "
                                "self_forcing 21; infinity_rope: everything a chunk sees, sink "
                                "included, 6; deep_forcing: frames' worth of tokens held between "
                                "chunks, sink + compressed + recent, 16; memflow: sink + recent "
                                "frames, chunk included, 12 (the bank comes on top). -1: the kind's "
                                "default. Must be >= chunk."),
            "positions": combo(["default"] + list(dict.fromkeys(POSITION_STRATEGIES + ("release",))),
                               "Temporal RoPE positions (sink_window, sliding_window, full, "
                               "self_forcing: absolute, packed or sink_shifted; fademem_release: "
                               "release = the release's 21-frame window layout once full, or "
                               "absolute; deep_forcing: sink_shifted = entries packed just before "
                               "the chunk, or packed). infinity_rope and memrope always re-rope at "
                               "0..W-1, memflow keeps absolute. default: the kind's own.",
                               default="default"),
            "budget": _int("12", "fademem_release: bank entries; a chunk sees budget + 3 frames."),
            "beta": _rate("fademem_release: power-law age warp.", "0.3"),
            "span_gamma": _rate("fademem_release: K/V merge weights span**gamma.", "0.5"),
            "anchor": bool_input(True, "fademem_release: frame 0 is an anchor that keeps its own "
                                       "K/V when merged (the release's default)."),
            "flush_keep": _int("2", "infinity_rope: frames kept besides the sink at a prompt "
                               "switch (none re-cached)."),
            "recent": _int("memrope 4, deep_forcing 4", "memrope: newest frames kept exactly "
                           "besides the chunk; deep_forcing: newest frames kept exactly (>= chunk)."),
            "alpha_long": _rate("memrope: update rate of the slow moving average.", "0.01"),
            "alpha_short": _rate("memrope: update rate of the fast moving average.", "0.1"),
            "bank": _int("3", "memflow: prototype frames kept by relevance to the prompt."),
            "interval": _int("3", "memflow: chunks per prototype frame (the first frame of every "
                             "interval-th chunk)."),
        })

    def build(self, kind, sink, window, positions, budget=-1, beta=0.0, span_gamma=0.0,
              anchor=True, flush_keep=-1, recent=-1, alpha_long=0.0, alpha_short=0.0, bank=-1,
              interval=-1):
        from fademem_core import policy_from_name, policy_parameters

        if kind not in BASELINES:
            raise ValueError(f"kind must be one of {list(BASELINES)}, got {kind!r}")
        used = policy_parameters(kind)
        values = {"sink": sink, "window": window, "positions": positions, "budget": budget,
                  "beta": beta, "span_gamma": span_gamma, "anchor": anchor,
                  "flush_keep": flush_keep, "recent": recent, "alpha_long": alpha_long,
                  "alpha_short": alpha_short, "bank": bank, "interval": interval}
        kwargs = {k: values[k] for k in used
                  if not any(values[k] == u and type(values[k]) is type(u) for u in _UNSET)}
        return (policy_from_name(kind, **kwargs),)


NODE_CLASS_MAPPINGS = {"FadeMemCache": FadeMemCache, "FadeMemBaselineCache": FadeMemBaselineCache}
NODE_DISPLAY_NAME_MAPPINGS = {"FadeMemCache": "FadeMem Cache", "FadeMemBaselineCache": "FadeMem Baseline Cache"}
