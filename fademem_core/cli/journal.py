"""The new latent frames of a ``generate`` run, kept on disk as they are made (``--resume``).

Beside the output video, a hidden file ``.NAME.mp4.resume`` gets one JSON header line (what
the run was made with) and then each finished chunk's latent frames, float32, appended as they
come.  A run that finishes deletes it; an interrupted one leaves it, and ``--resume`` reads the
whole chunks back and hands them to ``generate`` as a prefix (after the input clip, if any).
Because priming consumes the seed's random numbers as sampling would and cuts the prefix as
the first run cut it, the resumed run makes exactly the frames the first run would have made.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from .common import CliError

FORMAT = 1
CHANNELS = 16


def journal_path(out: Path) -> Path:
    """The journal file of output ``out``."""
    return out.with_name(f".{out.name}.resume")


def _header(path: Path) -> tuple[dict, int]:
    with open(path, "rb") as f:
        line = f.readline()
    try:
        head = json.loads(line)
        return head, len(line)
    except ValueError:
        raise CliError(f"cannot resume from {path}: not a FadeMem resume file (delete it to start "
                       "over)") from None


def check_journal(path: Path, fingerprint: dict) -> bool:
    """True when ``path`` holds a run made with ``fingerprint``; CliError naming what differs."""
    if not path.is_file():
        return False
    head, _ = _header(path)
    made = head.get("made_with", {})
    diff = sorted(k for k in set(made) | set(fingerprint) if made.get(k) != fingerprint.get(k))
    if diff or head.get("format") != FORMAT:
        what = ", ".join(f"{k} ({made.get(k)!r} then, {fingerprint.get(k)!r} now)" for k in diff)
        raise CliError(f"cannot resume from {path}: it was made with other settings: "
                       f"{what or 'another file format'}; run the same command, or drop "
                       "--resume to start over")
    return True


def read_journal(path: Path, rows: int, cols: int) -> torch.Tensor:
    """The latent frames in ``path``, ``[1, 16, G, rows, cols]`` (a torn last frame dropped)."""
    _, offset = _header(path)
    frame = CHANNELS * rows * cols * 4
    data = path.read_bytes()[offset:]
    count = len(data) // frame
    x = torch.frombuffer(bytearray(data[:count * frame]), dtype=torch.float32)
    return x.reshape(count, CHANNELS, rows, cols).permute(1, 0, 2, 3)[None].clone()


def usable_frames(done: torch.Tensor, chunk: int, num_frames: int) -> torch.Tensor | None:
    """The whole chunks of ``done`` a resumed run reuses (at least its last chunk is redone)."""
    keep = done.shape[2] // chunk * chunk
    if keep >= num_frames:
        keep = (num_frames - 1) // chunk * chunk
    return done[:, :, :keep] if keep else None


class Journal:
    """Writes the journal of one run: header, then frames as chunks finish."""

    def __init__(self, path: Path, fingerprint: dict) -> None:
        self.path = path
        with open(path, "wb") as f:  # our own file: a fresh run replaces it
            f.write(json.dumps({"format": FORMAT, "made_with": fingerprint}).encode() + b"\n")

    def append(self, latents: torch.Tensor) -> None:
        """Append ``[1, 16, n, h, w]`` latent frames (flushed: they survive a crash)."""
        frames = latents[0].detach().float().cpu().permute(1, 0, 2, 3).contiguous()
        with open(self.path, "ab") as f:
            f.write(frames.numpy().tobytes())
            f.flush()
            os.fsync(f.fileno())

    def finish(self) -> None:
        """The video is complete: the journal goes."""
        self.path.unlink(missing_ok=True)


def fingerprint(args: Any, item: Any, source: Path | None, policy: Any,
                sample_kw: dict[str, Any]) -> dict:
    """What decides the frames of a run (a resumed run must match it); ``sample_kw``: the
    sampler, steps and shift that run (``options.sampling_kw``)."""
    def stamp(p: Any) -> list | None:
        if p is None:
            return None
        p = Path(p).expanduser().resolve()
        st = p.stat()
        return [str(p), st.st_size, st.st_mtime_ns]

    return json.loads(json.dumps({
        "checkpoint": stamp(args.checkpoint), "lora": stamp(args.lora),
        "lora_strength": args.lora_strength, "prompt": item, "input": stamp(source),
        "seed": args.seed, "sampler": sample_kw["sampler"], "steps": list(sample_kw["steps"]),
        "shift": sample_kw["shift"], "chunk": args.chunk,
        "context_noise": args.context_noise, "switch": args.switch, "dtype": args.dtype,
        "height": args.height, "width": args.width, "policy": repr(policy),
    }))
