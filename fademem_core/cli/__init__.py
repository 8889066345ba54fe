"""Command line: ``python -m fademem_core {plan, demo, generate, analyze}`` (also ``fademem``).

Each subcommand lives in its own module with ``register(subparsers)``; the module's handler
gets the parsed arguments and returns an exit status.  Expected failures (bad numbers, missing
files, an output that cannot be written) end as ONE line on stderr and a non-zero status; set
``FADEMEM_DEBUG=1`` to see the traceback of an unexpected one.
"""
from __future__ import annotations

import os
import sys
from typing import Sequence

from .common import CliError, OneLineParser

__all__ = ["main", "build_parser"]


def build_parser() -> OneLineParser:
    """The full argument parser (every subcommand registered)."""
    from .. import __version__
    from . import demo, generate, plan

    parser = OneLineParser(
        prog="fademem",
        description="FadeMem: bounded, distance-aware KV memory for long autoregressive video "
                    "with causal Wan2.1 models.")
    parser.add_argument("--version", action="version", version=f"fademem {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    plan.register(sub)
    demo.register(sub)
    generate.register(sub)
    try:
        from .analyze import register as register_analyze
    except ModuleNotFoundError as e:
        # the spectral analysis ships separately; the rest of the CLI works without it
        if e.name != f"{__name__}.analyze":
            raise
    else:
        register_analyze(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 failed, 2 bad input, 130 ^C)."""
    try:  # start-up imports torch and friends (seconds): ^C there is an interrupt too
        parser = build_parser()
        args = parser.parse_args(argv)
    except SystemExit as e:  # usage errors (one line already printed), --help, --version
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    except KeyboardInterrupt:
        print("\nfademem: interrupted", file=sys.stderr)
        return 130
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    prog = f"fademem {args.command}"
    try:
        return int(args.func(args) or 0)
    except CliError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return e.code
    except BrokenPipeError:  # `fademem plan | head`: the reader left, nothing to report
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # keep the interpreter's final flush quiet
        return 0
    except KeyboardInterrupt:
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError,
            PermissionError) as e:
        # the library validates input before heavy work and names the bad value
        if os.environ.get("FADEMEM_DEBUG"):
            raise
        print(f"{prog}: error: {_one_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # anything else is a failure, still reported on one line
        if os.environ.get("FADEMEM_DEBUG"):
            raise
        print(f"{prog}: error: {type(e).__name__}: {_one_line(e)} "
              f"(set FADEMEM_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    if isinstance(e, OSError) and e.filename and str(e.filename) not in text:
        text = f"{text}: {e.filename}"
    return text
