"""Load the repository as ComfyUI does: the root folder imported as a package (test helper)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACK = "fademem_pack_under_test"


def load_pack():
    """Import the pack's root ``__init__.py`` as package ``fademem_pack_under_test`` (once)."""
    if PACK in sys.modules:
        return sys.modules[PACK]
    spec = importlib.util.spec_from_file_location(PACK, ROOT / "__init__.py",
                                                  submodule_search_locations=[str(ROOT)])
    module = importlib.util.module_from_spec(spec)
    sys.modules[PACK] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[PACK]
        raise
    return module


def node_module(name: str):
    """A module of the pack's ``nodes`` package, e.g. ``node_module("comfy")``."""
    load_pack()
    return sys.modules[f"{PACK}.nodes.{name}"]


class Recorder:
    """Progress bar stand-in that records every update (shared by the node tests)."""

    def __init__(self, total):
        self.total = total
        self.updates = []

    def update_absolute(self, value, total=None, preview=None):
        self.updates.append((value, total, preview))
