"""``fademem demo``: the built-in tiny model makes a short video on the CPU, end to end.

It rolls the same seed out twice, under FadeMem and under the full cache, and prints per-chunk
time and the KV memory each holds, then where it wrote the videos and the memory-layout picture.
With the trained tiny-world weights shipped in ``fademem_core/weights/`` the video shows the toy
world, sampled with the Euler ODE sampler the base flow model is trained for (the JSON next to
the weights names it), and the demo checks its own FadeMem video on the world's probes
(:mod:`fademem_core.tinyworld.quality`); without them the model's weights are random and the
video is noise (said plainly).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..memory.planner import check_plan_cost
from ..model.recorded import embedded_weights, read_record
from ..wan import LATENT_FPS
from .common import CliError, Progress, format_bytes, int_at_least, writable_dir, writable_file
from .options import add_policy_options, build_policy
from .plan import memory_lines, save_layout_picture

WEIGHTS = embedded_weights("tiny_world")
DEMO_SIZE = 64  # pixels; the tiny world is 8x8 latents
DEMO_PROMPT = {"family": 0, "classes": (1, 4)}  # what the demo asks the tiny world for


def register(sub: Any) -> None:
    p = sub.add_parser(
        "demo", help="generate a short video with the built-in tiny model (CPU, no downloads)",
        description="Generate a short video with the built-in tiny model, under FadeMem and "
                    "under the full cache, and print per-chunk time and KV memory of both.")
    p.add_argument("--out-dir", default="fademem_out",
                   help="folder for the videos and the layout picture (default ./fademem_out)")
    p.add_argument("--frames", type=int_at_least(3), default=240,
                   help="latent frames to generate (default 240 = 80 chunks, the paper's 60 s)")
    p.add_argument("--seed", type=int_at_least(0), default=0, help="random seed (default 0)")
    p.add_argument("--weights", default=None,
                   help="tiny-model weights (default: the shipped tiny_world.safetensors if "
                        "present, else random weights)")
    p.add_argument("--no-compare", dest="compare", action="store_false",
                   help="skip the full-cache rollout")
    add_policy_options(p)
    p.set_defaults(func=run)


@dataclass(frozen=True)
class TinySetup:
    model: Any
    text: torch.Tensor
    frames_of: Callable[[torch.Tensor], torch.Tensor]
    about: str
    sample_kw: dict = field(default_factory=dict)  # sampler options the weights are trained for
    world: bool = False  # True: the tiny-world model (its output can be checked on the probes)


def load_tiny(weights: Path | None) -> TinySetup:
    """The demo model, its prompt and its latent -> RGB map, with a sentence about where it's from."""
    from ..model.loading import load_model, tiny_model
    from ..rollout.timesteps import sampler_options

    if weights is None:
        model = tiny_model(seed=0)
        g = torch.Generator().manual_seed(0)
        text = torch.randn(1, 8, model.text_dim, generator=g)
        from ..rollout.video import LatentPreviewDecoder

        preview = LatentPreviewDecoder(channels=model.in_channels)
        about = ("tiny model with RANDOM weights (tiny_model(seed=0)): the video is noise; it "
                 "shows the pipeline, memory and speed, not picture quality")
        return TinySetup(model, text, lambda x0: preview.decode(x0)[0], about)

    from ..tinyworld import world

    model = load_model(weights)  # reads the sampler the JSON beside the weights records
    text = world.prompt_embedding(text_dim=model.text_dim, **DEMO_PROMPT)
    info = read_record(weights)
    what = info.get("description") or info.get("what") or "the tiny world"
    train = info.get("training", {})
    detail = ""
    if train.get("steps") and train.get("clip_frames"):
        detail = f" ({train['steps']} steps on {train['clip_frames']}-latent-frame clips)"
    sample_kw = sampler_options(model.sampler_record) if model.sampler_record is not None else {}
    if sample_kw:
        detail += f"; sampler {sample_kw['sampler']}, {len(sample_kw['steps'])} steps per chunk"
    about = f"{weights.name}: {what}{detail}"
    return TinySetup(model, text, lambda x0: torch.from_numpy(world.to_rgb(x0[:1])), about,
                     sample_kw, world=True)


