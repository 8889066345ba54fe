"""Test helpers: a tiny Wan 2.1 VAE, and its weights in the original Wan layout.

The original layout is what ``wan_2.1_vae.safetensors`` holds and what ComfyUI's core Load VAE
builds.  The diffusers -> original renaming below is written out independently of the loader
(:func:`fademem_core.rollout.video.wan_vae_from_original` uses diffusers' converter the other way), so
a round trip checks both; the real-ComfyUI test checks the layout against ComfyUI's own module.
"""
from __future__ import annotations

import re

import torch

__all__ = ["tiny_wan_vae", "original_vae_state_dict", "randomize_"]

# resnet parts: diffusers name -> original name inside a residual block
_RESNET = (("norm1.gamma", "residual.0.gamma"), ("conv1.", "residual.2."),
           ("norm2.gamma", "residual.3.gamma"), ("conv2.", "residual.6."),
           ("conv_shortcut.", "shortcut."))
_TOP = (("quant_conv.", "conv1."), ("post_quant_conv.", "conv2."))
_HEAD = (("conv_in.", "conv1."), ("norm_out.gamma", "head.0.gamma"), ("conv_out.", "head.2."))


def tiny_wan_vae(seed: int = 0, base_dim: int = 4):
    """A random ``AutoencoderKLWan`` with the Wan 2.1 structure (levels 1, 2, 4, 4; two residual
    blocks each; temporal downsampling in the last two) at a small width."""
    from diffusers import AutoencoderKLWan

    torch.manual_seed(seed)
    vae = AutoencoderKLWan(base_dim=base_dim, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2,
                           temperal_downsample=[False, True, True])
    # diffusers initialises the RMS-norm gammas to one; random ones catch swapped norms
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if name.endswith("gamma"):
                p.uniform_(0.5, 1.5)
    return vae.eval()


@torch.no_grad()
def randomize_(module: torch.nn.Module) -> torch.nn.Module:
    """Give every parameter a sane random value, in place (uses torch's global generator).

    For VAE modules whose layers skip weight init (ComfyUI's Wan VAE: its weights come from
    files): norm gammas in [0.5, 1.5], weights with variance 1/fan-in, small biases."""
    for name, p in module.named_parameters():
        if name.endswith("gamma"):
            p.uniform_(0.5, 1.5)
        elif p.ndim > 1:
            p.normal_(0.0, 1.0 / p[0].numel() ** 0.5)
        else:
            p.normal_(0.0, 0.02)
    return module


def _resnet(rest: str) -> str:
    for new, old in _RESNET:
        if rest.startswith(new):
            return old + rest[len(new):]
    return rest


def _original_name(name: str) -> str:
    for new, old in _TOP:
        if name.startswith(new):
            return old + name[len(new):]
    part, rest = name.split(".", 1)  # encoder / decoder
    for new, old in _HEAD:
        if rest.startswith(new):
            return f"{part}.{old}{rest[len(new):]}"
    m = re.match(r"mid_block\.resnets\.(\d)\.(.*)", rest)
    if m:  # middle = [resnet, attention, resnet]
        return f"{part}.middle.{2 * int(m[1])}.{_resnet(m[2])}"
    if rest.startswith("mid_block.attentions.0."):
        return f"{part}.middle.1.{rest[len('mid_block.attentions.0.'):]}"
    m = re.match(r"down_blocks\.(\d+)\.(.*)", rest)
    if m:  # the encoder keeps one flat list: resnets and resamples alike
        return f"{part}.downsamples.{m[1]}.{_resnet(m[2])}"
    m = re.match(r"up_blocks\.(\d+)\.resnets\.(\d+)\.(.*)", rest)
    if m:  # the decoder's flat list: 3 resnets + 1 upsampler per level
        return f"{part}.upsamples.{4 * int(m[1]) + int(m[2])}.{_resnet(m[3])}"
    m = re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.(.*)", rest)
    if m:
        return f"{part}.upsamples.{4 * int(m[1]) + 3}.{m[2]}"
    raise ValueError(f"no original Wan VAE name for {name!r}")


def original_vae_state_dict(vae) -> dict[str, torch.Tensor]:
    """The weights of a diffusers Wan 2.1 ``AutoencoderKLWan`` under the original Wan names."""
    return {_original_name(k): v.detach().clone() for k, v in vae.state_dict().items()}
