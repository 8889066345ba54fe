"""pytest plugin (loaded with ``-p tests.support.pack_root`` from pyproject's addopts).

The repository root is the ComfyUI node pack, so it has an ``__init__.py`` that imports the
nodes relatively.  pytest would collect that folder as a package and import the ``__init__``
under the clone's folder name, which fails for names such as ``ComfyUI-FadeMem`` (not an
identifier) and errors every test.  Collecting the root as a plain directory avoids importing
the pack at all; tests that need it import it explicitly, as ComfyUI does.
"""
from __future__ import annotations

from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[2]


def pytest_collect_directory(path: Path, parent: pytest.Collector):
    if Path(path).resolve() == _ROOT:
        return pytest.Dir.from_parent(parent, path=Path(path))
    return None
