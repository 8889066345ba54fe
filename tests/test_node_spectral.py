"""FadeMemSpectralDecay node: plain-Python import, widget ranges, IMAGE and LATENT inputs."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest
import torch

from fademem_core.analysis.spectral import analyze_video
from fademem_core.analysis.spectral_synthetic import synthetic_video
from nodes.spectral import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS, FadeMemSpectralDecay


def _clip(frames: int = 120, size: int = 64) -> np.ndarray:
    bands = 8
    radius = (np.arange(bands) + 0.5) / bands
    taus = [5.0 / math.log(10) * (radius[r] / radius[3]) ** (-1 / 0.7) for r in range(bands)]
    return synthetic_video(frames, size, taus, seed=1)


def test_imports_without_comfyui_and_is_registered():
    assert "comfy" not in sys.modules and "folder_paths" not in sys.modules
    assert NODE_CLASS_MAPPINGS == {"FadeMemSpectralDecay": FadeMemSpectralDecay}
    assert "FadeMemSpectralDecay" in NODE_DISPLAY_NAME_MAPPINGS
    node = FadeMemSpectralDecay
    assert node.RETURN_TYPES == ("IMAGE", "FLOAT", "FLOAT")
    assert node.CATEGORY == "FadeMem" and node.DESCRIPTION
    assert callable(getattr(node(), node.FUNCTION))


def test_widgets_have_tooltips_and_sane_ranges():
    spec = FadeMemSpectralDecay.INPUT_TYPES()
    assert set(spec["optional"]) == {"images", "latent"}
    for name, (kind, opts) in {**spec["required"], **spec["optional"]}.items():
        assert opts.get("tooltip"), name
        if kind == "INT":
            assert opts["min"] <= opts["default"] <= opts["max"] and opts["step"] >= 1
    assert spec["required"]["bands"][1]["min"] == 2
    assert spec["required"]["channels"][0] == ["luma", "rgb"]


def test_image_input_gives_plot_b_and_beta():
    gray = torch.from_numpy(_clip())[:, 0]                          # [T, H, W]
    gray = (gray - gray.min()) / (gray.max() - gray.min())
    images = gray[..., None].expand(-1, -1, -1, 3).contiguous()     # ComfyUI IMAGE, 0..1
    plot, b, beta = FadeMemSpectralDecay().analyze(bands=8, max_lag=40, channels="luma",
                                                   images=images)
    ref = analyze_video(gray[:, None], bands=8, max_lag=40)         # same analysis, directly
    assert b == pytest.approx(ref.b, rel=1e-4) and abs(b - 0.7) < 0.1
    assert beta == pytest.approx(ref.suggested_beta, rel=1e-4)
    assert plot.ndim == 4 and plot.shape[0] == 1 and plot.shape[3] == 3
    assert plot.dtype == torch.float32 and 0.0 <= float(plot.min()) and float(plot.max()) <= 1.0
    assert float(plot.std()) > 0.05                                 # a drawing, not a blank


def test_latent_input_uses_first_sample():
    x = torch.from_numpy(_clip())                                   # [T, 1, h, w]
    lat = x.permute(1, 0, 2, 3)[None].repeat(2, 16, 1, 1, 1)        # [2, 16, T, h, w]
    lat[1] = torch.randn_like(lat[1])                               # a different 2nd sample
    _plot, b, _beta = FadeMemSpectralDecay().analyze(bands=8, max_lag=0, channels="luma",
                                                     latent={"samples": lat})
    assert b == pytest.approx(analyze_video(x, bands=8).b, rel=1e-3)


def test_input_errors():
    node = FadeMemSpectralDecay()
    with pytest.raises(ValueError, match="exactly one"):
        node.analyze(bands=8, max_lag=0, channels="luma")
    img = torch.rand(10, 32, 32, 3)
    with pytest.raises(ValueError, match="exactly one"):
        node.analyze(bands=8, max_lag=0, channels="luma", images=img,
                     latent={"samples": torch.zeros(1, 16, 3, 8, 8)})
    with pytest.raises(ValueError, match="samples"):
        node.analyze(bands=8, max_lag=0, channels="luma", latent={"x": 1})
    with pytest.raises(ValueError, match="too short"):
        node.analyze(bands=4, max_lag=20, channels="luma", images=img)
    with pytest.raises(ValueError, match="no power law"):
        node.analyze(bands=4, max_lag=8, channels="luma", images=torch.rand(40, 32, 32, 3))
