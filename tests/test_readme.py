"""The README is current, and CI runs exactly the test command the README's quick start gives."""
from __future__ import annotations

import importlib.util
import re
from tests.support.pack import ROOT

README = (ROOT / "README.md").read_text()


def _quick_start_commands() -> list[str]:
    section = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip() and not line.startswith("#")]


def test_readme_is_built_from_the_sections() -> None:
    spec = importlib.util.spec_from_file_location("build_readme", ROOT / "scripts" / "build_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build() == README, "README.md is stale: run python scripts/build_readme.py"


def test_quick_start_has_exactly_two_commands_demo_and_tests() -> None:
    cmds = _quick_start_commands()
    assert len(cmds) == 2, cmds
    assert "fademem_core demo" in cmds[0]
    assert "pytest" in cmds[1]


def test_ci_runs_the_readme_test_command_verbatim() -> None:
    setup, test = _quick_start_commands()[1].split(" && ")
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert any(line.startswith(setup) for line in ci), (setup, ci)
    assert test in ci, (test, ci)


def test_readme_images_exist() -> None:
    for path in re.findall(r"\]\((docs/images/[^)]+)\)", README):
        assert (ROOT / path).is_file(), path
