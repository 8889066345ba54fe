"""Shared pieces of the command line: argument types, output checks, formatting, progress."""
from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, TextIO

from ..files import path_kind


class CliError(Exception):
    """A user-facing failure: printed as one line, exit status ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (plus a hint), not a usage dump."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


# ----------------------------------------------------------------------------- argument types
def _number(kind: Callable[[str], float], text: str) -> float:
    try:
        value = kind(text)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse type: an integer >= minimum."""
    def parse(text: str) -> int:
        value = int(_number(int, text))
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be an integer >= {minimum}, got {text}")
        return value
    parse.__name__ = f"integer >= {minimum}"
    return parse


def finite_float(text: str) -> float:
    """argparse type: any finite number."""
    return float(_number(float, text))


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = float(_number(float, text))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, got {text}")
    return value


def nonneg_float(text: str) -> float:
    """argparse type: a finite number >= 0."""
    value = float(_number(float, text))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


def checked(kind: Callable[[str], float], check: Callable[[Any], Any], name: str) -> Callable[[str], Any]:
    """argparse type: parse a number with ``kind``, then validate it with the library's own
    ``check`` (one validation for the engine, the CLI and the nodes)."""
    def parse(text: str) -> Any:
        value = _number(kind, text)
        try:
            return check(value)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = name
    return parse


def multiple_of_16(text: str) -> int:
    """argparse type: a positive pixel size divisible by 16 (the Wan patch grid)."""
    value = int(_number(int, text))
    if value <= 0 or value % 16:
        raise argparse.ArgumentTypeError(f"must be a positive multiple of 16, got {text}")
    return value


# ----------------------------------------------------------------------------- files
def existing_file(path: str | os.PathLike, what: str) -> Path:
    """``path`` as a Path, or CliError naming ``what`` when it is not an existing file."""
    p = Path(path).expanduser()
    if not p.exists():
        raise CliError(f"{what} not found: {p}")
    if not p.is_file():
        raise CliError(f"{what} must be a regular file, got {path_kind(p)}: {p}")
    return p


def existing_dir(path: str | os.PathLike, what: str) -> Path:
    p = Path(path).expanduser()
    if not p.is_dir():
        raise CliError(f"{what} is not a folder: {p}")
    return p


def writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``path`` if needed and prove it is writable (before any heavy work)."""
    p = Path(path).expanduser()
    if p.exists() and not p.is_dir():
        raise CliError(f"{what} is a file, not a folder: {p}")
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=p):
            pass
    except OSError as e:
        raise CliError(f"cannot write to {what} {p}: {e.strerror or e}") from None
    return p


def writable_file(path: str | os.PathLike, suffix: str, what: str = "output") -> Path:
    """Check that ``path`` can be written: right suffix, not a folder, folder writable."""
    p = Path(path).expanduser()
    if p.suffix.lower() != suffix:
        raise CliError(f"{what} must end in {suffix}, got {p}")
    if p.is_dir():
        raise CliError(f"{what} is a folder: {p}")
    if p.exists() and not p.is_file():  # never replace a FIFO or a device node
        raise CliError(f"{what} exists and is {path_kind(p)}, not a regular file: {p}")
    writable_dir(p.parent if str(p.parent) else ".", f"folder of {what}")
    return p


def write_atomic(path: Path, write: Callable[[str], None]) -> Path:
    """``write(tmp)`` to a temp file beside ``path``, then rename: never a half-written file."""
    from ..files import set_default_permissions

    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}",
                               dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        set_default_permissions(Path(tmp))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ----------------------------------------------------------------------------- formatting
def format_bytes(n: int | float | None) -> str:
    """Human-readable size in binary units; None -> 'unbounded'."""
    if n is None:
        return "unbounded"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # unreachable; keeps type checkers calm


def format_duration(seconds: float) -> str:
    """``m:ss`` or ``h:mm:ss``."""
    if not math.isfinite(seconds):
        return "?"
    s = int(round(max(seconds, 0.0)))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class Progress:
    """A plain-text progress bar on stderr: chunk k/n, elapsed time, ETA.

    On a terminal one line is redrawn in place; otherwise (logs, CI) a line is printed about
    every 10% so the log stays short.
    """

    def __init__(self, total: int, label: str = "", stream: TextIO | None = None,
                 width: int = 24, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = max(int(total), 1)
        self.label = label
        self.stream = sys.stderr if stream is None else stream
        self.width = width
        self.clock = clock
        self.start = clock()
        self.done = 0
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._every = max(1, -(-self.total // 10))

    def line(self, done: int) -> str:
        elapsed = self.clock() - self.start
        eta = elapsed / done * (self.total - done) if done else math.nan
        filled = int(self.width * done / self.total)
        bar = "#" * filled + "." * (self.width - filled)
        head = f"{self.label} " if self.label else ""
        return (f"{head}[{bar}] chunk {done}/{self.total}  elapsed {format_duration(elapsed)}"
                f"  ETA {format_duration(eta) if done < self.total else '0:00'}")

    def update(self, done: int) -> None:
        self.done = done
        if self._tty:
            self.stream.write("\r" + self.line(done))
            if done >= self.total:
                self.stream.write("\n")
        elif done >= self.total or done % self._every == 0:
            self.stream.write(self.line(done) + "\n")
        self.stream.flush()

    def finish(self) -> None:
        """End a redrawn line that stopped early (interrupt, error)."""
        if self._tty and self.done < self.total:
            self.stream.write("\n")
            self.stream.flush()
