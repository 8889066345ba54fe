"""The procedural world, its probes and its scores (independent references)."""
from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from fademem_core.tinyworld import probes, world
from fademem_core.tinyworld.forward import masked_velocity, teacher_forcing_mask
from tests.support.rollout_reference import diffusers_masked_forward

TOL = 2e-5  # frames are float32


@pytest.mark.parametrize("seed", range(12))
def test_probes_read_back_ground_truth_exactly(seed: int) -> None:
    scene = world.sample_scene(seed)
    start = 7 * seed
    z = world.render(scene, start, 90)
    gt = world.frame_params(scene, start, 90)
    r = probes.read_frames(z)
    assert np.all(probes.circular_distance(r.shift, gt.shift, world.SIZE) < TOL)
    assert np.all(probes.circular_distance(r.params.q, gt.q, world.SIZE) < TOL)
    assert np.all(probes.circular_distance(r.params.r4, gt.r4, 2 * math.pi) < TOL)
    assert np.all(probes.circular_distance(r.params.r5, gt.r5, 2 * math.pi) < TOL)
    assert np.array_equal(r.params.family, gt.family)
    vis = gt.visibility
    assert np.allclose(r.visibility, vis, atol=TOL)
    seen = vis > 1e-5
    assert np.allclose(r.pos[seen], gt.pos[seen], atol=TOL)
    revealed = vis >= world.REVEAL
    assert np.allclose(r.params.code[seen][:, :2], gt.code[seen][:, :2], atol=TOL)  # the class: never veiled
    assert np.allclose(r.params.code[revealed][:, 2:], gt.code[revealed][:, 2:], atol=TOL)
    assert np.array_equal(~np.isnan(r.detail[..., 0]), revealed)
    assert np.allclose(r.detail[revealed], gt.code[revealed][:, 2:], atol=TOL)
    shown = vis >= probes.VISIBLE
    expected_cls = np.array([-1 if s is None else s.cls for s in scene.sprites])
    assert np.array_equal(r.cls[shown], np.broadcast_to(expected_cls, vis.shape)[shown])
    assert np.all(r.cls[~shown] == -1)
    assert r.residual.max() < 1e-10


@pytest.mark.parametrize("seed", range(6))
def test_the_detail_is_veiled_until_most_of_the_sprite_is_in_frame(seed: int) -> None:
    # written out: the detail channels are footprint x detail where >= 0.9 of the square is in
    # frame (its in-frame width over its side), 0 elsewhere; the class channels are never veiled
    scene = world.sample_scene(seed, num_sprites=2)
    gt = world.frame_params(scene, 0, 240)
    z = world.render(scene, 0, 240).double().numpy()
    for slot, sprite in enumerate(scene.sprites):
        x = gt.pos[:, slot, 0]
        inside = (np.clip(x + 1, 0, 8) - np.clip(x - 1, 0, 8)) / 2
        m = z[world.MASK_CHANNELS[slot]] / world.MASK_GAIN
        for i, ch in enumerate(world.CODE_CHANNELS[slot]):
            want = m * sprite.code()[i] * ((inside >= 0.9)[:, None, None] if i >= 2 else 1.0)
            assert np.allclose(z[ch], want, atol=1e-6)
        partly = (inside > 0) & (inside < 0.9)
        assert partly.any() and (inside >= 0.9).any()  # both cases occur in 240 frames
        assert np.abs(z[list(world.CODE_CHANNELS[slot][2:])][:, partly]).max() == 0
        assert np.abs(z[world.CODE_CHANNELS[slot][0]][partly]).max() > 0


def test_probe_positions_against_a_direct_formula() -> None:
    # one sprite at a known fractional position, drawn by hand (not by world.render)
    z = torch.zeros(16, 1, 8, 8)
    # square [2.3, 4.3] x [1.0, 3.0]: columns 2 (0.7), 3 (1.0), 4 (0.3); rows 1, 2 full
    cols = {2: 0.7, 3: 1.0, 4: 0.3}
    for x, cov in cols.items():
        for y in (1, 2):
            z[6, 0, y, x] = world.MASK_GAIN * cov
            z[8:12, 0, y, x] = cov * torch.tensor([1.5, 0.0, 0.25, -0.5])
    r = probes.read_frames(z)
    assert r.pos[0, 0] == pytest.approx((3.3, 2.0), abs=1e-6)
    assert r.visibility[0, 0] == pytest.approx(1.0)
    assert r.cls[0, 0] == 0
    assert r.detail[0, 0] == pytest.approx((0.25, -0.5), abs=1e-6)
    # cut by the left border: only 0.6 of the width visible -> centre at 0.6 - 1
    z2 = torch.zeros(16, 1, 8, 8)
    z2[6, 0, 1:3, 0] = world.MASK_GAIN * 0.6
    r2 = probes.read_frames(z2)
    assert r2.visibility[0, 0] == pytest.approx(0.3)
    assert r2.pos[0, 0, 0] == pytest.approx(-0.4)


