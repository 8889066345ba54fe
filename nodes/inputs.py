"""Declarative node headers: typed widget and socket constructors, and the outputs triple.

Every FadeMem node declares its inputs with these, so a node class reads like ComfyUI's
``comfy_extras/nodes_*.py``: a short list of named inputs, each with its range and tooltip.
The constructors return exactly the classic ``(TYPE, {options})`` tuples ComfyUI expects.
"""
from __future__ import annotations

from typing import Iterable

CATEGORY = "FadeMem"

Input = tuple  # ComfyUI's (TYPE, {options}) pair


class FadeMemNode:
    """Base of every FadeMem node class: the menu category; each node declares the rest."""

    CATEGORY = CATEGORY


def _number(kind: str, default, lo, hi, step, tooltip: str, extra: dict) -> Input:
    return (kind, {"default": default, "min": lo, "max": hi, "step": step, "tooltip": tooltip,
                   **extra})


def int_input(default: int, lo: int, hi: int, tooltip: str, *, step: int = 1, **extra) -> Input:
    """An INT widget in ``[lo, hi]`` on a ``step`` grid (``extra``: e.g. control_after_generate)."""
    return _number("INT", default, lo, hi, step, tooltip, extra)


def float_input(default: float, lo: float, hi: float, tooltip: str, *, step: float,
                round: float | None = None, slider: bool = False) -> Input:
    """A FLOAT widget in ``[lo, hi]``; ``round`` is the precision the frontend keeps."""
    extra = {} if round is None else {"round": round}
    if slider:
        extra["display"] = "slider"
    return _number("FLOAT", default, lo, hi, step, tooltip, extra)


def bool_input(default: bool, tooltip: str) -> Input:
    """A BOOLEAN toggle."""
    return ("BOOLEAN", {"default": default, "tooltip": tooltip})


def string_input(default: str, tooltip: str) -> Input:
    """A one-line STRING widget."""
    return ("STRING", {"default": default, "tooltip": tooltip})


def combo(options: Iterable[str], tooltip: str, default: str | None = None) -> Input:
    """A combo of ``options``; without ``default`` the frontend shows the first option."""
    opts = {"tooltip": tooltip} if default is None else {"default": default, "tooltip": tooltip}
    return (list(options), opts)


def socket(type_name: str, tooltip: str) -> Input:
    """A link input of ``type_name`` (MODEL, CONDITIONING, LATENT, FADEMEM_CACHE, ...)."""
    return (type_name, {"tooltip": tooltip})


def inputs(required: dict[str, Input], optional: dict[str, Input] | None = None,
           hidden: dict[str, str] | None = None) -> dict:
    """The ``INPUT_TYPES`` dict from its parts (empty parts left out, as ComfyUI writes them)."""
    spec: dict = {"required": required}
    if optional:
        spec["optional"] = optional
    if hidden:
        spec["hidden"] = hidden
    return spec


def outputs(*sockets: tuple[str, str, str]) -> tuple[tuple, tuple, tuple]:
    """``(type, name, tooltip)`` per output -> ``RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS``.

    One list, so the three tuples ComfyUI reads cannot drift apart."""
    return (tuple(s[0] for s in sockets), tuple(s[1] for s in sockets),
            tuple(s[2] for s in sockets))
