"""GET /fademem/plan: the FadeMem layout for the live beta preview (web/fademem_preview.js).

The request handling is the pure function :func:`plan_response` (query dict -> (status, json)),
so it is tested without aiohttp; :func:`register` hangs it on ComfyUI's server when there is one.
The Python planner (``fademem_core.plan_history``) stays the single source of the layout.
"""
from __future__ import annotations

from typing import Any

from . import comfy
from .cache import MAX_BUDGET

ROUTE = "/fademem/plan"
MAX_FRAMES = 4096  # 17 minutes of video; with MAX_BUDGET, one request stays under ~0.3 s
MAX_ROWS = 96  # history rows sent to the browser (the drawing is ~100 px tall)


def _number(query: dict[str, str], name: str, kind: type, default: Any) -> Any:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be {'an integer' if kind is int else 'a number'}, got {raw!r}") from None
    if kind is float and value != value:  # NaN
        raise ValueError(f"{name} must be a number, got {raw!r}")
    return value


def _flag(query: dict[str, str], name: str, default: bool) -> bool:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def _rows(total: int, limit: int) -> list[int]:
    """At most ``limit`` frame counts 1..total, evenly spread, always ending at ``total``."""
    if total <= limit:
        return list(range(1, total + 1))
    return sorted({max(1, round(total * (i + 1) / limit)) for i in range(limit)})


def parse_plan_query(query: dict[str, str]) -> dict[str, Any]:
    """Validate the query; ValueError naming the parameter and what was expected."""
    frames = _number(query, "frames", int, 240)
    budget = _number(query, "budget", int, 12)
    beta = _number(query, "beta", float, 0.3)
    anchor = _flag(query, "anchor", True)
    if not 1 <= frames <= MAX_FRAMES:
        raise ValueError(f"frames must be between 1 and {MAX_FRAMES} latent frames, got {frames}")
    if budget > MAX_BUDGET:  # the FadeMem Cache widget's maximum
        raise ValueError(f"budget must be at most {MAX_BUDGET}, got {budget}")
    return {"frames": frames, "budget": budget, "beta": beta, "anchor": anchor}


def plan_response(query: dict[str, str]) -> tuple[int, dict[str, Any]]:
    """Handle GET /fademem/plan: (200, plan) or (400, {"error": message})."""
    from fademem_core import plan_snapshots

    try:
        p = parse_plan_query(query)
        wanted = _rows(p["frames"], MAX_ROWS)
        layouts = plan_snapshots(p["frames"], p["budget"], p["beta"], p["anchor"], wanted)
    except ValueError as e:
        return 400, {"error": str(e)}
    rows = [[t, _pairs(layout)] for t, layout in zip(wanted, layouts)]
    return 200, {**p, "entries": rows[-1][1], "history": rows}


def _pairs(layout) -> list[list[float]]:
    return [[float(mu), int(span)] for mu, span in layout]


def register() -> bool:
    """Register the route on ComfyUI's PromptServer (False outside ComfyUI)."""
    return comfy.register_get_route(ROUTE, plan_response)