def run(args: argparse.Namespace) -> int:
    from ..memory.policies import FullCache
    from .common import existing_file
    from .render import rollout_to_video

    out_dir = writable_dir(args.out_dir)
    policy = build_policy(args)
    if args.weights is not None:
        weights: Path | None = existing_file(args.weights, "--weights")
    else:
        weights = WEIGHTS if WEIGHTS.is_file() else None
    runs = [(_policy_label(policy), policy, out_dir / "demo_fademem.mp4"
             if args.policy == "fademem" else out_dir / f"demo_{args.policy}.mp4")]
    if args.compare and args.policy != "full":
        runs.append(("full cache", FullCache(), out_dir / "demo_full.mp4"))
    # every output is checked before the rollouts, so none can fail after minutes of work
    for _label, _pol, path in runs:
        writable_file(path, ".mp4", "demo video")
    picture = out_dir / "fademem_layout.png"
    if args.policy == "fademem":
        writable_file(picture, ".png", "layout picture")
        try:
            check_plan_cost(args.frames, args.budget)
        except ValueError as e:
            raise CliError(f"--frames/--budget: the layout picture cannot be drawn: {e}") from None

    setup = load_tiny(weights)
    print(f"model: {setup.about}")
    print(f"video: {args.frames} latent frames at {DEMO_SIZE}x{DEMO_SIZE}, one frame per latent "
          f"frame ({args.frames / LATENT_FPS:.0f} s at {LATENT_FPS:g} fps), seed {args.seed}")
    results = []
    for label, pol, path in runs:
        progress = Progress(-(-args.frames // 3), label=f"{label:>12}")
        res = rollout_to_video(setup.model, setup.text, pol, args.frames, DEMO_SIZE, DEMO_SIZE,
                               setup.frames_of, path, LATENT_FPS, progress=progress, seed=args.seed,
                               **setup.sample_kw)
        results.append((label, res))

    print()
    print("per chunk: sampling time, and KV memory the chunk attends to (memory entries + "
          "the chunk itself)")
    for line in chunk_table(results):
        print(line)
    for label, res in results:
        total = sum(r.seconds for r in res.records)
        peak = max(r.held_bytes for r in res.records)
        print(f"{label}: {total:.2f} s sampling, KV held at most {format_bytes(peak)} "
              f"(allocated {format_bytes(res.records[-1].kv_bytes)}), "
              f"{res.frames_written} frames -> {res.video}")
    if setup.world and setup.sample_kw:
        _print_world_check(setup, *results[0])
    if args.policy == "fademem":
        picture = save_layout_picture(picture, args.frames, args.budget, args.beta, args.anchor)
        print(f"memory layout picture: {picture}")
        print()
        print("the same layout on the real model:")
        for line in memory_lines(args.frames, args.budget, 3, 480, 832, args.anchor):
            print(line)
    return 0


def _print_world_check(setup: TinySetup, label: str, result: Any) -> None:
    print()
    print(f"does the {label} video render the world? (probes of fademem_core.tinyworld)")
    for line in world_check(setup, result.latents):
        print(f"  {line}")


def world_check(setup: TinySetup, latents: torch.Tensor) -> list[str]:
    """Issue 11's point-1 check of a demo video, as printable lines."""
    from ..tinyworld import offworld, quality, world

    scenes = [world.sample_scene(seed, **DEMO_PROMPT) for seed in range(32)]
    kw = setup.sample_kw
    teacher = quality.teacher_forced_residual(setup.model, scenes[:8], 30, len(kw["steps"]), kw["shift"],
                                              sampler=kw["sampler"])
    check = quality.check_rendering(latents, scenes[:1], teacher, world=scenes)
    # which part of the picture leaves the world, and when: what a failing residual is made of
    return (check.lines() + [f"verdict: {'renders the world' if check.passed else 'FAILS the check'}"]
            + offworld.off_world_lines(latents[0], scenes))


def _policy_label(policy: Any) -> str:
    return type(policy).__name__


def chunk_table(results: list[tuple[str, Any]], max_rows: int = 12) -> list[str]:
    """Per-chunk time (ms) and KV held, side by side; about ``max_rows`` evenly spaced rows."""
    n = len(results[0][1].records)
    every = max(1, -(-n // max_rows))
    rows = sorted(set(range(0, n, every)) | {n - 1})
    head = f"{'chunk':>5}" + "".join(f"  {label + ' ms':>15}  {label + ' KV':>15}"
                                     for label, _ in results)
    lines = [head]
    for k in rows:
        cells = "".join(f"  {res.records[k].seconds * 1e3:>15.1f}  "
                        f"{format_bytes(res.records[k].held_bytes):>15}" for _, res in results)
        lines.append(f"{k:>5}{cells}")
    return lines
