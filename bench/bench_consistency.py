"""Does the memory decide the outcome?  Ground-truth-primed rollouts of the tiny world (CPU).

    python bench/bench_consistency.py            # full run (<= 15 min on 2 cores)
    python bench/bench_consistency.py --quick    # smoke run (<= 2 min)

Protocol (issue 11, point 4), revised in session 9: every video is a two-sprite scene
rendered so that one of its sprites comes back and shows its detail again at frame
``--prefix`` (default 150, as the lookup probe of ``bench/bench_tiny_weights.py``) after an
absence of 40-120 frames (:func:`fademem_core.tinyworld.lookup.forced_returns`); over the few
frames before, it comes in with its detail veiled (``world.REVEAL``), so when the detail shows
is known and only the memory can say which it is.  The first
``--prefix`` ground-truth frames prime it (clean context passes through the engine, the cache
policy deciding what stays).

* **Recall at a forced return** (the recall every control and ranking uses): on ``--returns``
  videos, ``--draws`` estimates of the returning chunk from pure noise; the share whose detail
  under the returning sprite snaps to its own codebook entry (chance 1/4).  Why not the
  rollouts' returns: session 8 measured that the models cannot time a return (nothing in the
  past says when an absence ends), so a rollout draws about one spontaneous return per video
  and its recall stays at chance whatever the memory.
* **Fresh content ok** (where long memory should not help): on ``--entries`` other videos, a
  sprite's detail first shows at frame 48 (:func:`fademem_core.tinyworld.lookup.forced_entries`);
  ``--draws`` estimates of that chunk from pure noise; the share whose newcomer's detail is not
  the other sprite's (the world never repeats it): 3/4 for a blind draw, 0 for a policy whose
  model copies the past, 1 at best.  Reported beside the FullCache - SlidingWindow gap on it.
* **Rollouts**: the first ``--videos`` of them continue to ``--frames`` with the sampler their
  weights record (a flow model: Euler with ``--steps``, default 4, fewer than the record's 12
  to fit the time bar; a distilled generator: its few-step schedule): identity drift, layout,
  motion, residual, and the rollout's own (spontaneous) recall, reported but not ranked on.

All policies get the same videos, prefixes and noise.  Two weight files: TF (the base model,
trained with the full memory) and FT (the base fine-tuned with FadeMem(12, 0.3, anchor) in the
loop).

Validity controls FIRST, per weight file: FullCache (memory of everything) must recall
returning sprites' details better than SlidingWindow(15) (memory of nothing old) by at least 3x
the larger 95 % CI half-width of the two.  If a control fails the benchmark prints "invalid"
for that weight file and ranks nothing on it.  Then the grid, 95 % bootstrap CIs over videos.
Writes ``docs/images/consistency_results.json``, plots and the generated part of
``docs/sections/consistency.md`` (``--quick`` writes under the system temp dir).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from fademem_core import FadeMem, FullCache, SinkWindow, SlidingWindow, load_model  # noqa: E402
from fademem_core.memory.policies import DeepForcing, FadeMemRelease, InfinityRope, MemFlow, MemRope  # noqa: E402
from fademem_core.tinyworld import WEIGHTS, WEIGHTS_FT, lookup, plots, world  # noqa: E402
from fademem_core.tinyworld.probes import read_frames  # noqa: E402
from fademem_core.tinyworld.returns import LOWEST_START  # noqa: E402
from fademem_core.model.recorded import read_record, sampler_record  # noqa: E402
from fademem_core.tinyworld.rollout import primed_rollout  # noqa: E402
from fademem_core.tinyworld.scores import event_rate, memory_events, score_video, warnings_off  # noqa: E402

CHUNK = 3
BUDGET = 12  # history entries of every bounded headline policy; visible = 15 with the chunk
CONTROL_FULL, CONTROL_NONE = "FullCache", "SlidingWindow(15)"
HEADLINE = "SinkWindow(3+12)"
SHOWN = (CONTROL_FULL, CONTROL_NONE, HEADLINE, "FadeMem b=0.3")  # in the film strip and the curves
SCENES = 10_000  # the first scene of the default video set
ENTRY_AT = 48  # fresh content: a sprite's detail first shows here (first entries end near frame 100)
RECALLS = ("lookup", "recall", "recall_nearest")  # ranked only where their own control is valid
METRICS = (  # key, header, better
    ("lookup", "recall at a forced return", "higher"),
    ("recall", "rollout recall after return", "higher"),
    ("recall_nearest", "rollout nearest-entry recall", "higher"),
    ("fresh", "fresh content ok", "higher"),
    ("identity", "identity err", "lower"),
    ("layout", "layout drift", "lower"),
    ("motion", "sprite speed / world", "near 1"),
    ("drift", "bg drift / world", "near 1"),
    ("residual", "off-world residual", "lower"),
)


def policies(quick: bool) -> dict[str, object]:
    """Every policy at the same visible budget (15 frames) unless its name says otherwise."""
    out: dict[str, object] = {
        CONTROL_FULL: FullCache(),
        CONTROL_NONE: SlidingWindow(window=BUDGET + CHUNK),
        HEADLINE: SinkWindow(sink=3, window=BUDGET),
        "FadeMem b=0.3": FadeMem(budget=BUDGET, beta=0.3),
    }
    if quick:
        return out
    for b in (0.1, 0.5, 0.7, 0.9):
        out[f"FadeMem b={b}"] = FadeMem(budget=BUDGET, beta=b)
    for op in ("average", "select_nearest", "max_pool"):
        out[f"FadeMem b=0.3 {op}"] = FadeMem(budget=BUDGET, beta=0.3, operator=op)
    out["FadeMem b=0.3 no anchor"] = FadeMem(budget=BUDGET, beta=0.3, anchor=False)
    out["FadeMem b=0.3 packed"] = FadeMem(budget=BUDGET, beta=0.3, positions="packed")
    out["FadeMem b=0.3 M=8 (vis 11)"] = FadeMem(budget=8, beta=0.3)
    out["FadeMem b=0.3 M=20 (vis 23)"] = FadeMem(budget=20, beta=0.3)
    # the peers of the paper's Table 1 at the same 15 visible frames (Self-Forcing's rolling
    # FIFO at 15 is SlidingWindow(15), the control above)
    out["FadeMem as released"] = FadeMemRelease(budget=BUDGET)
    out["Infinity-RoPE(1+15)"] = InfinityRope(sink=1, window=BUDGET + CHUNK)
    out["MemRoPE(3+EMA+7)"] = MemRope(sink=3, recent=7)
    out["Deep Forcing(6+2+4)"] = DeepForcing(sink=6, window=BUDGET, recent=4)
    out["MemFlow(3+3+12)"] = MemFlow()
    return out


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores (shared), {torch.get_num_threads()} torch "
            f"threads, torch {torch.__version__} CPU")


def scored(videos: torch.Tensor, scenes: list) -> list[tuple]:
    """``(probe reading, scores)`` of each video: read once, shared by every rollout metric."""
    out = []
    for z, s in zip(videos, scenes):
        r = read_frames(z)
        out.append((r, score_video(z, s.family, s.classes, reading=r)))
    return out


def per_video(scores: list[tuple], prefix: int, world_speed: float, world_drift: float) -> dict[str, np.ndarray]:
    """Every rollout metric per video ``[N]`` (from :func:`scored`) over the generated frames
    (NaN where undefined)."""
    out = {k: [] for k, _, _ in METRICS if k not in ("lookup", "fresh")}
    gen = slice(prefix, None)
    for r, sv in scores:
        ev = memory_events(r, prefix)
        with warnings_off():
            out["recall"].append(event_rate(ev, "return"))
            out["recall_nearest"].append(event_rate(ev, "return", "nearest"))
            out["identity"].append(np.nanmean(sv.identity_error[gen]))
            out["layout"].append(np.nanmean(sv.layout_error[gen]))
            out["motion"].append(np.nanmean(sv.sprite_speed[gen]) / world_speed)
            out["drift"].append(np.nanmean(sv.drift_speed[gen]) / world_drift)
            out["residual"].append(np.nanmean(sv.residual[gen]))
    return {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}


def ci(values: np.ndarray, seed: int = 0, draws: int = 2000) -> dict[str, float]:
    """Mean and 95 % percentile-bootstrap CI over the videos where the metric is defined."""
    v = values[np.isfinite(values)]
    if len(v) == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "half": float("nan"), "n": 0}
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), (draws, len(v)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"mean": float(v.mean()), "lo": float(lo), "hi": float(hi), "half": float((hi - lo) / 2), "n": int(len(v))}


def paired_gap(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """CI of the per-video difference ``a - b`` (videos where both are defined)."""
    ok = np.isfinite(a) & np.isfinite(b)
    return ci(a[ok] - b[ok])


def validity(rows: dict[str, dict[str, np.ndarray]], metric: str = "recall") -> dict[str, object]:
    """The control: FullCache beats SlidingWindow on ``metric`` by >= 3x the larger half-width."""
    full, none = ci(rows[CONTROL_FULL][metric]), ci(rows[CONTROL_NONE][metric])
    gap = full["mean"] - none["mean"]
    half = max(full["half"], none["half"])
    valid = bool(np.isfinite(gap) and gap > 0 and gap >= 3 * half)
    # the paired per-video gap's own CI, reported beside the verdict (which keeps the stricter rule)
    paired = paired_gap(rows[CONTROL_FULL][metric], rows[CONTROL_NONE][metric])
    return {"full_recall": full, "sliding_recall": none, "gap": gap, "half_width": half,
            "needed": 3 * half, "valid": valid, "paired_gap": paired}


def sampler_of(path: Path, euler_steps: int) -> tuple[str, int]:
    """``(sampler, steps)`` the benchmark runs a weights file with: a distilled generator's
    recorded few-step schedule, else Euler with ``euler_steps`` (fewer than the record's 12, to
    fit the time bar)."""
    rec = sampler_record(read_record(path), str(path))
    if rec is not None and rec.name == "few_step":
        return "few_step", rec.steps
    return "euler", euler_steps


def recall_at_return(model, pol, args, text, clips, slots, rollout_probe: dict) -> np.ndarray:
    """Per-video hit rates at the forced return: the rollout videos' estimates were drawn by
    the rollout's probe (``rollout_probe["estimates"]``, same cache, noise seed + 1), the others
    here from a generator of their own (seed + 3: one shared seed would hand videos 32.. the
    rollout videos' noises again)."""
    v, at = args.videos, args.prefix
    rest = lookup.estimates_of(model, text[v:], pol, clips[v:, :, :at], at, args.draws, seed=args.seed + 3)
    est = torch.cat([rollout_probe.pop("estimates"), rest], dim=1)
    return lookup.hit_rates(est, clips[:, :, :at + CHUNK], slots, at)


def fresh_content(model, pol, args, entries) -> np.ndarray:
    """Per-video share of the draws at a forced first entry that do not copy the other sprite's
    detail (:func:`lookup.fresh_rates`): where the past holds nothing to recall."""
    clips, text, slots, taken = entries
    est = lookup.estimates_of(model, text, pol, clips, ENTRY_AT, args.draws, seed=args.seed + 2)
    return lookup.fresh_rates(est, clips, slots, taken, ENTRY_AT)


def run_weights(label: str, path: Path, pols: dict, args, clips, text, slots, stats, entries) -> tuple[dict, dict, dict]:
    """Every policy on one weight file (runs in a worker process)."""
    torch.set_num_threads(args.threads)
    model = load_model(path, device="cpu", dtype=torch.float32)
    v, at = args.videos, args.prefix
    scenes = rollout_scenes(args)
    sampler, steps = sampler_of(path, args.steps)
    rows, shown, seconds = {}, {}, {}
    for name, pol in pols.items():
        t0 = time.process_time()
        held: dict = {}

        def probe(kv, cache, held=held):  # the forced return, read from the rollout's own memory
            held["estimates"] = lookup.draw_estimates(model, kv, cache, at, (v, *clips.shape[-2:]),
                                                      args.draws, seed=args.seed + 1)

        z = primed_rollout(model, text[:v], pol, clips[:v, :, :at], args.frames, steps=steps, seed=args.seed,
                           sampler=sampler, probe=probe)
        sc = scored(z, scenes)
        rows[name] = per_video(sc, at, *stats)
        rows[name]["lookup"] = recall_at_return(model, pol, args, text, clips, slots, held)
        rows[name]["fresh"] = fresh_content(model, pol, args, entries)
        seconds[name] = time.process_time() - t0
        if name in SHOWN:
            shown[name] = {"strip": world.to_rgb(z[0][:, strip_frames(args)]), "identity": identity_curve(sc, at)}
        r = {k: ci(x)["mean"] for k, x in rows[name].items()}
        print(f"[{label}] {name:28s} {seconds[name]:6.1f} s cpu  recall at return {r['lookup']:.3f}  "
              f"fresh {r['fresh']:.3f}  rollout recall {r['recall']:.2f} (nearest {r['recall_nearest']:.2f})  "
              f"id {r['identity']:.3f}  layout {r['layout']:.3f}  motion {r['motion']:.2f}  "
              f"resid {r['residual']:.4f}", flush=True)
        if name == CONTROL_NONE:  # both controls are in: say now whether ranking makes sense
            c = validity(rows, "lookup")
            print(f"[{label}] validity: FullCache recall at return {c['full_recall']['mean']:.3f} vs SlidingWindow "
                  f"{c['sliding_recall']['mean']:.3f}: gap {c['gap']:.3f} (paired +-{c['paired_gap']['half']:.3f}), "
                  f"needs >= {c['needed']:.3f} -> "
                  f"{'valid' if c['valid'] else 'INVALID: nothing is ranked on these weights'}", flush=True)
    return rows, shown, seconds


def identity_curve(scores: list[tuple], prefix: int) -> np.ndarray:
    """Identity error per generated chunk (the videos of :func:`scored`, from frame ``prefix``),
    the mean over every video and frame of the chunk that shows a seen sprite (NaN where none)."""
    err = np.stack([sv.identity_error[prefix:] for _, sv in scores])
    with warnings_off():
        return np.nanmean(err.reshape(len(err), -1, CHUNK), axis=(0, 2))


def rollout_scenes(args) -> list:
    """The scenes of the rollout videos (those :func:`lookup.forced_returns` draws first)."""
    return [world.sample_scene(args.scene_seed + i, num_sprites=2) for i in range(args.videos)]


def strip_frames(args) -> np.ndarray:
    """The 12 frames of a video shown in the film strip."""
    return np.linspace(0, args.frames - 1, 12).round().astype(int)


def summarize(rows: dict, seconds: dict) -> dict:
    table = {}
    for name, vals in rows.items():
        table[name] = {k: ci(v) for k, v in vals.items()}
        table[name]["cpu_seconds"] = round(seconds[name], 1)
        if name != HEADLINE and HEADLINE in rows:
            for m in RECALLS:
                table[name][f"{m}_minus_sinkwindow"] = paired_gap(vals[m], rows[HEADLINE][m])
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true",
                    help="32 returns, 16 entries, 8 rollouts of 180 frames, 4 policies, TF only")
    ap.add_argument("--returns", type=int, default=None, help="videos with a forced return (recall at return)")
    ap.add_argument("--entries", type=int, default=None,
                    help=f"videos with a forced first entry at frame {ENTRY_AT} (fresh content)")
    ap.add_argument("--videos", type=int, default=None, help="of those, how many are rolled out (the other metrics)")
    ap.add_argument("--frames", type=int, default=None, help="rollout length in latent frames")
    ap.add_argument("--prefix", type=int, default=150,
                    help=f"ground-truth latent frames that prime each video; the forced return lands at the next "
                         f"(a multiple of {CHUNK}, >= {LOWEST_START})")
    ap.add_argument("--draws", type=int, default=8, help="noise draws per forced return")
    ap.add_argument("--steps", type=int, default=4, help="Euler steps per chunk (flow-model weights)")
    ap.add_argument("--seed", type=int, default=0, help="noise seed")
    ap.add_argument("--scene-seed", type=int, default=SCENES, help="first scene of the video set")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker process")
    ap.add_argument("--workers", type=int, default=2, help="processes (one weight file each)")
    ap.add_argument("--out", type=Path, default=None, help="folder for the JSON and plots")
    ap.add_argument("--doc", type=Path, default=None, help="markdown section to (re)write")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    scratch = Path(tempfile.gettempdir()) / "fademem_consistency_quick"
    args.out = args.out or (scratch if args.quick else ROOT / "docs" / "images")
    args.doc = args.doc or (scratch / "consistency.md" if args.quick else ROOT / "docs" / "sections" / "consistency.md")
    args.frames = args.frames or (180 if args.quick else 240)
    args.videos = args.videos or (8 if args.quick else 32)
    args.returns = args.returns or (32 if args.quick else 224)
    args.entries = args.entries or (16 if args.quick else 96)
    if args.prefix % CHUNK or args.prefix < LOWEST_START or args.frames % CHUNK or args.frames < args.prefix + CHUNK:
        ap.error(f"--prefix must be a multiple of {CHUNK} and >= {LOWEST_START}, --frames a multiple of {CHUNK} "
                 f">= prefix + {CHUNK}; got prefix {args.prefix}, frames {args.frames}")
    if not 2 <= args.videos <= args.returns:
        ap.error(f"--videos must be >= 2 and <= --returns {args.returns}, got {args.videos}")
    if args.draws < 1 or args.steps < 1 or args.entries < 2:
        ap.error(f"--draws and --steps must be >= 1, --entries >= 2; got {args.draws}, {args.steps}, {args.entries}")
    weights = {"TF": WEIGHTS} if args.quick else {"TF": WEIGHTS, "FT": WEIGHTS_FT}
    for path in weights.values():
        if not path.is_file():
            raise FileNotFoundError(f"tiny world weights not found: {str(path)!r}")
    clips, text, slots = lookup.forced_returns(args.returns, args.prefix, args.scene_seed, frames=args.frames)
    # scenes past the return set's, so the two sets share no video
    entries = lookup.forced_entries(args.entries, ENTRY_AT, args.scene_seed + args.returns)
    truth, scenes = clips[:args.videos], rollout_scenes(args)
    truth_rows = per_video(scored(truth, scenes), args.prefix, 1.0, 1.0)
    stats = (ci(truth_rows["motion"])["mean"], ci(truth_rows["drift"])["mean"])
    samplers = {label: sampler_of(path, args.steps) for label, path in weights.items()}
    print(f"machine: {machine()}\n{args.returns} videos with a sprite returning at frame {args.prefix}, "
          f"{args.entries} with a detail first shown at frame {ENTRY_AT} ({args.draws} draws each); {args.videos} of them rolled out to {args.frames} latent frames, "
          f"seed {args.seed}; " + ", ".join(f"{k}: {s} {n} steps" for k, (s, n) in samplers.items()), flush=True)
    t0 = time.time()
    pols = policies(args.quick)
    results, strips, curves = {}, {"world (truth)": world.to_rgb(truth[0][:, strip_frames(args)])}, {}
    # one process per weight file (one torch thread each): on shared cores two single-threaded
    # processes finish far sooner than one process with two threads
    with ProcessPoolExecutor(max_workers=min(args.workers, len(weights))) as pool:
        jobs = {label: pool.submit(run_weights, label, path, pols, args, clips, text, slots, stats, entries)
                for label, path in weights.items()}
        for label, job in jobs.items():
            rows, shown, secs = job.result()
            # fresh content has nothing to recall: the same comparison is a check, not a control
            results[label] = {"validity": {m: validity(rows, m) for m in RECALLS}, "fresh_check": validity(rows, "fresh"),
                              "rows": summarize(rows, secs), "per_video": rows}
            strips.update({f"{label} {k}": v["strip"] for k, v in shown.items()})
            curves[label] = {k: v["identity"] for k, v in shown.items()}
    e_clips, _, e_slots, e_taken = entries  # the world's own entry chunks never copy
    truth_rows["fresh"] = lookup.fresh_rates(e_clips[None, :, :, ENTRY_AT:], e_clips, e_slots, e_taken, ENTRY_AT)
    truth_ci = {k: ci(v) for k, v in truth_rows.items()}
    wall = time.time() - t0
    print(f"total wall {wall:.0f} s", flush=True)
    write_outputs(args, results, truth_ci, strips, curves, wall, samplers)
    return 0