def _runs_of_absence(gone: np.ndarray) -> list[int]:
    """Lengths of the absences bounded on both sides by visible frames."""
    runs, n, seen_visible = [], 0, False
    for g in gone:
        if g:
            n += 1
        else:
            if n and seen_visible:
                runs.append(n)
            n, seen_visible = 0, True
    return runs


@pytest.mark.parametrize("seed", range(30))
def test_sprites_enter_late_leave_long_and_return(seed: int) -> None:
    scene = world.sample_scene(seed, num_sprites=2)
    vis = world.frame_params(scene, 0, 240).visibility
    # sprite A is on screen at frame 0 (the sink holds it), sprite B enters in frames 20-100
    assert vis[0, 0] > 0
    first_b = np.flatnonzero(vis[:, 1] > 0)[0]
    assert world.FIRST_ENTRY[0] <= first_b <= world.FIRST_ENTRY[1] + 1
    for slot in range(2):
        runs = _runs_of_absence(vis[:, slot] == 0)
        assert runs, f"sprite {slot} of scene {seed} never leaves and returns in 240 frames"
        # every absence is far longer than any 15-frame window (the partial-visibility edges
        # of a crossing shorten it by at most 2 frames)
        assert min(runs) >= world.MIN_ABSENCE - 2 and max(runs) <= world.MAX_ABSENCE + 1
    back = np.flatnonzero(vis[first_b:, 1] == 0)
    assert len(back) and np.flatnonzero(vis[:, 1] > 0)[-1] < world.LAST_RETURN + 40
    assert scene.sprites[0].detail != scene.sprites[1].detail  # never shared in one video


def test_one_sprite_scenes_leave_slot_b_empty() -> None:
    scene = world.sample_scene(2, num_sprites=1)
    assert scene.sprites[1] is None
    assert np.all(world.frame_params(scene, 0, 240).visibility[:, 1] == 0)


def test_world_motion_is_smooth_and_identity_fixed() -> None:
    scene = world.sample_scene(3, num_sprites=2)
    p = world.frame_params(scene, 0, 240)
    r = probes.read_frames(world.render(scene, 0, 240))
    for slot in range(2):
        seen = r.visibility[:, slot] >= 0.999
        both = seen[1:] & seen[:-1]
        step = np.abs(np.diff(r.pos[:, slot], axis=0))[both]
        assert step.max() < 0.6  # never jumps more than its speed
        codes = r.params.code[seen, slot]
        assert np.allclose(codes, codes[0], atol=TOL)
    drift = np.diff(np.unwrap(p.shift * 2 * math.pi / world.SIZE))
    assert np.allclose(drift, drift[0]) and 0.02 < abs(drift[0]) * world.SIZE / (2 * math.pi) < 0.07


def test_scene_sampling_is_seeded_and_validates() -> None:
    assert world.sample_scene(5) == world.sample_scene(5)
    assert world.sample_scene(5) != world.sample_scene(6)
    s = world.sample_scene(1, family=2, classes=(4, 1))
    assert s.family == 2 and s.classes == (4, 1)
    with pytest.raises(ValueError, match="num_sprites"):
        world.sample_scene(0, num_sprites=3)
    with pytest.raises(ValueError, match="class"):
        world.sample_scene(0, classes=(9,))
    with pytest.raises(ValueError, match="family"):
        world.sample_scene(0, family=7)
    # a float family was once truncated silently (int(1.5) == 1)
    with pytest.raises(ValueError, match=r"family must be an integer in \[0, 3\], got 1.5"):
        world.sample_scene(0, family=1.5)
    with pytest.raises(ValueError, match=r"sprite class must be an integer in \[0, 5\], got 6"):
        world.sample_scene(0, classes=(6,))
    with pytest.raises(ValueError, match=r"num_sprites must be an integer in \[1, 2\], got 0"):
        world.sample_scene(0, num_sprites=0)


