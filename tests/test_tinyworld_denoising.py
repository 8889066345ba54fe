"""The window-model instruments: clean-estimate errors per channel, other-family prompts,
windows drawn from noise, per-channel residuals (each against a formula written out)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fademem_core.model.causal_wan import forward_masked, text_kv
from fademem_core.tinyworld import denoising, world
from fademem_core.tinyworld.probes import read_frames
from fademem_core.tinyworld.spec import warp


@pytest.fixture(scope="module")
def tr(world_model):
    return world_model.transformer


def _scenes(n=2):
    return [world.sample_scene(40 + i) for i in range(n)]


def _text(scenes):
    return torch.cat([world.scene_prompt(s, 32) for s in scenes])


def _v(tr, x, sigma, text):  # a bidirectional forward at positions 0..F-1, written out
    b, f = x.shape[0], x.shape[2]
    ones = torch.ones(f, f, dtype=torch.bool)
    return forward_masked(tr, x, torch.full((b, f), sigma * 1000.0), text_kv(tr, text), list(range(f)), ones)


def test_x0_errors_are_the_clean_estimates_squared_error_per_channel(tr) -> None:
    scenes = _scenes()
    clips = torch.stack([world.render(s, 10, 6) for s in scenes])
    text = _text(scenes)
    got = denoising.x0_errors(tr, clips, text, (0.3, 0.8), seed=4)
    g = torch.Generator().manual_seed(4)
    for row, s in zip(got, (0.3, 0.8)):
        xt = (1 - s) * clips + s * torch.randn(clips.shape, generator=g)
        with torch.no_grad():
            x0 = xt - s * _v(tr, xt, s, text)
        want = ((x0 - clips) ** 2).double().mean(dim=(0, 2, 3, 4)).numpy()
        assert row.shape == (16,) and np.allclose(row, want, rtol=1e-4, atol=1e-7)
    with pytest.raises(ValueError, match="sigmas"):
        denoising.x0_errors(tr, clips, text, (0.0,))


def test_other_family_prompts_change_only_the_family() -> None:
    scenes = _scenes(4)
    got = denoising.other_family(scenes, 32)
    for i, s in enumerate(scenes):
        other = world.sample_scene(40 + i, family=(s.family + 1) % world.NUM_FAMILIES)
        assert torch.equal(got[i:i + 1], world.prompt_embedding(other.family, s.classes, 32, world.PROMPT_LENGTH))
        assert not torch.equal(got[i:i + 1], world.scene_prompt(s, 32))


def test_one_euler_step_from_noise_is_noise_minus_velocity(tr) -> None:
    text = _text(_scenes())
    got = denoising.sample_windows(tr, text, 3, 1, seed=2)
    x = torch.randn(2, 16, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        want = x - float(warp(1.0)) * _v(tr, x, 1.0, text)
    assert torch.allclose(got, want, atol=1e-5)
    with pytest.raises(ValueError, match="steps"):
        denoising.sample_windows(tr, text, 3, 0)


def test_channel_residuals_are_zero_on_renders_and_split_the_probes_residual() -> None:
    z = world.render(world.sample_scene(3), 0, 6)
    assert np.allclose(denoising.channel_residuals(z), 0.0, atol=1e-12)
    broken = z.clone()
    broken[4] = torch.randn(broken[4].shape, generator=torch.Generator().manual_seed(0))
    per = denoising.channel_residuals(broken)
    assert per[4] > 0.5 and np.isclose(per.mean(), read_frames(broken).residual.mean(), rtol=1e-9)
