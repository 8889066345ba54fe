"""The generated part of ``docs/sections/consistency.md`` from a consistency benchmark record.

Hand-written findings live below :data:`FINDINGS_MARKER` and survive a re-run.
"""
from __future__ import annotations

import os
from pathlib import Path

FINDINGS_MARKER = "\n<!-- findings: hand-written below this line, kept when the benchmark rewrites the file -->\n"
COLUMNS = (("recall", "recall after return ↑"), ("recall_nearest", "nearest-entry recall ↑"), ("fresh", "fresh entry ok ↑"), ("identity", "identity err ↓"),
           ("layout", "layout drift ↓"), ("motion", "sprite speed / world"), ("drift", "bg drift / world"),
           ("residual", "off-world residual ↓"))


def _cell(m: dict) -> str:
    if not m["n"]:
        return "–"
    digits = 4 if abs(m["mean"]) < 0.05 else 2
    return f"{m['mean']:.{digits}f} ± {m['half']:.{digits}f}"


def _table(rows: dict, valid: dict[str, bool]) -> str:
    """One row per policy; a paired gap to SinkWindow only for a recall whose control is valid."""
    head = (["policy", "cpu s"] + [h for _, h in COLUMNS]
            + ["recall − SinkWindow (paired)", "nearest recall − SinkWindow (paired)"])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        gaps = []
        for m in ("recall", "recall_nearest"):
            gap = r.get(f"{m}_minus_sinkwindow")
            gaps.append("–" if gap is None else _cell(gap) if valid[m] else "not ranked")
        cells = [name, f"{r['cpu_seconds']:.0f}"] + [_cell(r[k]) for k, _ in COLUMNS] + gaps
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _validity(label: str, v: dict) -> str:
    verdict = "**valid**" if v["valid"] else "**invalid**: nothing below is ranked"
    return (f"- {label}: FullCache recall {v['full_recall']['mean']:.2f} ± {v['full_recall']['half']:.2f}, "
            f"SlidingWindow(15) {v['sliding_recall']['mean']:.2f} ± {v['sliding_recall']['half']:.2f}; "
            f"gap {v['gap']:.2f}, needed ≥ 3 × {v['half_width']:.2f} = {v['needed']:.2f} → {verdict}")


def write_report(path: Path, record: dict, charts: dict) -> None:
    """(Re)write the generated part of ``path``; keep what follows the findings marker."""
    rel = lambda p: os.path.relpath(p, path.parent)  # noqa: E731
    parts = [
        "## Long-horizon consistency on a tiny trained world",
        "",
        f"Regenerate: `{record['command']}` ({record['wall_seconds'] / 60:.1f} min wall here; `--quick` "
        f"under 2). Machine: {record['machine']}. {record['videos']} videos x {record['frames']} latent "
        f"frames, each primed with its first {record['prefix']} ground-truth frames, then "
        + ", ".join(f"{k}: {v['name']} {v['steps']} steps" for k, v in record["samplers"].items())
        + " per chunk; same prefixes and noise for every policy. Every bounded "
        "policy sees 15 latent frames (12 history + the 3-frame chunk) unless its name says otherwise. "
        "Cells: mean ± 95 % bootstrap half-width over videos (metrics over the generated frames only).",
        "",
        "**Validity controls** (memory of everything vs memory of nothing old; the gap on recall must be "
        "at least 3x the larger CI half-width):",
        "",
    ]
    parts += [_validity(label, w["validity"]) for label, w in record["weights"].items()]
    parts += ["", "The same control on nearest-entry recall (which of the 4 codebook entries the drawn "
                  "detail is closest to, however blurred), a metric added after a first look showed the "
                  "model's details blurred towards the codebook's centre; a recall is ranked only where "
                  "its own control is valid:", ""]
    parts += [_validity(label, w["validity_nearest"]) for label, w in record["weights"].items()]
    world = record["world"]
    parts += ["", f"The world itself: recall {world['recall']['mean']:.2f}, fresh entries "
                  f"{world['fresh']['mean']:.2f}, residual {world['residual']['mean']:.1g}.", ""]
    for label, w in record["weights"].items():
        name = {"TF": "TF = base weights (trained with the full memory)",
                "FT": "FT = FadeMem-FT weights (base fine-tuned with FadeMem(12, 0.3, anchor) in the loop)"}[label]
        valid = {"recall": w["validity"]["valid"], "recall_nearest": w["validity_nearest"]["valid"]}
        parts += [f"### {name}", "", _table(w["rows"], valid), ""]
    parts += [
        "Columns: **recall after return**: a sprite that comes back after >= 30 unseen frames shows the "
        "same codebook detail (not in the prompt, within 0.4 of the entry) as in its last frames before the "
        "absence (chance 1/4 at best); **nearest-entry recall**: the same without the 0.4 tolerance; **fresh entry ok**: a sprite's first appearance in the generated part has a valid "
        "detail not already used by the other sprite (copying the past does not help); **identity err**: "
        "distance of a seen sprite's detail to its first sight; **layout drift**: background phases vs the "
        "first chunk (0 same, 0.5 random); **sprite speed / bg drift / world**: motion relative to the "
        "world (a frozen video scores 0); **off-world residual**: distance of a frame to its probe "
        "re-render; **recall − SinkWindow**: paired per-video difference.",
        "",
    ]
    parts += [f"![{k}]({rel(p)})" for k, p in charts.items()]
    old = path.read_text() if path.exists() else ""
    findings = old.split(FINDINGS_MARKER, 1)[1] if FINDINGS_MARKER in old else "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n".join(parts) + "\n" + FINDINGS_MARKER + findings)
    os.replace(tmp, path)
