"""The few-step timestep schedule of the rollout (flow matching with a timestep shift)."""
from __future__ import annotations

import numbers
from typing import Any, Sequence

from ..checks import SAMPLER_CHOICES, check_choice, check_int, check_positive

NUM_TRAIN_TIMESTEPS = 1000
DEFAULT_STEPS = (1000, 750, 500, 250)

__all__ = ["DEFAULT_STEPS", "NUM_TRAIN_TIMESTEPS", "check_steps", "context_sigma", "even_timesteps",
           "sampler_options", "sampler_summary", "timestep_schedule"]


def check_steps(steps: object) -> list[float]:
    """``steps`` as floats: a non-empty, strictly decreasing sequence of timesteps in (0, 1000]."""
    if isinstance(steps, (str, bytes)) or not isinstance(steps, Sequence) or len(steps) == 0:
        raise ValueError(f"steps must be a non-empty sequence of timesteps in (0, 1000], got {steps!r}")
    vals = []
    for t in steps:
        if isinstance(t, bool) or not isinstance(t, numbers.Real) or not 0 < t <= NUM_TRAIN_TIMESTEPS:
            raise ValueError(f"steps must be timesteps in (0, 1000], got {t!r} in {list(steps)!r}")
        vals.append(float(t))
    if any(b >= a for a, b in zip(vals, vals[1:])):
        raise ValueError(f"steps must be strictly decreasing, got {vals}")
    return vals


def even_timesteps(n: int) -> list[float]:
    """``n`` timesteps evenly spaced from 1000 down, before the shift (4 -> 1000, 750, 500, 250)."""
    check_int("steps", n, 1)
    return [NUM_TRAIN_TIMESTEPS * (n - i) / n for i in range(n)]


def sampler_options(record: Any = None, sampler: str = "auto",
                    steps: int | Sequence[float] | None = None,
                    shift: float | None = None) -> dict[str, Any]:
    """``generate``'s ``sampler``/``steps``/``shift`` for a model.

    ``record``: what the weights were trained for (``CausalWan.sampler_record``, a
    :class:`fademem_core.model.recorded.SamplerRecord`, or None).  ``sampler="auto"`` with a
    record gives the record's sampler, step count and shift (``steps``/``shift`` are then not
    used); otherwise ``sampler`` (``"auto"``: ``"few_step"``) runs ``steps`` at ``shift``
    (default 5.0): a count of evenly spaced steps (default 4), or the timesteps themselves
    (``check_steps``).  The one place the CLI, the demo and the nodes turn a weights file's
    record into options."""
    sampler = check_choice("sampler", sampler, SAMPLER_CHOICES)
    if sampler == "auto" and record is not None:
        return {"sampler": record.name, "steps": even_timesteps(record.steps), "shift": float(record.shift)}
    if steps is None or isinstance(steps, (bool, numbers.Integral)):
        timesteps = even_timesteps(len(DEFAULT_STEPS) if steps is None else steps)
    else:
        timesteps = check_steps(steps)
    if shift is not None:
        timestep_schedule(timesteps, shift)  # refuses a bad shift now, not at the first chunk
    return {"sampler": "few_step" if sampler == "auto" else sampler, "steps": timesteps,
            "shift": 5.0 if shift is None else float(shift)}


def sampler_summary(options: dict[str, Any]) -> str:
    """One line naming what :func:`sampler_options` chose: ``"sampler euler, 12 steps, shift 5"``
    (the CLI's run line and the nodes' text say the same)."""
    return f"sampler {options['sampler']}, {len(options['steps'])} steps, shift {options['shift']:g}"


def timestep_schedule(steps: Sequence[float] = DEFAULT_STEPS, shift: float = 5.0) -> list[float]:
    """Warp ``steps`` through the flow shift: ``s*sigma / (1 + (s-1)*sigma)`` with ``sigma = t/1000``.

    ``timestep_schedule((1000, 750, 500, 250), 5.0) == [1000.0, 937.5, 833.33..., 625.0]``.
    """
    vals = check_steps(steps)
    shift = check_positive("shift", shift)
    return [NUM_TRAIN_TIMESTEPS * _shifted(t / NUM_TRAIN_TIMESTEPS, shift) for t in vals]


def context_sigma(t: float, shift: float) -> float:
    """Noise level Self-Forcing's scheduler adds for timestep ``t`` (``add_noise``).

    Its table has 1000 entries, sigma = ``s*u / (1 + (s-1)*u)`` for ``u = 1, 0.999, ..., 0.001``
    (timestep = 1000 * sigma); a timestep is rounded to the nearest entry, so with shift 5
    ``t = 100`` gets sigma 0.10110 rather than 0.1.  ``t = 0`` is exactly clean.
    """
    if t == 0:
        return 0.0
    u = min(range(1, NUM_TRAIN_TIMESTEPS + 1),
            key=lambda k: abs(NUM_TRAIN_TIMESTEPS * _shifted(k / NUM_TRAIN_TIMESTEPS, shift) - t))
    return _shifted(u / NUM_TRAIN_TIMESTEPS, shift)


def _shifted(sigma: float, shift: float) -> float:
    """The flow shift's warp of a noise level, ``s*sigma / (1 + (s-1)*sigma)``.

    The denominator is written ``(1 - sigma) + s*sigma``: the same number, but never 0 for a
    tiny positive ``s`` (``1 + (s - 1)`` rounds to 0 at sigma = 1).
    """
    warped = shift * sigma
    return warped / ((1 - sigma) + warped)
