"""Tiny diffusers-format Wan assets for the CLI / generate / VAE tests: umT5 text encoder,
tokenizer and VAE (the ``tiny_wan_dir`` and ``tiny_vae`` fixtures in conftest.py build on them).

Everything is built in code with random weights: no download.
"""
from __future__ import annotations

from pathlib import Path

import torch

TINY_TEXT_DIM = 32
WORDS = ("a red fox walks through snow the cat sleeps on sofa blue sky over city "
         "runs into forest camera looks at").split()


def make_tokenizer():
    """A word-level tokenizer trained in code; pad id 0, eos id 1, like umT5."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2}
    for w in WORDS:
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")


def make_text_encoder(seed: int = 0):
    from transformers import UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    cfg = UMT5Config(vocab_size=64, d_model=TINY_TEXT_DIM, d_kv=8, d_ff=64, num_layers=2,
                     num_heads=4, relative_attention_num_buckets=8, pad_token_id=0,
                     eos_token_id=1, decoder_start_token_id=0)
    return UMT5EncoderModel(cfg).eval()


def make_vae(seed: int = 0):
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    return AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                            temperal_downsample=[False, True, True]).eval()


def write_tiny_wan_dir(root: Path) -> Path:
    """Write text_encoder/, tokenizer/, vae/ under ``root`` (diffusers layout)."""
    make_tokenizer().save_pretrained(str(root / "tokenizer"))
    make_text_encoder().save_pretrained(str(root / "text_encoder"))
    make_vae().save_pretrained(str(root / "vae"))
    return root

