"""Input validation shared by the engine, the CLI and the nodes (pure Python, no torch).

Every check returns the cleaned value or raises ValueError naming the value and what was
expected, so callers validate before any heavy work and users see one clear message whatever
the entry point (library call, command line, ComfyUI widget).
"""
from __future__ import annotations

import math
import numbers
from typing import Sequence

__all__ = ["CONTEXT_INPUTS", "MAX_HISTORY_ENTRIES", "MAX_PLAN_FRAMES", "MAX_PLAN_WORK", "SAMPLERS",
           "SAMPLER_CHOICES", "SWITCH_MODES", "WEIGHT_CHOICES", "check_beta", "check_budget", "check_choice", "check_int",
           "check_plan_cost", "check_positive", "check_prompt_starts", "check_real"]

# The choices of the engine's string options, defined once here (no torch) so the CLI's --help
# and the node widgets list exactly what the engine accepts.
# generate(switch=...): the memory at a prompt switch (fademem_core.rollout.switching)
SWITCH_MODES = ("auto", "recache", "longlive", "longlive_resink", "keep")
# generate(context_input=...): what the pass writing a chunk into the memory sees
CONTEXT_INPUTS = ("clean", "noised")
# load_model(weights=...): which weights of a training checkpoint (fademem_core.model.checkpoints)
WEIGHT_CHOICES = ("auto", "ema", "generator")
# generate(sampler=...): the distilled generators' few-step schedule, or a base model's Euler ODE
SAMPLERS = ("few_step", "euler")
# the node widget / sampler_options: "auto" = what the weights record, else few_step
SAMPLER_CHOICES = ("auto",) + SAMPLERS


def check_int(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    """Return ``value`` as an int in ``[minimum, maximum]`` (both inclusive; no upper bound when
    ``maximum`` is None), or raise ValueError naming it and the range (bools and floats refused)."""
    expected = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
    if (isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum
            or (maximum is not None and value > maximum)):
        raise ValueError(f"{name} must be an integer {expected}, got {value!r}")
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


def check_positive(name: str, value: object) -> float:
    """Return ``value`` as a finite float > 0, or raise ValueError naming it (bools refused)."""
    return check_real(name, value, 0.0, math.inf, low_open=True, expected="a positive number")


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


# What one plan may cost, whoever asks (CLI, HTTP route, nodes): insertions (each a few
# microseconds of CPython), merge-pair evaluations (one ``**`` each) and, for a history, the
# entries copied into it.  ~1 s of work at most on a slow core.
MAX_PLAN_FRAMES = 65536  # latent frames: 4.5 hours of video at 16 fps
MAX_PLAN_WORK = 1 << 22  # merge-pair evaluations, ~(frames - budget) * budget
MAX_HISTORY_ENTRIES = 1 << 22  # entries a full history holds, ~frames * min(frames, budget)


def check_plan_cost(num_frames: object, budget: int, history: bool = False) -> int:
    """``num_frames`` as an int after checking the plan fits the caps above (ValueError)."""
    frames = check_int("num_frames", num_frames, 0)
    if frames > MAX_PLAN_FRAMES:
        shown = f"about 1e{len(str(frames)) - 1}" if frames >= 10**9 else str(frames)  # not 300 digits
        raise ValueError(f"num_frames must be <= {MAX_PLAN_FRAMES} latent frames (4.5 hours) for "
                         f"a plan, got {shown}")
    work = max(0, frames - budget) * (budget - 1)
    if work > MAX_PLAN_WORK:
        raise ValueError(f"a plan of {frames} frames with budget {budget} costs {work} merge "
                         f"evaluations, over the cap of {MAX_PLAN_WORK}: lower the budget or "
                         f"the number of frames")
    held = frames * min(frames, budget)
    if history and held > MAX_HISTORY_ENTRIES:
        raise ValueError(f"a plan history of {frames} frames with budget {budget} holds {held} "
                         f"entries, over the cap of {MAX_HISTORY_ENTRIES}: lower the budget or "
                         f"the number of frames")
    return frames


def check_prompt_starts(starts: list[int], chunk: int, num_frames: int | None = None,
                        labels: list[str] | None = None) -> list[int]:
    """The chunk each scheduled prompt takes over at; ValueError when a prompt would never show.

    A prompt starting at latent frame ``s`` takes over at the first chunk starting at or after
    ``s``: chunk ``ceil(s / chunk)``.  Two prompts taking over at the same chunk would drop the
    earlier one, and one taking over after the last chunk (of a ``num_frames`` video) would
    never be seen; both are refused, naming the prompts (``labels``) and the chunk.  The one
    rule for the API, the nodes and the command line.
    """
    chunk = check_int("chunk", chunk, 1)
    names = labels or [f"prompt {i} (start frame {s})" for i, s in enumerate(starts)]
    last = None if num_frames is None else (check_int("num_frames", num_frames, 1) - 1) // chunk
    out: list[int] = []
    for i, start in enumerate(starts):
        c = -(-check_int("start frame", start, 0) // chunk)
        first, end = c * chunk, c * chunk + chunk - 1
        if out and c == out[-1]:
            raise ValueError(f"{names[i - 1]} and {names[i]} take over in the same chunk, chunk {c} "
                             f"(latent frames {first}-{end}): {names[i - 1]} would never be shown; "
                             f"start prompts at least one chunk ({chunk} latent frames) apart")
        if last is not None and c > last:
            raise ValueError(f"{names[i]} would take over at chunk {c} (latent frame {first}), after "
                             f"the video's last chunk {last} (latent frames {last * chunk}-"
                             f"{num_frames - 1}) began: it would never be shown")
        out.append(c)
    return out
