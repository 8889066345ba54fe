"""The engine imports as a plain package: lazy public API, no ComfyUI, torch only on demand."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import fademem_core

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", fademem_core.__all__)
def test_every_public_name_resolves(name: str) -> None:
    assert getattr(fademem_core, name) is not None


def test_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no_such_thing"):
        fademem_core.no_such_thing  # noqa: B018


def test_planner_needs_neither_torch_nor_comfy() -> None:
    code = (
        "import sys, fademem_core\n"
        "layout = fademem_core.plan_layout(240, 12, 0.3)\n"
        "assert len(layout) == 12 and sum(s for _, s in layout) == 240\n"
        "bad = [m for m in ('torch', 'comfy', 'diffusers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_engine_never_imports_comfy() -> None:
    offenders = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "fademem_core").rglob("*.py")
        if any(line.strip().startswith(("import comfy", "from comfy", "import server",
                                        "import folder_paths"))
               for line in p.read_text().splitlines())
    ]
    assert offenders == []


def test_version_matches_pyproject() -> None:
    text = (ROOT / "pyproject.toml").read_text()  # no tomllib: Python 3.10 is supported
    assert f'\nversion = "{fademem_core.__version__}"\n' in text
    deps = text.split("\ndependencies = [", 1)[1].split("]", 1)[0]
    assert '"torch' in deps and "torch==" not in deps.replace(" ", "")
