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
        r = read_frames(clip)
        shown, vis = r.revealed()[:, slot], r.visibility[:, slot]
        assert not shown[149] and shown[150]  # its detail shows again at frame 150
        assert vis[149] > 0  # coming in over the frames before, the detail veiled
        before = np.flatnonzero(shown[:150])
        assert len(before) and 150 - before[-1] > world.MIN_ABSENCE  # shown before, out since
        assert (vis[before[-1]:150] == 0).sum() >= world.MIN_ABSENCE


def test_longer_clips_hold_the_same_returns() -> None:
    short, text, slots = lookup.forced_returns(4, at=150, seed=3)
    long, text2, slots2 = lookup.forced_returns(4, at=150, seed=3, frames=240)
    assert long.shape == (4, 16, 240, 8, 8) and slots2 == slots and torch.equal(text2, text)
    assert torch.equal(long[:, :, :153], short)


def test_bad_return_frames_are_named() -> None:
    with pytest.raises(ValueError, match=rf"multiple of 3 and >= {LOWEST_START}, got 100"):
        lookup.forced_returns(2, at=100)
    with pytest.raises(ValueError, match="got 151"):
        lookup.forced_returns(2, at=151)
    with pytest.raises(ValueError, match=r"frames must be >= at \+ 3 = 153, got 152"):
        lookup.forced_returns(2, at=150, frames=152)


def test_every_forced_entry_is_a_first_sight_at_its_frame_of_a_detail_not_taken() -> None:
    clips, text, slots, taken = lookup.forced_entries(12, at=48, seed=3)
    assert clips.shape == (12, 16, 51, 8, 8) and text.shape[0] == 12
    seen_other = 0
    for clip, slot, t in zip(clips, slots, taken):
        r = read_frames(clip)
        shown = r.revealed()[:, slot]
        assert shown[48] and not shown[:48].any()  # its detail shows for the first time at 48
        assert r.visibility[47, slot] > 0  # coming in, veiled
        m = clip[world.MASK_CHANNELS[slot], 48:51] / world.MASK_GAIN
        got = lookup.nearest_entry(lookup.detail_under(clip[:, 48:51], m, slot))
        assert got != t  # the world never gives the newcomer the other sprite's detail
        other = np.flatnonzero(r.visibility[:48, 1 - slot] >= 1)
        if len(other):  # where the other sprite was in view, taken is what it showed
            seen_other += 1
            np.testing.assert_allclose(r.detail[other[0], 1 - slot], world.DETAILS[t], atol=1e-3)
    assert seen_other > 0


def test_bad_entry_frames_are_named(monkeypatch) -> None:
    with pytest.raises(ValueError, match=r"multiple of 3 in 3 .. 99 \(first entries end at frame 100\), got 102"):
        lookup.forced_entries(2, at=102)
    with pytest.raises(ValueError, match="got 50"):
        lookup.forced_entries(2, at=50)
    monkeypatch.setattr(lookup, "first_entries", lambda scene, frames: [])  # a world without newcomers
    with pytest.raises(ValueError, match=r"only 0 of the scenes 3 .. 52 have a first entry at or after frame 48"):
        lookup.forced_entries(1, at=48, seed=3)


def test_fresh_rates_count_every_entry_but_the_taken_one() -> None:
    clips, _, slots, taken = lookup.forced_entries(3, at=48, seed=1)
    right = clips[:, :, 48:51]
    copy = right.clone()
    for i, (slot, t) in enumerate(zip(slots, taken)):  # the other sprite's detail drawn on the newcomer
        copy[i, list(world.CODE_CHANNELS[slot][2:])] = torch.tensor(world.DETAILS[t]).view(2, 1, 1, 1)
    mixed = torch.stack([right, copy, right, copy])
    mixed[1, 0] = right[0]
    assert lookup.fresh_rates(mixed, clips, slots, taken, 48).tolist() == [0.75, 0.5, 0.5]
    assert lookup.fresh_rates(copy[None], clips, slots, taken, 48).tolist() == [0.0] * 3


def test_the_detail_under_a_rendered_footprint_is_the_sprites_own() -> None:
    scene = world.sample_scene(5, num_sprites=2)
    z = world.render(scene, 0, 240)
    for slot, sprite in enumerate(scene.sprites):
        seen = np.flatnonzero(world.frame_params(scene, 0, 240).visibility[:, slot] >= world.REVEAL)[:3]
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


def test_hit_rates_are_the_share_of_draws_that_hit() -> None:
    clips, _, slots = lookup.forced_returns(4, at=150, seed=1)
    right = clips[:, :, 150:153]
    wrong = right.clone()
    for i, slot in enumerate(slots):
        wrong[i, list(world.CODE_CHANNELS[slot][2:])] *= -1
    draws = torch.stack([right, wrong, right, right])
    draws[1, 0] = right[0]  # video 0: every draw hits
    assert lookup.hit_rates(draws, clips, slots, 150).tolist() == [1.0, 0.75, 0.75, 0.75]


def test_every_draw_is_a_masked_forward_from_its_own_noise(world_model) -> None:
    scenes = [world.sample_scene(40 + i, num_sprites=2) for i in range(2)]
    text = torch.cat([world.scene_prompt(s) for s in scenes])
    clips = torch.stack([world.render(s, 0, 12) for s in scenes])
    est = lookup.estimates_of(world_model, text, FullCache(), clips, 9, draws=3, seed=4)
    gen = torch.Generator().manual_seed(4)  # the draws' noises, one after the other
    c = torch.arange(9) // 3
    mask = torch.ones(12, 12, dtype=torch.bool)
    mask[:9, :9] = c[:, None] >= c[None, :]
    mask[:9, 9:] = False
    ts = torch.cat([torch.zeros(2, 9), torch.full((2, 3), 1000.0)], 1)
    for k in range(3):
        x = torch.randn(2, 16, 3, 8, 8, generator=gen)
        with torch.no_grad():
            v = world_model.forward_masked(torch.cat([clips[:, :, :9], x], 2), ts,
                                           world_model.encode_text(text), list(range(12)), mask)[:, :, 9:]
        torch.testing.assert_close(est[k], x - v, atol=1e-4, rtol=1e-4)
    assert (est[1] - est[0]).abs().max() > 1e-3


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
