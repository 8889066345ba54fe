"""FadeMemCache and FadeMemBaselineCache: build a cache policy (FADEMEM_CACHE) for the sampler.

A FADEMEM_CACHE is one of ``fademem_core``'s frozen policy dataclasses (FadeMem, SinkWindow,
SlidingWindow, FullCache); the sampler builds the actual memory from it for each rollout.
"""
from __future__ import annotations

from fademem_core import OPERATORS, POSITION_STRATEGIES

CACHE_TYPE = "FADEMEM_CACHE"
CATEGORY = "FadeMem"
BASELINES = ("sink_window", "sliding_window", "full")
MAX_BUDGET = 256  # FadeMem Cache's budget widget (also the plan route's cap)


def _positions_input() -> tuple[list[str], dict]:
    """The RoPE-positions combo both cache nodes share."""
    return (list(POSITION_STRATEGIES), {
        "default": "absolute",
        "tooltip": "Temporal RoPE position each memory entry is shown at. absolute: at its "
                   "(merged) centre mu, the chunk at its real frame index (the paper). packed: "
                   "entries at 0..n-1 in order, the chunk right after them (keeps positions "
                   "inside the range the model was trained on).",
    })


class FadeMemCache:
    """FadeMem: a bounded memory whose temporal resolution fades with distance."""

    CATEGORY = CATEGORY
    RETURN_TYPES = (CACHE_TYPE,)
    RETURN_NAMES = ("cache",)
    OUTPUT_TOOLTIPS = ("The FadeMem memory policy; connect it to FadeMem Sampler or FadeMem Memory Layout.",)
    FUNCTION = "build"
    DESCRIPTION = (
        "FadeMem memory (paper defaults M=12, beta=0.3, anchor on, weighted average). The memory "
        "never holds more than M latent frames of keys/values; when full, the adjacent pair "
        "closest in warped time (t - mu)^beta is merged, so recent frames stay exact and distant "
        "ones are consolidated. The picture on the node shows the layout after a 60 s rollout "
        "(or the connected sampler's length) and follows beta, M and anchor live."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "budget": ("INT", {
                    "default": 12, "min": 3, "max": MAX_BUDGET, "step": 1,
                    "tooltip": "M: memory entries (latent frames of keys/values) held between chunks, "
                               "the anchor included. A chunk sees M + chunk frames. KV memory grows "
                               "linearly with M (about 274 MiB per entry at 480x832 in bf16).",
                }),
                "beta": ("FLOAT", {
                    "default": 0.3, "min": 0.01, "max": 1.0, "step": 0.01, "round": 0.01,
                    "display": "slider",
                    "tooltip": "Distance warp exponent (0 < beta <= 1). Small beta: distant history is "
                               "compressed hard and recent frames stay fine (best consistency, paper "
                               "default 0.3). beta = 1: uniform consolidation (more motion).",
                }),
                "anchor": ("BOOLEAN", {
                    "default": True,
                    "tooltip": "Keep the first latent frame exact forever as a global anchor (needs M >= 3). "
                               "Off: slightly more consistent, much less motion (paper ablation).",
                }),
                "operator": (list(OPERATORS), {
                    "default": "weighted_average",
                    "tooltip": "How two adjacent entries are merged: weighted_average (by span, paper "
                               "default), average, select_nearest (keep the entry nearer the present) "
                               "or max_pool (not recommended: kills motion).",
                }),
                "positions": _positions_input(),
            }
        }

    def build(self, budget, beta, anchor, operator, positions):
        from fademem_core import FadeMem

        return (FadeMem(budget=int(budget), beta=float(beta), anchor=bool(anchor),
                        operator=operator, positions=positions),)


class FadeMemBaselineCache:
    """The memories FadeMem is compared with: LongLive's sink + window, a sliding window, full."""

    CATEGORY = CATEGORY
    RETURN_TYPES = (CACHE_TYPE,)
    RETURN_NAMES = ("cache",)
    OUTPUT_TOOLTIPS = ("A baseline memory policy for side-by-side comparisons with FadeMem.",)
    FUNCTION = "build"
    DESCRIPTION = (
        "Baseline memories. sink_window (LongLive): the first `sink` latent frames forever plus the "
        "`window` most recent (current chunk included). sliding_window: the `window` most recent. "
        "full: every frame (unbounded memory; only for short videos)."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "kind": (list(BASELINES), {
                    "default": "sink_window",
                    "tooltip": "sink_window: LongLive's sink + window. sliding_window: last frames only. "
                               "full: keep everything (memory grows with the video).",
                }),
                "sink": ("INT", {
                    "default": 3, "min": 0, "max": 64, "step": 1,
                    "tooltip": "sink_window only: first latent frames that are never evicted (LongLive: 3).",
                }),
                "window": ("INT", {
                    "default": 9, "min": 1, "max": 256, "step": 1,
                    "tooltip": "Most recent latent frames a chunk sees, the chunk itself included "
                               "(LongLive: 9 with sink 3; a plain sliding window usually 12). Must be >= chunk.",
                }),
                "positions": _positions_input(),
            }
        }

    def build(self, kind, sink, window, positions):
        from fademem_core import FullCache, SinkWindow, SlidingWindow

        if kind == "sink_window":
            return (SinkWindow(sink=int(sink), window=int(window), positions=positions),)
        if kind == "sliding_window":
            return (SlidingWindow(window=int(window), positions=positions),)
        if kind == "full":
            return (FullCache(positions=positions),)
        raise ValueError(f"kind must be one of {BASELINES}, got {kind!r}")


NODE_CLASS_MAPPINGS = {"FadeMemCache": FadeMemCache, "FadeMemBaselineCache": FadeMemBaselineCache}
NODE_DISPLAY_NAME_MAPPINGS = {"FadeMemCache": "FadeMem Cache", "FadeMemBaselineCache": "FadeMem Baseline Cache"}