def test_prompt_embedding_encodes_the_classes() -> None:
    a = world.prompt_embedding(1, (2, None))
    b = world.prompt_embedding(1, (3, None))
    c = world.prompt_embedding(1, (2, 5))
    assert a.shape == (1, world.PROMPT_LENGTH, 32)
    assert torch.equal(a, world.prompt_embedding(1, (2,)))
    assert not torch.allclose(a[0, 1], b[0, 1]) and torch.equal(a[0, 0], b[0, 0])
    assert torch.equal(a[0, 1], c[0, 1]) and not torch.allclose(a[0, 2], c[0, 2])
    assert torch.all(a[0, 3] == 0)  # padding token
    with pytest.raises(ValueError, match="text_dim"):
        world.prompt_embedding(0, (1,), text_dim=8)
    with pytest.raises(ValueError, match="classes"):
        world.prompt_embedding(0, (None, None))
    with pytest.raises(ValueError, match=r"family must be an integer in \[0, 3\], got 4"):
        world.prompt_embedding(4, (1,))
    with pytest.raises(ValueError, match=r"sprite class must be an integer in \[0, 5\], got -1"):
        world.prompt_embedding(0, (1, -1))


def test_to_rgb_shapes_and_validation() -> None:
    rgb = world.to_rgb(world.render(world.sample_scene(0), 0, 3))
    assert rgb.shape == (3, 64, 64, 3) and rgb.dtype == np.uint8
    assert rgb.std() > 5  # the background texture is visible
    with pytest.raises(ValueError, match="16"):
        world.to_rgb(torch.zeros(3, 2, 8, 8))


def test_probes_reject_bad_shapes() -> None:
    with pytest.raises(ValueError, match="latents"):
        probes.read_frames(torch.zeros(16, 2, 4, 4))


def _window_rule(i: int, j: int, f: int, chunk: int) -> bool:
    """May frame ``i`` of ``[clean ; noisy]`` (``f`` each) attend frame ``j``? Written out."""
    qi, kj = i % f, j % f
    q_noisy, k_noisy = i >= f, j >= f
    if not q_noisy:
        return (not k_noisy) and kj // chunk <= qi // chunk
    if k_noisy:
        return kj // chunk == qi // chunk
    return kj // chunk < qi // chunk


def test_teacher_forcing_mask_against_direct_rule() -> None:
    f, chunk = 7, 3
    m = teacher_forcing_mask(f, chunk)
    for i in range(2 * f):
        for j in range(2 * f):
            assert bool(m[i, j]) == _window_rule(i, j, f, chunk), (i, j)


def test_training_forward_matches_diffusers_masked_full_sequence() -> None:
    """The training forward against diffusers' own Wan forward (its blocks, RoPE tables and
    attention) on the whole ``[clean ; noisy]`` sequence with the teacher-forcing mask: the
    reference shares no code with the engine's block, so a bug there shows here."""
    from fademem_core.tinyworld.spec import init_transformer

    tr = init_transformer(0)
    with torch.no_grad():  # move off the zero-initialised output layers so outputs differ
        for p in tr.parameters():
            p.add_(0.05 * torch.randn_like(p))
    f = 6
    x = torch.randn(2, 16, 2 * f, 8, 8)
    ts = torch.rand(2, 2 * f) * 1000
    text = torch.randn(2, 4, 32)
    pos = list(range(f)) * 2
    mask = teacher_forcing_mask(f, 3)
    v = masked_velocity(tr, x, ts, text, pos, mask)
    ref = diffusers_masked_forward(copy.deepcopy(tr), x, ts, text, pos, mask)
    assert v.abs().mean() > 0.1
    torch.testing.assert_close(v, ref, atol=1e-5, rtol=1e-5)
    # and the mask matters: a future clean frame changes nothing before it
    x2 = x.clone()
    x2[:, :, f - 1] += 1.0
    v2 = masked_velocity(tr, x2, ts, text, pos, mask)
    torch.testing.assert_close(v2[:, :, :3], v[:, :, :3])
    torch.testing.assert_close(v2[:, :, f : f + 3], v[:, :, f : f + 3])
    assert not torch.allclose(v2[:, :, 3:6], v[:, :, 3:6])


