"""Draws each shipped workflow's graph as a PNG for the README (docs/images/workflow_<name>.png).

    python workflows/render_graphs.py

A plain Pillow picture in ComfyUI's colours: nodes at their workflow positions with their
sockets, widget values and links coloured by type.  Not a screenshot of the frontend.
"""
from __future__ import annotations

import json
import math
import os
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_workflows import CORE_INFO, ROOT, UI_ONLY, is_widget, load_pack_nodes, node_inputs  # noqa: E402

BG = (32, 32, 34)
GRID = (40, 40, 43)
NODE_BG = (53, 53, 56)
TITLE_OURS = (88, 62, 140)
TITLE_CORE = (70, 70, 74)
TITLE_NOTE = (60, 82, 60)
TEXT = (225, 225, 225)
DIM = (160, 160, 165)
LINK = {"FADEMEM_MODEL": (180, 120, 255), "FADEMEM_CACHE": (255, 160, 60), "CONDITIONING": (255, 205, 100),
        "LATENT": (255, 155, 210), "IMAGE": (100, 180, 230), "VAE": (255, 100, 100), "CLIP": (255, 220, 120),
        "VIDEO": (120, 220, 160)}
ROW = 20
TITLE_H = 26
MARGIN = 30
PREVIEW_H = 150  # web/layout_draw.js PREVIEW_HEIGHT


def _font(size: int):
    for name in ("DejaVuSans.ttf", "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"):
        try:
            return ImageFont.truetype(name, size)
        except OSError:
            continue
    return ImageFont.load_default()


def _short(value, limit: int = 28) -> str:
    text = str(value).replace("\n", " ")
    if isinstance(value, float):
        text = f"{value:g}"
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _layout(node, ours, core):
    """Rows of a node: sockets (name, type, side) then widgets (name, value)."""
    if node["type"] in UI_ONLY:
        lines = [ln for ln in node["widgets_values"][0].splitlines() if ln.strip()]
        chars = int(node["size"][0] / 7.5)  # keep the text inside the note
        return [], [], [("", _short(ln.lstrip("#- "), chars)) for ln in lines[:6]]
    values = list(node["widgets_values"])
    widgets = []
    for name, kind, opts in node_inputs(node["type"], ours, core):
        if is_widget(kind):
            widgets.append((name, _short(values.pop(0))))
            if opts.get("control_after_generate"):
                widgets.append(("control after generate", values.pop(0)))
    return node["inputs"], node["outputs"], widgets


def draw_preview(draw, node, x, y, w, h, font) -> None:
    """The live layout the extension draws on a FadeMem Cache node (frames: a 60 s rollout)."""
    from fademem_core.schedule import plan_history

    budget, beta, anchor = node["widgets_values"][:3]
    frames = 240
    history = plan_history(frames, budget, beta, anchor)
    draw.rectangle([x, y, x + w, y + h], fill=(27, 29, 34))
    draw.text((x + 6, y + 3), f"M={budget}  beta={beta:.2f}  anchor {'on' if anchor else 'off'}  "
              f"240 latent frames", fill=TEXT, font=font)
    max_span = max(s for _, s in history[-1])
    top, rows = y + 22, [history[round((i + 1) * frames / 40) - 1] for i in range(40)]
    scale = (w - 12) / frames
    for r, entries in enumerate([history[-1]] + rows):
        ry = top if r == 0 else top + 22 + (r - 1) * (h - 48) / 40
        rh = 16 if r == 0 else max(1, (h - 48) / 40 - 0.5)
        start = 0
        for _mu, span in entries:
            f = 0 if max_span <= 1 else math.log(span) / math.log(max_span)
            colour = (round(90 - 50 * f), round(200 - 120 * f), round(190 - 40 * f))
            draw.rectangle([x + 6 + start * scale, ry, x + 6 + (start + span) * scale - 1, ry + rh], fill=colour)
            start += span


def display_name(node_type: str, core: dict) -> str:
    """The title the frontend shows for an untitled node."""
    pack = sys.modules.get("fademem_pack_for_workflows")
    if pack is not None and node_type in pack.NODE_DISPLAY_NAME_MAPPINGS:
        return pack.NODE_DISPLAY_NAME_MAPPINGS[node_type]
    if node_type in core:
        return core[node_type].get("display_name") or node_type
    return {"MarkdownNote": "Note"}.get(node_type, node_type)


