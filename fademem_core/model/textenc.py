"""umT5 prompt encoding for the standalone ``generate`` path (prompt files: rollout/prompts.py).

The text encoder and tokenizer come from a local diffusers-format Wan2.1-T2V-1.3B folder
(``text_encoder/``, ``tokenizer/``).  Prompts are tokenized to a fixed 512 slots, encoded with
the padding masked out, and the pad positions of the result are zeroed, which is how Wan's
embeddings look at training time.
"""
from __future__ import annotations

import html
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
