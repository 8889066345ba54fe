"""The generated part of ``docs/sections/consistency.md`` from a consistency benchmark record.

Hand-written findings live below :data:`FINDINGS_MARKER` and survive a re-run.
"""
from __future__ import annotations

import os
from pathlib import Path

FINDINGS_MARKER = "\n<!-- findings: hand-written below this line, kept when the benchmark rewrites the file -->\n"
COLUMNS = (("lookup", "recall at a forced return ↑"), ("fresh", "fresh content ok ↑"), ("recall", "rollout recall ↑"),
           ("recall_nearest", "rollout nearest-entry recall ↑"), ("identity", "identity err ↓"), ("layout", "layout drift ↓"), ("motion", "sprite speed / world"), ("drift", "bg drift / world"),
           ("residual", "off-world residual ↓"))


RECALL_LABELS = {"lookup": "recall at return", "recall": "rollout recall", "recall_nearest": "rollout nearest recall"}


def _cell(m: dict) -> str:
    if not m["n"]:
        return "–"
    digits = 4 if abs(m["mean"]) < 0.05 else 2
    return f"{m['mean']:.{digits}f} ± {m['half']:.{digits}f}"


def _table(rows: dict, valid: dict[str, bool]) -> str:
    """One row per policy; a paired gap to SinkWindow only for a recall whose control is valid."""
    head = (["policy", "cpu s"] + [h for _, h in COLUMNS]
            + [f"{label} − SinkWindow (paired)" for label in RECALL_LABELS.values()])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, r in rows.items():
        gaps = []
        for m in RECALL_LABELS:
            gap = r.get(f"{m}_minus_sinkwindow")
            gaps.append("–" if gap is None else _cell(gap) if valid[m] else "not ranked")
        cells = [name, f"{r['cpu_seconds']:.0f}"] + [_cell(r[k]) for k, _ in COLUMNS] + gaps
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _gap(label: str, v: dict) -> str:
    return (f"- {label}: FullCache {v['full_recall']['mean']:.3f} ± {v['full_recall']['half']:.3f}, "
            f"SlidingWindow(15) {v['sliding_recall']['mean']:.3f} ± {v['sliding_recall']['half']:.3f}; "
            f"gap {v['gap']:.3f} (paired per video ± {v['paired_gap']['half']:.3f})")


def _validity(label: str, v: dict, what: str) -> str:
    verdict = "**valid**" if v["valid"] else f"**invalid**: nothing is ranked on its {what}"
    return f"{_gap(label, v)}, needed ≥ 3 × {v['half_width']:.3f} = {v['needed']:.3f} → {verdict}"


def write_report(path: Path, record: dict, charts: dict) -> None:
    """(Re)write the generated part of ``path``; keep what follows the findings marker."""
    rel = lambda p: os.path.relpath(p, path.parent)  # noqa: E731
    parts = [
        "## Long-horizon consistency on a tiny trained world",
        "",
        f"Regenerate: `{record['command']}` ({record['wall_seconds'] / 60:.1f} min wall here; `--quick` "
        f"under 2). Machine: {record['machine']}. {record['returns']} two-sprite videos, each rendered so "
        f"that one sprite comes back (its detail, veiled while it comes in, shows again) at frame "
        f"{record['prefix']} after an absence of 40-120 frames and "
        f"primed with its first {record['prefix']} ground-truth frames; **recall at a forced return** "
        f"from {record['draws']} noise draws each; **fresh content** on {record['entries']} other videos, "
        f"each rendered so that a sprite's detail first shows at frame {record['entry_at']}, from as many "
        f"draws. The first {record['videos']} continue to "
        f"{record['frames']} latent frames with "
        + ", ".join(f"{k}: {v['name']} {v['steps']} steps" for k, v in record["samplers"].items())
        + " per chunk (the other columns). Same videos, prefixes and noise for every policy. Every bounded "
        "policy sees 15 latent frames (12 history + the 3-frame chunk) unless its name says otherwise. "
        "Cells: mean ± 95 % bootstrap half-width over videos (rollout metrics over the generated frames only).",
        "",
        "**Validity controls** (memory of everything vs memory of nothing old; the gap must be at least "
        "3x the larger CI half-width), on the recall every ranking uses:",
        "",
    ]
    parts += [_validity(label, w["validity"]["lookup"], "recall") for label, w in record["weights"].items()]
    parts += ["", "The same control on the rollouts' own recall, which scores the returns a rollout happens "
                  "to draw (about one per video; the models cannot time a return), reported for comparison:", ""]
    for m, what in (("recall", "rollout recall"), ("recall_nearest", "rollout nearest-entry recall")):
        parts += [_validity(f"{label}, {what}", w["validity"][m], what) for label, w in record["weights"].items()]
    parts += ["", "Fresh content, where there is nothing to recall (a check, not a control: a memory can at "
                  "most rule out the other sprite's detail, and a model that copies the past scores 0):", ""]
    parts += [_gap(label, w["fresh_check"]) for label, w in record["weights"].items()]
    world = record["world"]
    parts += ["", f"The world itself: fresh content ok {world['fresh']['mean']:.2f} (its entry chunks); its "
                  f"rollout videos: recall {world['recall']['mean']:.2f}, residual {world['residual']['mean']:.1g}.", ""]
    for label, w in record["weights"].items():
        name = {"TF": "TF = base weights (trained with the full memory)",
                "FT": "FT = FadeMem-FT weights (base fine-tuned with FadeMem(12, 0.3, anchor) in the loop)"}[label]
        valid = {m: w["validity"][m]["valid"] for m in RECALL_LABELS}
        parts += [f"### {name}", "", _table(w["rows"], valid), ""]
    parts += [
        "Columns: **recall at a forced return**: the share of estimates from pure noise of the returning "
        "chunk whose detail under the returning sprite's true footprint is nearest to its own codebook entry "
        "(chance 1/4; the detail is never in the prompt); **fresh content ok**: the share of estimates from pure noise of the chunk where a sprite's detail first shows "
        "whose detail is not the other sprite's (the world never repeats it; 3/4 for a blind draw, 0 for a copy); **rollout recall**: a sprite whose detail shows again after >= 30 frames hidden shows the "
        "same codebook detail (not in the prompt, within 0.4 of the entry) as in its last frames before the "
        "absence (chance 1/4 at best); **rollout nearest-entry recall**: the same without the 0.4 tolerance; **identity err**: "
        "distance of a sprite's shown detail to its first showing; **layout drift**: background phases vs the "
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
