"""Assemble README.md from docs/sections/*.md (run after editing a section or a benchmark).

The sections are the editable sources (benchmarks rewrite some of them); README.md is what users
read. ``tests/test_readme.py`` fails when README.md is out of date.
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ROOT / "docs" / "sections"
ORDER = ["00-intro.md", "cli.md", "nodes.md", "memory.md", "engine.md", "spectral.md",
         "consistency.md", "zz-perf-dev.md"]


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to dashes."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def build() -> str:
    """The README text."""
    parts = []
    for name in ORDER:
        text = (SECTIONS / name).read_text().strip() + "\n"
        # section files link images relative to docs/sections; the README sits at the root
        text = re.sub(r"\]\((?:\.\./)?images/", "](docs/images/", text)
        parts.append(text)
    titles = [line[3:] for part in parts[1:] for line in part.splitlines()
              if line.startswith("## ")]
    toc = "**Contents:** " + " · ".join(f"[{t}](#{_anchor(t)})" for t in titles) + "\n"
    return "\n".join([parts[0], toc] + parts[1:])


def main() -> int:
    (ROOT / "README.md").write_text(build())
    print("wrote README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
