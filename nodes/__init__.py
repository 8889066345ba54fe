"""The FadeMem node pack: every node family's mappings merged, plus the /fademem/plan route.

Each module is imported plainly (no try/except) so a missing or broken module fails loudly, in
ComfyUI's log and in the tests, instead of silently dropping nodes.
"""
from __future__ import annotations

from . import cache, layout, loader, routes, sampler, spectral, stream, tinyworld

_MODULES = (loader, cache, sampler, stream, tinyworld, layout, spectral)

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
for _module in _MODULES:
    _clash = set(NODE_CLASS_MAPPINGS) & set(_module.NODE_CLASS_MAPPINGS)
    if _clash:
        raise RuntimeError(f"{_module.__name__} redefines nodes {sorted(_clash)}")
    NODE_CLASS_MAPPINGS.update(_module.NODE_CLASS_MAPPINGS)
    NODE_DISPLAY_NAME_MAPPINGS.update(_module.NODE_DISPLAY_NAME_MAPPINGS)

routes.register()  # GET /fademem/plan for the live beta preview (no-op outside ComfyUI)

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