def write_outputs(args, results: dict, truth_ci: dict, strips: dict, curves: dict, wall: float,
                  samplers: dict[str, tuple[str, int]]) -> None:
    from consistency_report import write_report  # bench/ sibling: tables, plots, the doc section

    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "machine": machine(), "returns": args.returns, "entries": args.entries, "entry_at": ENTRY_AT,
        "draws": args.draws, "videos": args.videos,
        "frames": args.frames, "prefix": args.prefix,
        "samplers": {k: {"name": s, "steps": n} for k, (s, n) in samplers.items()},
        "seed": args.seed, "scene_seed": args.scene_seed, "wall_seconds": round(wall, 1),
        "command": "python bench/bench_consistency.py" + (" --quick" if args.quick else "")
                   + (f" --scene-seed {args.scene_seed}" if args.scene_seed != SCENES else ""),
        "world": truth_ci,
        "weights": {k: {"validity": v["validity"], "fresh_check": v["fresh_check"], "rows": v["rows"],
                        "identity_per_chunk": {n: [round(float(x), 4) for x in c] for n, c in curves[k].items()}}
                    for k, v in results.items()},
    }
    path = args.out / "consistency_results.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1))
    os.replace(tmp, path)
    charts = {"frames": plots.film_strip(strips, args.out / "consistency_frames.png")}
    for label, res in results.items():
        betas = [b for b in (0.1, 0.3, 0.5, 0.7, 0.9) if f"FadeMem b={b}" in res["rows"]]
        if len(betas) > 1:
            series = {m: (np.array(betas), np.array([res["rows"][f"FadeMem b={b}"][m]["mean"] for b in betas]))
                      for m in ("lookup", "fresh")}
            charts[f"beta_{label}"] = plots.line_chart(series, f"{label}: FadeMem (M=12, anchor) vs beta", "beta",
                                                       "rate", args.out / f"consistency_beta_{label}.png")
    for label, per_policy in curves.items():
        series = {n: (args.prefix + CHUNK * np.arange(len(c)), c) for n, c in per_policy.items()}
        charts[f"identity_{label}"] = plots.line_chart(
            series, f"{label}: identity error of seen sprites, per generated chunk", "latent frame",
            "identity err", args.out / f"consistency_identity_{label}.png")
    write_report(args.doc, record, charts)
    print(f"wrote {path} and {args.doc}")


if __name__ == "__main__":
    sys.exit(main())
