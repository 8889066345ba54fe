"""The embedded tiny world in ComfyUI: its prompt as CONDITIONING, its latents as IMAGE.

With FadeMem Model Loader's ``tiny_world`` entries these let a user try the pack with nothing
downloaded (workflow ``fademem_tiny_world``).  Translation only: widgets -> the world's prompt
embedding (``fademem_core.prompt_embedding``), a LATENT -> the world's fixed latent -> RGB map
(``fademem_core.to_rgb``).
"""
from __future__ import annotations

from fademem_core.checks import check_int

from .inputs import FadeMemNode, combo, inputs, int_input, outputs, socket
from .loader import MODEL_TYPE

NO_SPRITE = "none"


def _classes() -> tuple[str, ...]:
    """The class widget's choices, one per class of the world (``fademem_core.NUM_CLASSES``)."""
    from fademem_core import NUM_CLASSES

    return tuple(f"class {c}" for c in range(NUM_CLASSES))


def _class(name: str, which: str) -> int | None:
    """A class widget value -> the class index (None: no sprite)."""
    if name == NO_SPRITE and which == "sprite_b":
        return None
    classes = _classes()
    if name not in classes:
        allowed = classes + ((NO_SPRITE,) if which == "sprite_b" else ())
        raise ValueError(f"{which} must be one of {allowed}, got {name!r}")
    return classes.index(name)


class FadeMemTinyWorldPrompt(FadeMemNode):
    """The tiny world's "text": background family and sprite classes, as CONDITIONING."""

    FUNCTION = "encode"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        ("CONDITIONING", "positive", "The prompt for FadeMem Sampler (the embedded tiny_world "
                                     "models only; Wan models take CLIP Text Encode)."))
    DESCRIPTION = (
        "Prompts the embedded tiny world (FadeMem Model Loader: tiny_world / tiny_world_ft): a "
        "drifting textured background of one of 4 families and one or two sprites of 6 classes. "
        "Each sprite also has a detail drawn per video that is NOT in the prompt: only the "
        "memory keeps it when the sprite leaves and comes back."
    )

    @classmethod
    def INPUT_TYPES(cls):
        from fademem_core import NUM_FAMILIES

        classes = _classes()
        return inputs({
            "model": socket(MODEL_TYPE, "FadeMem Model Loader with a tiny_world entry (its text "
                                        "width shapes the prompt)."),
            "family": int_input(0, 0, NUM_FAMILIES - 1, "Background texture family (0-3)."),
            "sprite_a": combo(classes, "Class of sprite A, on screen from the first frame.",
                              default="class 1"),
            "sprite_b": combo((NO_SPRITE,) + classes, "Class of sprite B, which enters later "
                                                      "(frames 20-100); none: one sprite only.",
                              default="class 4"),
        })

    def encode(self, model, family, sprite_a, sprite_b):
        from fademem_core import prompt_embedding

        classes = (_class(sprite_a, "sprite_a"), _class(sprite_b, "sprite_b"))
        text_dim = getattr(model, "text_dim", None)
        if not isinstance(text_dim, int):
            raise ValueError(f"model must come from FadeMem Model Loader, got {type(model).__name__}")
        emb = prompt_embedding(family, classes, text_dim=text_dim)  # checks family; ValueError for a Wan model
        return ([[emb, {}]],)


class FadeMemTinyWorldDecode(FadeMemNode):
    """LATENT -> IMAGE through the tiny world's fixed latent -> RGB map (no VAE)."""

    FUNCTION = "decode"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        ("IMAGE", "images", "One picture per latent frame, for Create Video / Save Video or "
                            "Preview Image."))
    DESCRIPTION = (
        "Shows the embedded tiny world's latents: each latent frame through the world's fixed "
        "latent -> RGB map (fademem_core.tinyworld.world.to_rgb), enlarged by scale. The tiny "
        "world has no VAE: one latent frame is one picture (play it at 16 fps)."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return inputs({
            "samples": socket("LATENT", "FadeMem Sampler's latent, with a tiny_world model."),
            "scale": int_input(8, 1, 64, "Pixels per latent pixel (8: 64x64 pictures, the size "
                                         "a Wan VAE would give)."),
        })

    def decode(self, samples, scale):
        import torch

        from fademem_core import from_raw, to_rgb

        latents = samples.get("samples") if isinstance(samples, dict) else None
        if latents is None or getattr(latents, "ndim", 0) != 5 or latents.shape[0] != 1:
            raise ValueError("samples must be one video LATENT {'samples': [1, 16, frames, 8, 8]} "
                             f"from FadeMem Sampler, got {getattr(latents, 'shape', samples)!r:.200}")
        check_int("scale", scale, 1, 64)
        # the sampler hands out raw Wan latents (what VAE Decode takes); the world is drawn in
        # the model's normalised space
        pixels = to_rgb(from_raw(latents.float().cpu()), scale=scale)
        return (torch.from_numpy(pixels).float() / 255.0,)


NODE_CLASS_MAPPINGS = {"FadeMemTinyWorldPrompt": FadeMemTinyWorldPrompt,
                       "FadeMemTinyWorldDecode": FadeMemTinyWorldDecode}
NODE_DISPLAY_NAME_MAPPINGS = {"FadeMemTinyWorldPrompt": "FadeMem Tiny World Prompt",
                              "FadeMemTinyWorldDecode": "FadeMem Tiny World Decode"}
