"""``fademem plan``: print FadeMem's memory layout for a video length, optionally draw it."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..checks import check_budget
from ..memory.planner import check_plan_cost, plan_layout
from ..wan import FPS, latent_frames_for_seconds, video_frames_for_latents
from .common import (CliError, format_bytes, int_at_least, multiple_of_16, positive_float, writable_file,
                     write_atomic)
from .options import add_fademem_options

# The KV memory the plan reports: Wan2.1-T2V-1.3B (30 blocks, 12 heads x 128)
WAN13B = {"num_layers": 30, "num_heads": 12, "head_dim": 128}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "plan", help="print the FadeMem memory layout for a video length (and draw it)",
        description="Print which frames each FadeMem memory entry holds after a video of the "
                    "given length, and the KV memory that takes on Wan2.1-T2V-1.3B.")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--frames", type=int_at_least(0), default=None,
                        help="video length in latent frames (1 latent frame = 4 video frames; "
                             "default 240 = 60 s)")
    length.add_argument("--seconds", type=positive_float, default=None,
                        help="video length in seconds at 16 fps")
    add_fademem_options(p)
    p.add_argument("--chunk", type=int_at_least(1), default=3,
                   help="latent frames per generated chunk (default 3)")
    p.add_argument("--height", type=multiple_of_16, default=480, help="video height (default 480)")
    p.add_argument("--width", type=multiple_of_16, default=832, help="video width (default 832)")
    p.add_argument("--picture", metavar="PNG", default=None,
                   help="also draw the layout to this PNG file")
    p.set_defaults(func=run)


def layout_table(entries: list[tuple[float, int]], num_frames: int) -> list[str]:
    """Rows: entry, mu, span, first-last frame covered, distance from the newest frame."""
    rows = [f"{'entry':>5}  {'mu':>8}  {'span':>5}  {'frames':>11}  {'age':>7}"]
    start = 0
    t = num_frames - 1
    for i, (mu, span) in enumerate(entries):
        frames = f"{start}" if span == 1 else f"{start}-{start + span - 1}"
        rows.append(f"{i:>5}  {mu:>8.2f}  {span:>5}  {frames:>11}  {t - mu:>7.2f}")
        start += span
    return rows


def memory_lines(num_frames: int, budget: int, chunk: int, height: int, width: int,
                 anchor: bool = True) -> list[str]:
    """KV memory of FadeMem vs a full cache on the 1.3B model (bf16), from the policies."""
    import torch

    from ..memory.policies import FadeMem, FullCache, KVGeometry

    tokens = (height // 16) * (width // 16)
    geo = KVGeometry(batch=1, tokens_per_frame=tokens, dtype=torch.bfloat16, **WAN13B)
    fade = FadeMem(budget=budget, anchor=anchor).memory_bytes(geo, chunk)
    # unbounded: what it allocates for a video of this length
    full = FullCache().memory_bytes(geo, chunk, max_frames=max(num_frames, 1))
    ratio = full / fade if fade else float("nan")
    return [
        f"KV memory, Wan2.1-T2V-1.3B at {height}x{width} bf16 ({tokens} tokens per latent frame):",
        f"  FadeMem (budget {budget} + chunk {chunk}): {format_bytes(fade)}, constant",
        f"  full cache after {num_frames} latent frames: {format_bytes(full)} "
        f"({ratio:.1f}x), growing with every chunk",
    ]


def run(args: argparse.Namespace) -> int:
    if args.frames is not None:
        num_frames = args.frames
    elif args.seconds is not None:
        num_frames = latent_frames_for_seconds(args.seconds)
    else:
        num_frames = 240
    check_budget(args.budget, args.anchor)
    try:  # refuse a plan that would run for ever before starting it
        check_plan_cost(num_frames, args.budget)
    except ValueError as e:
        raise CliError(f"--frames/--seconds/--budget: {e}") from None
    picture = writable_file(args.picture, ".png", "--picture") if args.picture else None

    entries = plan_layout(num_frames, args.budget, args.beta, anchor=args.anchor)
    video_frames = video_frames_for_latents(num_frames)
    print(f"FadeMem layout after {num_frames} latent frames ({video_frames} video frames, "
          f"{video_frames / FPS:.1f} s at 16 fps): budget {args.budget}, beta {args.beta:g}, "
          f"anchor {'on' if args.anchor else 'off'}")
    for row in layout_table(entries, num_frames):
        print(row)
    for line in memory_lines(num_frames, args.budget, args.chunk, args.height, args.width,
                             args.anchor):
        print(line)
    if picture is not None:
        save_layout_picture(picture, num_frames, args.budget, args.beta, args.anchor)
        print(f"layout picture: {picture}")
    return 0


def save_layout_picture(path: Path, num_frames: int, budget: int, beta: float,
                        anchor: bool) -> Path:
    """Draw the layout (``layout_picture.draw_layout``) and save it atomically as PNG."""
    from ..memory.picture import draw_layout

    image = draw_layout(num_frames, budget, beta, anchor=anchor)
    return write_atomic(path, lambda tmp: image.save(tmp, format="PNG"))