def render(path: Path, out: Path, ours, core) -> Path:
    wf = json.loads(path.read_text())
    font, bold = _font(12), _font(13)
    boxes = {}
    for node in wf["nodes"]:
        inputs, outputs, widgets = _layout(node, ours, core)
        width = max(node["size"][0], 240)
        height = TITLE_H + ROW * (max(len(inputs), len(outputs)) + len(widgets)) + 8
        if node["type"] == "FadeMemCache":
            height += PREVIEW_H
        boxes[node["id"]] = (node, inputs, outputs, widgets, width, height)
    x0 = min(n["pos"][0] for n in wf["nodes"]) - MARGIN
    y0 = min(n["pos"][1] for n in wf["nodes"]) - MARGIN
    x1 = max(b[0]["pos"][0] + b[4] for b in boxes.values()) + MARGIN
    y1 = max(b[0]["pos"][1] + b[5] for b in boxes.values()) + MARGIN
    image = Image.new("RGB", (int(x1 - x0), int(y1 - y0)), BG)
    draw = ImageDraw.Draw(image)
    for gx in range(0, image.width, 40):
        draw.line([gx, 0, gx, image.height], fill=GRID)
    for gy in range(0, image.height, 40):
        draw.line([0, gy, image.width, gy], fill=GRID)

    def socket_xy(node_id: int, slot: int, output: bool) -> tuple[float, float]:
        node, *_rest, width, _h = boxes[node_id]
        x = node["pos"][0] - x0 + (width if output else 0)
        return x, node["pos"][1] - y0 + TITLE_H + ROW * slot + ROW / 2

    for _id, src, src_slot, dst, dst_slot, kind in wf["links"]:
        ax, ay = socket_xy(src, src_slot, True)
        bx, by = socket_xy(dst, dst_slot, False)
        dx = max(40.0, abs(bx - ax) / 2)
        points = []
        for k in range(41):  # cubic bezier, horizontal tangents like the frontend's splines
            t = k / 40
            px = (1 - t) ** 3 * ax + 3 * (1 - t) ** 2 * t * (ax + dx) + 3 * (1 - t) * t ** 2 * (bx - dx) + t ** 3 * bx
            py = (1 - t) ** 3 * ay + 3 * (1 - t) ** 2 * t * ay + 3 * (1 - t) * t ** 2 * by + t ** 3 * by
            points.append((px, py))
        draw.line(points, fill=LINK.get(kind, DIM), width=3)

    for node, inputs, outputs, widgets, width, height in boxes.values():
        x, y = node["pos"][0] - x0, node["pos"][1] - y0
        ours_node = node["type"] in ours
        title_bg = TITLE_NOTE if node["type"] in UI_ONLY else TITLE_OURS if ours_node else TITLE_CORE
        draw.rounded_rectangle([x, y, x + width, y + height], radius=8, fill=NODE_BG, outline=(20, 20, 20))
        draw.rounded_rectangle([x, y, x + width, y + TITLE_H], radius=8, fill=title_bg)
        draw.rectangle([x, y + TITLE_H - 8, x + width, y + TITLE_H], fill=title_bg)
        draw.text((x + 10, y + 6), node.get("title") or display_name(node["type"], core), fill=TEXT, font=bold)
        for i, inp in enumerate(inputs):
            sx, sy = socket_xy(node["id"], i, False)
            colour = LINK.get(inp["type"], DIM)
            draw.ellipse([sx - 5, sy - 5, sx + 5, sy + 5], fill=colour if inp["link"] else NODE_BG, outline=colour)
            draw.text((sx + 10, sy - 7), inp["name"], fill=TEXT, font=font)
        for i, outp in enumerate(outputs):
            sx, sy = socket_xy(node["id"], i, True)
            colour = LINK.get(outp["type"], DIM)
            draw.ellipse([sx - 5, sy - 5, sx + 5, sy + 5], fill=colour)
            label = outp["name"]
            draw.text((sx - 10 - draw.textlength(label, font=font), sy - 7), label, fill=TEXT, font=font)
        wy = y + TITLE_H + ROW * max(len(inputs), len(outputs)) + 2
        for name, value in widgets:
            draw.rounded_rectangle([x + 8, wy, x + width - 8, wy + ROW - 3], radius=6, fill=(34, 34, 36))
            if name:
                draw.text((x + 16, wy + 2), name, fill=DIM, font=font)
                text = str(value)
                draw.text((x + width - 16 - draw.textlength(text, font=font), wy + 2), text, fill=TEXT, font=font)
            else:
                draw.text((x + 16, wy + 2), str(value), fill=TEXT, font=font)
            wy += ROW
        if node["type"] == "FadeMemCache":
            draw_preview(draw, node, x + 8, wy + 4, width - 16, PREVIEW_H - 12, font)

    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".png", dir=out.parent)
    os.close(fd)
    image.save(tmp, optimize=True)
    os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
    os.replace(tmp, out)
    return out


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
    sheet.save(out, optimize=True)
    return out


def main() -> None:
    ours = load_pack_nodes()
    core = json.loads(CORE_INFO.read_text())["nodes"]
    for path in sorted((ROOT / "workflows").glob("*.json")):
        out = render(path, ROOT / "docs" / "images" / f"workflow_{path.stem}.png", ours, core)
        print("wrote", out.relative_to(ROOT))
    out = layout_betas_picture(ours, ROOT / "docs" / "images" / "layout_betas.png")
    print("wrote", out.relative_to(ROOT))


if __name__ == "__main__":
    main()
