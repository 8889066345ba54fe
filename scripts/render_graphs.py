"""Writes the README pictures: docs/images/layout_betas.png, and the frontend screenshots.

    python scripts/render_graphs.py
    COMFYUI_PATH=/path/to/ComfyUI [COMFYUI_PYTHON=...] python scripts/render_graphs.py

layout_betas.png is what the memory-layout workflow produces (the nodes run here, Pillow).  The
workflow pictures (docs/images/workflow_<name>.png), the live-preview pictures
(docs/images/preview_beta_*.png) and the Browse Templates thumbnails (workflows/<name>.jpg) are
screenshots of the real ComfyUI frontend in headless Chromium: they are written by the browser
test (tests/test_frontend_browser.py) with FADEMEM_WRITE_IMAGES=1, which this script runs when
COMFYUI_PATH is set.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_workflows import ROOT, load_pack_nodes  # noqa: E402


def layout_betas_picture(ours, out: Path) -> Path:
    """What the memory-layout workflow produces: beta 0.1 / 0.3 / 0.9 stacked, via the nodes."""
    pictures = []
    for beta in (0.1, 0.3, 0.9):
        (cache,) = ours["FadeMemCache"]().build(12, beta, True, "weighted_average", "absolute")
        (image,) = ours["FadeMemMemoryLayout"]().draw(cache, 957, 768, 384)
        pictures.append(Image.fromarray((image[0].numpy() * 255).round().astype("uint8")))
    sheet = Image.new("RGB", (768, 3 * 384 + 16), (255, 255, 255))
    for i, picture in enumerate(pictures):
        sheet.paste(picture, (0, i * (384 + 8)))
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".png", dir=out.parent)
    os.close(fd)
    sheet.save(tmp, optimize=True)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
    os.replace(tmp, out)
    return out


def main() -> int:
    out = layout_betas_picture(load_pack_nodes(), ROOT / "docs" / "images" / "layout_betas.png")
    print("wrote", out.relative_to(ROOT))
    if not os.environ.get("COMFYUI_PATH"):
        print("COMFYUI_PATH is not set: the frontend screenshots were not taken")
        return 0
    env = dict(os.environ, FADEMEM_WRITE_IMAGES="1")
    return subprocess.run([sys.executable, "-m", "pytest", "tests/test_frontend_browser.py", "-q"],
                          cwd=ROOT, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
