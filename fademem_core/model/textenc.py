"""umT5 prompt encoding for the standalone ``generate`` path, and prompt / schedule files.

The text encoder and tokenizer come from a local diffusers-format Wan2.1-T2V-1.3B folder
(``text_encoder/``, ``tokenizer/``).  Prompts are tokenized to a fixed 512 slots, encoded with
the padding masked out, and the pad positions of the result are zeroed, which is how Wan's
embeddings look at training time.

File formats (UTF-8 text):

* **prompt file**: one prompt per line; blank lines and lines starting with ``#`` are skipped.
* **schedule file**: one prompt switch per line, ``START_SECONDS|prompt``; the first line starts
  at 0, start times strictly increase; blank lines and ``#`` comments are skipped.  Example::

      # a 30 s story
      0|a red fox walks through fresh snow, morning light
      10|the fox stops and looks at the camera
      20.5|the fox runs into the forest
"""
from __future__ import annotations

import html
import math
import os
from pathlib import Path
from typing import Any, Sequence

import torch

__all__ = [
    "TextEncoder",
    "read_prompt_file",
    "read_schedule_file",
    "schedule_to_latent_frames",
]


class TextEncoder:
    """umT5 encoder + tokenizer: prompts -> ``[N, max_length, d_model]`` with pads zeroed."""

    def __init__(self, model: Any, tokenizer: Any, max_length: int = 512) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length!r}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_length = max_length

    @classmethod
    def from_wan_dir(cls, wan_dir: str | os.PathLike, dtype: torch.dtype | None = None,
                     device: str | torch.device = "cpu", max_length: int = 512) -> "TextEncoder":
        """Load from ``wan_dir/text_encoder`` and ``wan_dir/tokenizer`` (local files only)."""
        from transformers import AutoTokenizer, UMT5EncoderModel

        root = Path(wan_dir)
        enc_dir, tok_dir = root / "text_encoder", root / "tokenizer"
        if not (enc_dir / "config.json").is_file():
            raise FileNotFoundError(f"no umT5 text encoder at {enc_dir} (expected config.json)")
        if not tok_dir.is_dir():
            raise FileNotFoundError(f"no tokenizer folder at {tok_dir}")
        if dtype is None:
            dtype = torch.bfloat16 if torch.device(device).type == "cuda" else torch.float32
        tokenizer = AutoTokenizer.from_pretrained(str(tok_dir), local_files_only=True)
        model = UMT5EncoderModel.from_pretrained(str(enc_dir), dtype=dtype,
                                                 local_files_only=True).to(device)
        return cls(model, tokenizer, max_length=max_length)

    @property
    def dim(self) -> int:
        """Width of one embedding (4096 for umT5-XXL)."""
        return int(self.model.config.d_model)

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """Encode prompts to float32 ``[N, max_length, dim]``; positions past each prompt are 0."""
        if isinstance(prompts, str):
            prompts = [prompts]
        if not prompts:
            raise ValueError("no prompts to encode")
        for p in prompts:
            if not isinstance(p, str) or not p.strip():
                raise ValueError(f"prompts must be non-empty strings, got {p!r}")
        # the cleanup Wan's own pipelines apply (HTML entities, runs of whitespace)
        prompts = [" ".join(html.unescape(html.unescape(p)).split()) for p in prompts]
        tok = self.tokenizer(prompts, padding="max_length", max_length=self.max_length,
                             truncation=True, add_special_tokens=True, return_attention_mask=True,
                             return_tensors="pt")
        device = next(self.model.parameters()).device
        ids = tok.input_ids.to(device)
        mask = tok.attention_mask.to(device)
        hidden = self.model(input_ids=ids, attention_mask=mask).last_hidden_state
        return (hidden.float() * mask.unsqueeze(-1).to(hidden.device).float()).cpu()

    def close(self) -> None:
        """Drop the weights (the encoder is only needed before sampling)."""
        self.model = None
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _content_lines(path: str | os.PathLike) -> list[tuple[int, str]]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"file not found: {p}")
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"{p} is not UTF-8 text: {e}") from None
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        s = line.strip()
        if s and not s.startswith("#"):
            out.append((n, s))
    return out


def read_prompt_file(path: str | os.PathLike) -> list[str]:
    """Prompts of a prompt file (one per line, blank lines and ``#`` comments skipped)."""
    prompts = [s for _, s in _content_lines(path)]
    if not prompts:
        raise ValueError(f"prompt file {path} holds no prompts")
    return prompts


def read_schedule_file(path: str | os.PathLike) -> list[tuple[float, str]]:
    """``[(start_seconds, prompt), ...]`` from a schedule file (``START_SECONDS|prompt`` lines)."""
    entries: list[tuple[float, str]] = []
    for n, s in _content_lines(path):
        head, sep, prompt = s.partition("|")
        if not sep:
            raise ValueError(f"{path}:{n}: expected 'START_SECONDS|prompt', got {s!r}")
        try:
            start = float(head.strip())
        except ValueError:
            raise ValueError(f"{path}:{n}: start time {head.strip()!r} is not a number") from None
        if not math.isfinite(start) or start < 0:
            raise ValueError(f"{path}:{n}: start time must be a finite number >= 0, got {start!r}")
        prompt = prompt.strip()
        if not prompt:
            raise ValueError(f"{path}:{n}: empty prompt")
        if entries and start <= entries[-1][0]:
            raise ValueError(f"{path}:{n}: start times must increase, {start:g} follows "
                             f"{entries[-1][0]:g}")
        if not entries and start != 0:
            raise ValueError(f"{path}:{n}: the first prompt must start at 0, got {start:g}")
        entries.append((start, prompt))
    if not entries:
        raise ValueError(f"schedule file {path} holds no prompts")
    return entries


def schedule_to_latent_frames(schedule: Sequence[tuple[float, Any]], fps: float = 16.0,
                              chunk: int = 3, num_latent_frames: int | None = None,
                              ) -> list[tuple[int, Any]]:
    """Seconds -> start latent frames, snapped to the nearest chunk boundary.

    Video frame ``f`` belongs to latent frame ``ceil(f / 4)`` (the Wan VAE turns latent frame 0
    into one frame and every later one into four).  Prompts switch between chunks, so starts are
    rounded to a multiple of ``chunk``; two entries landing on the same chunk, or one starting at
    or after ``num_latent_frames``, are errors naming the times.
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk!r}")
    out: list[tuple[int, Any]] = []
    for seconds, item in schedule:
        latent = math.ceil(seconds * fps / 4 - 1e-9)
        start = int(round(latent / chunk)) * chunk
        if out and start <= out[-1][0]:
            raise ValueError(f"prompt at {seconds:g}s lands on the same chunk (latent frame "
                             f"{start}) as the one before; space prompts at least "
                             f"{chunk * 4 / fps:g}s apart")
        if num_latent_frames is not None and start >= num_latent_frames:
            raise ValueError(f"prompt at {seconds:g}s starts after the video ends "
                             f"({num_latent_frames} latent frames)")
        out.append((start, item))
    return out
