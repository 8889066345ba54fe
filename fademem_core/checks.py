"""Input validation shared by the engine, the CLI and the nodes (pure Python, no torch).

Every check returns the cleaned value or raises ValueError naming the value and what was
expected, so callers validate before any heavy work and users see one clear message whatever
the entry point (library call, command line, ComfyUI widget).
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

__all__ = ["CONTEXT_INPUTS", "SWITCH_MODES", "WEIGHT_CHOICES", "check_beta", "check_budget",
           "check_choice", "check_int", "check_real"]

# The choices of the engine's string options, defined once here (no torch) so the CLI's --help
# and the node widgets list exactly what the engine accepts.
# generate(switch=...): the memory at a prompt switch (fademem_core.rollout.switching)
SWITCH_MODES = ("auto", "recache", "longlive", "longlive_resink", "keep")
# generate(context_input=...): what the pass writing a chunk into the memory sees
CONTEXT_INPUTS = ("clean", "noised")
# load_model(weights=...): which weights of a training checkpoint (fademem_core.model.checkpoints)
WEIGHT_CHOICES = ("auto", "ema", "generator")


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an int, or raise ValueError naming it (bools and floats refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_real(name: str, value: object, low: float, high: float, *, low_open: bool = False,
               high_open: bool = False, expected: str | None = None) -> float:
    """Return ``value`` as a finite float in the interval, or raise ValueError naming it.

    ``low_open``/``high_open`` exclude the ends; ``expected`` replaces the generated
    description ("a number in (0, 1]") in the message.
    """
    if expected is None:
        expected = f"a number in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    v = float(value)
    if v < low or v > high or (low_open and v == low) or (high_open and v == high):
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return v


def check_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, or raise ValueError listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {tuple(choices)}, got {value!r}")
    return str(value)


def check_beta(beta: object) -> float:
    """Return ``beta`` as a float in (0, 1], or raise ValueError naming it."""
    return check_real("beta", beta, 0.0, 1.0, low_open=True)


def check_budget(budget: object, anchor: object) -> int:
    """Validate ``anchor`` (a bool) and ``budget`` (>= 3 with the anchor, >= 2 without).

    The anchor takes one entry and a merge needs two more besides the newest frame.
    """
    if not isinstance(anchor, bool):
        raise ValueError(f"anchor must be True or False, got {anchor!r}")
    return check_int("budget", budget, 3 if anchor else 2)