def test_scores_are_perfect_on_the_world_and_catch_a_swapped_identity() -> None:
    from fademem_core.tinyworld.scores import mean_over, score_video, stack_scores

    scene = world.sample_scene(4, num_sprites=1)
    truth = world.render(scene, 0, 240)
    s = mean_over(stack_scores([score_video(truth, scene.family, scene.classes)]))
    assert s["identity_error"] < 1e-5 and s["return_error"] < 1e-5 and s["layout_error"] < 1e-5
    assert s["class_ok"] == 1 and s["family_ok"] == 1 and s["phantom"] == 0 and s["residual"] < 1e-10
    assert s["sprite_speed"] == pytest.approx(scene.sprites[0].speed, rel=0.05)
    # after the sprite's first absence, redraw it with another codebook detail
    p = world.frame_params(scene, 0, 240)
    seen = np.flatnonzero(p.visibility[:, 0] >= 0.5)
    back = seen[np.flatnonzero(np.diff(seen) >= 30)[0] + 1]
    old = np.array(scene.sprites[0].detail)
    new = np.array([d for d in world.DETAILS if d != tuple(old)][0])
    p.code[back:, 0, 2:] = new
    swapped = score_video(world.render_params(p), scene.family, scene.classes)
    want = np.linalg.norm(new - old)
    assert np.nanmax(swapped.return_error) == pytest.approx(want, abs=1e-4)
    assert np.nanmax(swapped.identity_error[:back]) < 1e-4
    # a frozen video: no motion at all
    frozen = truth[:, :1].repeat(1, 60, 1, 1)
    f = mean_over(stack_scores([score_video(frozen, scene.family, scene.classes)]))
    assert f["change"] == 0 and f["drift_speed"] == 0


def _swap_after_return(scene, slot: int, frames: int = 240):
    """Frame params with ``slot``'s detail replaced by another entry from its first return on."""
    p = world.frame_params(scene, 0, frames)
    seen = np.flatnonzero(p.visibility[:, slot] >= world.REVEAL)  # where the detail shows
    back = seen[np.flatnonzero(np.diff(seen) > 30)[0] + 1]
    old = scene.sprites[slot].detail
    new = [d for d in world.DETAILS if d != old and d != scene.sprites[1 - slot].detail][0]
    p.code[back:, slot, 2:] = new
    return p, int(back)


def test_memory_events_on_the_world_and_on_a_forgotten_identity() -> None:
    from fademem_core.tinyworld.scores import event_rate, memory_events

    scene = world.sample_scene(7, num_sprites=2)
    truth = world.render(scene, 0, 240)
    ev = memory_events(probes.read_frames(truth), 0)
    kinds = sorted({e.kind for e in ev})
    assert kinds == ["first", "return"] and all(e.ok for e in ev)
    assert event_rate(ev, "return") == 1.0 and event_rate(ev, "first") == 1.0
    # events before the primed prefix's end are the truth's, not the model's: not scored
    assert all(e.frame >= 100 for e in memory_events(probes.read_frames(truth), 100))
    # sprite B comes back with another codebook detail: that return is wrong, nothing else
    p, back = _swap_after_return(scene, 1)
    ev2 = memory_events(probes.read_frames(world.render_params(p)), 0)
    wrong = [e for e in ev2 if not e.ok]
    assert [(e.slot, e.kind, e.frame) for e in wrong] == [(1, "return", back)]
    # a sprite B that first enters with sprite A's detail (a copy of the past) is not fresh
    p = world.frame_params(scene, 0, 240)
    p.code[:, 1, 2:] = scene.sprites[0].detail
    ev3 = memory_events(probes.read_frames(world.render_params(p)), 0)
    assert [e.ok for e in ev3 if e.kind == "first" and e.slot == 1] == [False]
    assert event_rate([], "return") != event_rate([], "return")  # NaN when nothing to score


def test_memory_teacher_forcing_mask_against_direct_rule() -> None:
    from fademem_core.tinyworld.forward import memory_teacher_forcing_mask

    k, f, chunk = 3, 6, 3
    m = memory_teacher_forcing_mask(k, f, chunk)
    assert m.shape == (k + 2 * f, k + 2 * f)
    for i in range(k + 2 * f):
        for j in range(k + 2 * f):
            if i < k:  # a memory frame sees earlier memory frames and itself, nothing else
                want = j <= i
            elif j < k:  # every window frame sees the whole memory
                want = True
            else:
                want = _window_rule(i - k, j - k, f, chunk)
            assert bool(m[i, j]) == want, (i, j)
    with pytest.raises(ValueError, match="memory"):
        memory_teacher_forcing_mask(-1, f, chunk)
