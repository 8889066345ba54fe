"""The engine imports as a plain package: lazy public API, no ComfyUI, torch only on demand."""
from __future__ import annotations

import subprocess
import sys

import pytest

import fademem_core
from tests.support.pack import ROOT


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


def test_no_engine_function_is_longer_than_60_lines() -> None:
    """The style rule (a function over ~60 lines should be split), outside the tiny world."""
    import ast

    long = []
    for p in sorted((ROOT / "fademem_core").rglob("*.py")):
        if "tinyworld" in p.parts:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > 60:
                    long.append(f"{p.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert long == []


def test_engine_imports_run_one_way() -> None:
    """Leaves (checks, wan, rope) -> memory -> model -> rollout -> analysis/cli: no module
    imports a layer above its own (top-level imports and function-level ones alike)."""
    import ast

    rank = {"checks": 0, "wan": 0, "rope": 0, "memory": 1, "model": 2, "rollout": 3,
            "analysis": 4, "tinyworld": 4, "cli": 5}
    bad = []
    for p in sorted((ROOT / "fademem_core").rglob("*.py")):
        parts = p.relative_to(ROOT / "fademem_core").with_suffix("").parts
        if parts[0] not in rank:
            continue
        for node in ast.walk(ast.parse(p.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.level and not (node.module or "").startswith("fademem_core"):
                continue
            if node.level:
                base = list(parts[:-1])[: len(parts) - node.level]
                target = base + (node.module.split(".") if node.module else [])
            else:
                target = node.module.split(".")[1:]
            names = target or [a.name for a in node.names]
            if names and names[0] in rank and rank[names[0]] > rank[parts[0]]:
                bad.append(f"{'/'.join(parts)} imports {'.'.join(names)}")
    assert bad == []


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def test_declared_comfyui_and_frontend_are_the_oldest_checked() -> None:
    """pyproject declares what the real-ComfyUI and browser tests ran (they check that record)."""
    import json

    checked = json.loads((ROOT / "tests" / "fixtures" / "checked_versions.json").read_text())
    text = (ROOT / "pyproject.toml").read_text()
    comfy = text.split("\n[tool.comfy]\n", 1)[1].split("\n[", 1)[0]
    oldest = min(checked["comfyui"], key=_version)
    assert f'\nrequires-comfyui = ">={oldest}"\n' in comfy
    oldest_frontend = min(checked["frontend"], key=_version)
    assert f'frontend-test = ["comfyui-frontend-package>={oldest_frontend}"]' in text
