"""Primed rollouts (the benchmark protocol) and the render check, on tiny in-process models."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fademem_core import POLICIES, FadeMem, FullCache, generate
from fademem_core.model.causal_wan import CausalWan
from fademem_core.rollout.sampler import even_timesteps
from fademem_core.tinyworld import lookup, quality, world
from fademem_core.tinyworld.reference import reference_rollout
from fademem_core.tinyworld.rollout import primed_rollout

STEPS = 4


@pytest.fixture(scope="module")
def model(world_model) -> CausalWan:
    return world_model


@pytest.fixture(scope="module")
def scenes():
    return [world.sample_scene(40 + i, num_sprites=2) for i in range(2)]


def _text(scenes):
    return torch.cat([world.scene_prompt(s) for s in scenes])


@pytest.mark.parametrize("sampler", ["euler", "few_step"])
def test_unprimed_rollout_is_generate_with_the_same_sampler(model, scenes, sampler) -> None:
    empty = torch.zeros(2, 16, 0, 8, 8)
    a = primed_rollout(model, _text(scenes), FadeMem(budget=4), empty, 12, steps=STEPS, seed=3, sampler=sampler)
    b = generate(model, _text(scenes), FadeMem(budget=4), 12, 64, 64, seed=3, sampler=sampler,
                 steps=even_timesteps(STEPS))
    torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_primed_rollout_equals_a_cache_free_reference(model, scenes) -> None:
    # the reference recomputes the whole history (prefix included) under the block-causal mask
    truth = torch.stack([world.render(s, 0, 9) for s in scenes])
    out = primed_rollout(model, _text(scenes), FullCache(), truth[:, :, :6], 12, steps=STEPS, seed=1)
    ref = reference_rollout(model, _text(scenes), 12, STEPS, seed=1, prefix=truth[:, :, :6])
    assert torch.equal(out[:, :, :6], truth[:, :, :6])
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=1e-4)
    assert (out[:, :, 6:] - truth[:, :, 6:12].mean()).abs().max() > 0.1  # it generated something


def test_the_prefix_conditions_the_generated_frames(model, scenes) -> None:
    truth = torch.stack([world.render(s, 0, 15) for s in scenes])
    other = truth.clone()
    other[:, :, :3] = torch.stack([world.render(world.sample_scene(99), 0, 3)] * 2)
    kw = dict(steps=STEPS, seed=2)
    a = primed_rollout(model, _text(scenes), FullCache(), truth[:, :, :12], 15, **kw)
    b = primed_rollout(model, _text(scenes), FullCache(), other[:, :, :12], 15, **kw)
    assert (a[:, :, 12:] - b[:, :, 12:]).abs().max() > 1e-3  # same noise, another memory


# every registered policy at its defaults, plus a FadeMem that merges within the prefix; the
# prefix outgrows the default budgets, so evictions, merges and scoring happen before the probe
PROBED = [cls() for cls in POLICIES.values()] + [FadeMem(budget=4, beta=0.3)]


@pytest.mark.parametrize("policy", PROBED, ids=[repr(p) for p in PROBED])
def test_a_probe_reads_the_prefix_memory_and_leaves_the_rollout_unchanged(model, scenes, policy) -> None:
    truth = torch.stack([world.render(s, 0, 30) for s in scenes])
    held = {}

    def probe(kv, cache):  # what the benchmark does: estimates of the next chunk, nothing written
        held["est"] = lookup.draw_estimates(model, kv, cache, 27, (2, 8, 8), draws=2, seed=5)

    kw = dict(steps=STEPS, seed=2)
    probed = primed_rollout(model, _text(scenes), policy, truth[:, :, :27], 30, probe=probe, **kw)
    plain = primed_rollout(model, _text(scenes), policy, truth[:, :, :27], 30, **kw)
    assert torch.equal(probed, plain)
    # the probe saw the memory a fresh commit of the same prefix builds
    alone = lookup.estimates_of(model, _text(scenes), policy, truth, 27, draws=2, seed=5)
    torch.testing.assert_close(held["est"], alone, atol=1e-5, rtol=1e-5)


def test_primed_rollout_validates_before_compute(model, scenes) -> None:
    text = _text(scenes)
    with pytest.raises(ValueError, match="multiple of 3"):
        primed_rollout(model, text, FullCache(), torch.zeros(2, 16, 4, 8, 8), 12)
    with pytest.raises(ValueError, match="prefix must be"):
        primed_rollout(model, text, FullCache(), torch.zeros(2, 8, 3, 8, 8), 12)
    with pytest.raises(ValueError, match="batch"):
        primed_rollout(model, text[:1], FullCache(), torch.zeros(2, 16, 3, 8, 8), 12)


# ----------------------------------------------------------------------------- render check
def test_the_world_passes_the_render_check_and_mush_fails_it() -> None:
    scenes = [world.sample_scene(i, family=0, classes=(1, 4)) for i in range(6)]
    truth = torch.stack([world.render(s, 0, 60) for s in scenes])
    ok = quality.check_rendering(truth, scenes, teacher_residual=1e-3)
    assert ok.passed and ok.residual < 1e-10 and ok.class_acc == 1.0
    assert ok.speed == pytest.approx(ok.world_speed) and ok.contrast == pytest.approx(ok.world_contrast)
    # grey mush (the posterior mean of every first chunk): no sprite, no contrast
    mush = truth.mean(dim=(0, 2), keepdim=True).expand_as(truth).clone()
    bad = quality.check_rendering(mush, scenes, teacher_residual=1e-3)
    assert not bad.verdicts["contrast"] and not bad.verdicts["class"] and not bad.passed
    assert not np.isfinite(bad.speed) and not bad.verdicts["speed"]  # no sprite to time
    assert "sprite speed - (no sprite fully in view two frames running)" in bad.lines()[2]
    assert "nan" not in " ".join(bad.lines()[2:])
    # a frozen video keeps contrast and class but has no sprite motion
    frozen = truth[:, :, :1].expand_as(truth).clone()
    still = quality.check_rendering(frozen, scenes, teacher_residual=1e-3)
    assert not still.verdicts["speed"] and not still.passed
    assert any("FAIL" in line for line in still.lines())


def test_teacher_forced_residual_is_the_models_one_step_error(model, scenes) -> None:
    r = quality.teacher_forced_residual(model, scenes, 6, STEPS, 5.0)
    assert np.isfinite(r) and r > 0  # an untrained model does not render the world
    with pytest.raises(ValueError, match="one scene per video"):
        quality.check_rendering(torch.zeros(3, 16, 6, 8, 8), scenes, r)


def test_teacher_forced_samples_commit_the_truth(model, scenes) -> None:
    out, truth = quality.teacher_forced_samples(model, scenes, 6, STEPS, 5.0)
    assert torch.equal(truth, torch.stack([world.render(s, 0, 6) for s in scenes]))
    assert out.shape == truth.shape and torch.isfinite(out).all()
    # the residual is the probes' mean over the sampled frames, nothing else
    want = np.mean([quality.read_frames(z).residual.mean() for z in out])
    assert quality.teacher_forced_residual(model, scenes, 6, STEPS, 5.0) == pytest.approx(want)


def test_one_step_errors_read_what_was_moved() -> None:
    scenes = [world.sample_scene(40 + i, num_sprites=2) for i in range(4)]
    truth = torch.stack([world.render(s, 0, 30) for s in scenes])
    exact = quality.one_step_errors(truth, truth)
    assert exact.sprite_dx == pytest.approx(0, abs=1e-5) and exact.detail == pytest.approx(0, abs=1e-5)
    assert exact.shift == pytest.approx(0, abs=1e-5) and exact.residual < 1e-9 and exact.sprite_frames > 20
    # the same scenes with every sprite 0.5 px further along and the drift 0.25 px off: read back
    moved = []
    for s in scenes:
        p = world.frame_params(s, 0, 30)
        p.pos[..., 0] += 0.5
        p.shift = np.mod(p.shift + 0.25, world.SIZE)
        moved.append(world.render_params(p))
    err = quality.one_step_errors(torch.stack(moved), truth)
    assert err.sprite_dx == pytest.approx(0.5, abs=1e-4) and err.shift == pytest.approx(0.25, abs=1e-4)
    assert err.detail == pytest.approx(0, abs=1e-4) and err.residual < 1e-9
    with pytest.raises(ValueError, match="must be equal"):
        quality.one_step_errors(truth[:, :, :6], truth)


def test_teacher_forced_few_step_chunks_are_generate_primed_with_the_truth(model, scenes) -> None:
    """Each chunk of the few-step teacher-forced samples is what ``generate`` makes next after
    the true frames before it (generate draws the same noise for a primed chunk as for a made one)."""
    out, truth = quality.teacher_forced_samples(model, scenes, 9, STEPS, 5.0, seed=4, sampler="few_step")
    text = _text(scenes)
    for k in range(3):
        want = generate(model, text, FullCache(), 3, 64, 64, seed=4, sampler="few_step",
                        steps=even_timesteps(STEPS), shift=5.0,
                        prefix=truth[:, :, :3 * k] if k else None)
        assert torch.allclose(out[:, :, 3 * k:3 * k + 3], want, atol=1e-6), k
    with pytest.raises(ValueError, match="sampler"):
        quality.teacher_forced_samples(model, scenes, 3, STEPS, 5.0, sampler="ddim")
