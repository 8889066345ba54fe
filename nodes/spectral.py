"""FadeMemSpectralDecay: the paper's Figure 2 measured on IMAGE frames or a LATENT, with the
fitted decay exponent b and a suggested beta.  Translation only: the analysis is
``fademem_core.analysis.spectral``."""
from __future__ import annotations

from .inputs import FadeMemNode, combo, inputs, int_input, outputs, socket
from .layout import pil_to_image


class FadeMemSpectralDecay(FadeMemNode):
    """Spectral-decay analysis of a clip (paper Sec. 3.2) -> plot, b, suggested beta."""

    FUNCTION = "analyze"
    RETURN_TYPES, RETURN_NAMES, OUTPUT_TOOLTIPS = outputs(
        ("IMAGE", "plot", "Figure 2 for this clip: (a) correlation C_r(d) per frequency band "
                          "against lag, (b) decorrelation horizons per band on log-log axes with "
                          "the power-law fit."),
        ("FLOAT", "b", "b in r*(t) ~ t^-b: how fast the frequency band that stays correlated "
                       "shrinks with distance."),
        ("FLOAT", "suggested_beta", "beta = 1 - b clamped to [0.05, 1]: this pack's heuristic "
                                    "(not the paper's) for FadeMem Cache's beta. A starting "
                                    "point, not a rule."))
    DESCRIPTION = (
        "Measures how correlations between frames fade with temporal distance, per spatial "
        "frequency band (the FadeMem paper's Figure 2), on the frames you connect (IMAGE, e.g. "
        "from Load Video / VAE Decode; analysed as luma by default) or on a video LATENT (first "
        "sample of the batch, 16 channels). Each band's decorrelation horizon is the lag where "
        "90% of its decay is done; a power law r ~ t^-b is fitted through the bands below the "
        "shortest horizon (compressed video shows rising horizons at the top: codec "
        "artefacts). Needs more frames than the max lag (latents: use max lag ~ frames/2)."
    )

    @classmethod
    def INPUT_TYPES(cls):
        return inputs({
            "bands": int_input(16, 2, 64, "Number of radial frequency bands (equal width up to "
                                          "Nyquist). Frames need at least 2 x bands pixels per "
                                          "side; use 8 for small latents."),
            "max_lag": int_input(0, 0, 1024, "Largest frame distance measured. 0 = auto: min(64, "
                                             "frames / 2). Horizons beyond max_lag / 2 are "
                                             "reported as too long and not fitted. Set it "
                                             "explicitly to compare clips."),
            "channels": combo(["luma", "rgb"], "For IMAGE input: analyse luma (recommended: video "
                                               "chroma is half resolution) or the three RGB "
                                               "channels together. Ignored for LATENT.",
                              default="luma"),
        }, optional={
            "images": socket("IMAGE", "Video frames [frames, H, W, 3] in 0..1."),
            "latent": socket("LATENT", "A video latent {samples: [B, 16, T, h, w]}; the first "
                                       "sample is analysed."),
        })

    def analyze(self, bands, max_lag, channels, images=None, latent=None):
        from fademem_core import analyze_video, draw_spectral, image_to_frames, latent_to_frames

        if (images is None) == (latent is None):
            raise ValueError("FadeMem Spectral Decay: connect exactly one of 'images' or "
                             "'latent'")
        if images is not None:
            frames = image_to_frames(images, gray=channels == "luma")
            label = f"IMAGE ({channels})"
        else:
            if not isinstance(latent, dict) or "samples" not in latent:
                raise ValueError("latent must be a ComfyUI LATENT dict with 'samples'")
            frames = latent_to_frames(latent["samples"])
            label = "LATENT"
        res = analyze_video(frames, bands=int(bands),
                            max_lag=int(max_lag) if int(max_lag) > 0 else None)
        if not res.fitted:
            raise ValueError("FadeMem Spectral Decay: no power law could be fitted. "
                             + " ".join(res.notes))
        img = draw_spectral(res, title=f"{label}: spectral decay")
        return (pil_to_image(img), float(res.b), float(res.suggested_beta))


NODE_CLASS_MAPPINGS = {"FadeMemSpectralDecay": FadeMemSpectralDecay}
NODE_DISPLAY_NAME_MAPPINGS = {"FadeMemSpectralDecay": "FadeMem Spectral Decay (beta finder)"}
