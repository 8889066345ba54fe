"""``fademem analyze VIDEO_OR_LATENT_FILE``: the paper's spectral-decay measurement (Sec. 3.2,
Figure 2) on your own footage, with the fitted ``b`` and a suggested ``beta``."""
from __future__ import annotations

import argparse
import json
from typing import Any

from .common import CliError, existing_file, int_at_least, writable_file, write_atomic

HELP = "measure spectral decay of a video or latent (paper Fig. 2) and suggest beta"


def _fit_range(text: str) -> tuple[int, int]:
    lo, sep, hi = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return int(lo), int(hi)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be LO:HI band indices, got {text!r}") from None


def _epsilon(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 0.5:
        raise argparse.ArgumentTypeError(f"must be in (0, 0.5), got {text}")
    return value


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``analyze`` subcommand to an argparse subparsers object."""
    p = subparsers.add_parser(
        "analyze", help=HELP, description=HELP + ". Videos are decoded with av (luma by "
        "default); latents are .safetensors / ComfyUI .latent / .pt holding [16,T,h,w] or "
        "[1,16,T,h,w].")
    p.add_argument("path", metavar="VIDEO_OR_LATENT_FILE", help="video (.mp4, .webm, ...) or "
                   "latent file (.safetensors, .latent, .pt)")
    p.add_argument("--bands", type=int_at_least(2), default=16,
                   help="number of radial frequency bands (default 16)")
    p.add_argument("--max-lag", type=int_at_least(4), default=None,
                   help="largest lag in frames (default min(64, frames/2)); fix it to compare "
                        "clips")
    p.add_argument("--epsilon", type=_epsilon, default=0.1,
                   help="horizon = lag where all but this fraction of the decay is done "
                        "(default 0.1)")
    p.add_argument("--fit-bands", type=_fit_range, default=None, metavar="LO:HI",
                   help="fit only bands LO..HI (default: automatic, up to the shortest horizon)")
    p.add_argument("--size", default=None, help="resize video: N = longer side, or WxH")
    p.add_argument("--max-frames", type=int_at_least(1), default=None,
                   help="analyse at most this many frames")
    p.add_argument("--rgb", action="store_true",
                   help="analyse the three RGB channels instead of luma")
    p.add_argument("--plot", default=None, metavar="OUT.png", help="write the figure (PNG)")
    p.add_argument("--json", default=None, metavar="OUT.json", help="write all numbers (JSON)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Handler of ``analyze``: returns 0 when a power law was fitted, 1 when none could be."""
    from ..analysis.spectral import analyze_video
    from ..analysis.video_io import is_latent_file, load_frames, parse_size

    src = existing_file(args.path, "video or latent file")
    plot = writable_file(args.plot, ".png", "--plot") if args.plot else None
    out_json = writable_file(args.json, ".json", "--json") if args.json else None
    size = parse_size(args.size)
    if args.fit_bands is not None and not 0 <= args.fit_bands[0] < args.fit_bands[1] < args.bands:
        raise CliError(f"--fit-bands must be LO:HI with 0 <= LO < HI < {args.bands}, got "
                       f"{args.fit_bands[0]}:{args.fit_bands[1]}")

    frames = load_frames(str(src), size=size, gray=not args.rgb, max_frames=args.max_frames)
    kind = "latent" if is_latent_file(str(src)) else ("rgb" if args.rgb else "luma")
    res = analyze_video(frames, bands=args.bands, max_lag=args.max_lag, epsilon=args.epsilon,
                        fit_bands=args.fit_bands)
    print(f"{src.name} ({kind})")
    print(res.summary())

    if plot is not None:
        from ..analysis.spectral_plot import draw_spectral

        img = draw_spectral(res, title=f"{src.name} ({kind}): spectral decay")
        write_atomic(plot, lambda tmp: img.save(tmp, format="PNG"))
        print(f"plot: {plot}")
    if out_json is not None:
        data = {"source": str(src), "kind": kind, **res.to_dict()}

        def dump(tmp: str) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(data, f)
        write_atomic(out_json, dump)
        print(f"json: {out_json}")
    return 0 if res.fitted else 1
