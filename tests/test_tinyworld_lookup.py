"""The lookup probe: returns forced to one frame, the estimate from noise, the detail it draws."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fademem_core import FullCache, SlidingWindow
from fademem_core.tinyworld import lookup, world
from fademem_core.tinyworld.probes import read_frames
from fademem_core.tinyworld.returns import LOWEST_START


def test_every_forced_return_lands_at_its_frame_after_an_appearance_in_the_clip() -> None:
    clips, text, slots = lookup.forced_returns(8, at=150, seed=3)
    assert clips.shape == (8, 16, 153, 8, 8) and text.shape[0] == 8
    for clip, slot in zip(clips, slots):
        vis = read_frames(clip).visibility[:, slot]
        assert vis[149] == 0 and vis[150] > 0  # it comes back at frame 150
        gone = np.flatnonzero(vis[:150] > 0)
        assert len(gone) and 150 - gone[-1] > world.MIN_ABSENCE  # seen before, out since


def test_bad_return_frames_are_named() -> None:
    with pytest.raises(ValueError, match=rf"multiple of 3 and >= {LOWEST_START}, got 100"):
        lookup.forced_returns(2, at=100)
    with pytest.raises(ValueError, match="got 151"):
        lookup.forced_returns(2, at=151)


def test_the_detail_under_a_rendered_footprint_is_the_sprites_own() -> None:
    scene = world.sample_scene(5, num_sprites=2)
    z = world.render(scene, 0, 240)
    for slot, sprite in enumerate(scene.sprites):
        seen = np.flatnonzero(world.frame_params(scene, 0, 240).visibility[:, slot] > 0)[:3]
        m = z[world.MASK_CHANNELS[slot], seen] / world.MASK_GAIN
        np.testing.assert_allclose(lookup.detail_under(z[:, seen], m, slot), sprite.detail, atol=1e-6)
        assert lookup.nearest_entry(np.asarray(sprite.detail) * 0.3) == world.DETAILS.index(sprite.detail)


def test_hits_count_the_right_entry_and_only_it() -> None:
    clips, _, slots = lookup.forced_returns(6, at=150, seed=1)
    chunk = clips[:, :, 150:153]
    assert lookup.lookup_hits(chunk, clips, slots, 150).tolist() == [1.0] * 6
    wrong = chunk.clone()
    for i, slot in enumerate(slots):  # every detail reflected through the origin: another entry
        wrong[i, list(world.CODE_CHANNELS[slot][2:])] *= -1
    assert lookup.lookup_hits(wrong, clips, slots, 150).tolist() == [0.0] * 6


def test_the_estimate_from_noise_is_a_masked_forward_of_the_true_past(world_model) -> None:
    scenes = [world.sample_scene(40 + i, num_sprites=2) for i in range(2)]
    text = torch.cat([world.scene_prompt(s) for s in scenes])
    clips = torch.stack([world.render(s, 0, 12) for s in scenes])
    est = lookup.estimate_from_noise(world_model, text, FullCache(), clips, 9, seed=4)
    # reference: one pass over [9 clean frames ; 3 noisy], the clean block-causal in chunks of 3,
    # the noisy frames seeing everything; sigma 1 for the noisy ones, 0 for the past
    x = torch.randn(2, 16, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    c = torch.arange(9) // 3
    mask = torch.ones(12, 12, dtype=torch.bool)
    mask[:9, :9] = c[:, None] >= c[None, :]
    mask[:9, 9:] = False
    ts = torch.cat([torch.zeros(2, 9), torch.full((2, 3), 1000.0)], 1)
    with torch.no_grad():
        v = world_model.forward_masked(torch.cat([clips[:, :, :9], x], 2), ts, world_model.encode_text(text),
                                       list(range(12)), mask)[:, :, 9:]
    torch.testing.assert_close(est, x - v, atol=1e-4, rtol=1e-4)
    # a memory of nothing old sees another past
    other = lookup.estimate_from_noise(world_model, text, SlidingWindow(window=3), clips, 9, seed=4)
    assert (other - est).abs().max() > 1e-4
