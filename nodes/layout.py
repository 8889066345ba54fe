"""FadeMemMemoryLayout: the memory hierarchy of a FadeMem cache over a rollout, as an IMAGE."""
from __future__ import annotations

from .cache import CACHE_TYPE
from .inputs import FadeMemNode, inputs, int_input, outputs, socket
from .sampler import latent_frames, length_input


def pil_to_image(picture):
    """PIL RGB picture -> ComfyUI IMAGE ``[1, H, W, 3]`` float32 in 0..1."""
    import numpy as np
    import torch

    array = np.asarray(picture.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).unsqueeze(0)


class FadeMemMemoryLayout(FadeMemNode):
    """Draws which frames each memory entry summarises at every step of a rollout."""

    FUNCTION = "draw"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        ("IMAGE", "image", "The layout picture: frames left to right, rollout steps top to bottom."))
    DESCRIPTION = (
        "Pictures the FadeMem memory over a rollout of `length` video frames: row t is the memory "
        "after t latent frames, each entry a bar over the frames it summarises (pale = exact frame, "
        "dark = long consolidated span, orange = first-frame anchor), with a tick at its centre. "
        "Needs no model; use it to choose beta and M."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return inputs({
            "cache": socket(CACHE_TYPE, "A FadeMem Cache (baseline caches have no layout to draw)."),
            "length": length_input("Video frames of the rollout to picture, 1 + 4k "
                                   "(957 = 240 latent frames = 60 s)."),
            "width": int_input(768, 160, 4096, "Picture width in pixels.", step=8),
            "height": int_input(512, 120, 4096, "Picture height in pixels.", step=8),
        })

    def draw(self, cache, length, width, height):
        from fademem_core import FadeMem, draw_layout

        if not isinstance(cache, FadeMem):
            raise ValueError(f"FadeMem Memory Layout draws FadeMem caches, got {type(cache).__name__}")
        picture = draw_layout(latent_frames(length), cache.budget, cache.beta, anchor=cache.anchor,
                              width=int(width), height=int(height))
        return (pil_to_image(picture),)


NODE_CLASS_MAPPINGS = {"FadeMemMemoryLayout": FadeMemMemoryLayout}
NODE_DISPLAY_NAME_MAPPINGS = {"FadeMemMemoryLayout": "FadeMem Memory Layout"}
