"""DMD in the small: the window teacher, the generator's own rollout and the distribution-matching step."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fademem_core import FadeMem, FullCache, generate
from fademem_core.model.causal_wan import CausalWan, forward_masked, text_kv
from fademem_core.rollout.sampler import even_timesteps
from fademem_core.tinyworld import distill, world
from fademem_core.tinyworld.losses import channel_weight, noise_levels
from fademem_core.tinyworld.spec import init_transformer


@pytest.fixture(scope="module")
def model(world_model) -> CausalWan:
    return world_model


def _text(n: int, seed: int = 0) -> torch.Tensor:
    return torch.cat([world.scene_prompt(world.sample_scene(seed + i), 32) for i in range(n)])


class _Exit:
    """A numpy-like generator whose every integer draw is ``value`` (the exit step)."""

    def __init__(self, value: int) -> None:
        self.value = value

    def integers(self, *args, **kwargs) -> int:
        return self.value


def test_true_windows_are_renders_of_the_drawn_scenes() -> None:
    clips, text = distill.true_windows(np.random.default_rng(3), 4, 12, 32)
    rng = np.random.default_rng(3)  # the same draws, written out
    scenes = [world.sample_scene(rng) for _ in range(4)]
    starts = rng.integers(0, 240 - 12 + 1, size=4)
    assert torch.equal(clips, torch.stack([world.render(s, int(t), 12) for s, t in zip(scenes, starts)]))
    assert torch.equal(text, torch.cat([world.scene_prompt(s, 32) for s in scenes]))


def test_the_window_model_sees_every_frame(model) -> None:
    """Bidirectional: the first frame's output depends on the last frame (a causal model's would not)."""
    tr, text = model.transformer, _text(1)
    x = torch.randn(1, 16, 6, 8, 8, generator=torch.Generator().manual_seed(0))
    y = x.clone()
    y[:, :, -1] += 1.0
    sig = torch.tensor([0.5])
    with torch.no_grad():
        a, b = distill.window_velocity(tr, x, sig, text), distill.window_velocity(tr, y, sig, text)
    assert not torch.allclose(a[:, :, 0], b[:, :, 0])


@pytest.mark.parametrize("texture", [None, 3.0])
def test_window_loss_is_the_weighted_flow_matching_formula(model, texture) -> None:
    tr, text = model.transformer, _text(2)
    clean = torch.stack([world.render(world.sample_scene(i), 5, 6) for i in range(2)])
    # written out: layout 1, texture 1 (or the run's texture weight), sprites 4
    weight = torch.tensor([1.0] * 4 + [1.0 if texture is None else texture] * 2 + [4.0] * 10)
    with torch.no_grad():
        extra = () if texture is None else (channel_weight(texture),)
        got = distill.window_loss(tr, clean, text, torch.Generator().manual_seed(7), *extra)
        g = torch.Generator().manual_seed(7)  # written out: one sigma per window, velocity target
        sig = noise_levels(g, 2)
        noise = torch.randn(clean.shape, generator=g)
        s = sig[:, None, None, None, None]
        xt = (1 - s) * clean + s * noise
        ones = torch.ones(6, 6, dtype=torch.bool)
        v = forward_masked(tr, xt, sig[:, None].expand(2, 6) * 1000.0, text_kv(tr, text), list(range(6)), ones)
        per_channel = ((v - (noise - clean)) ** 2).mean(dim=(0, 2, 3, 4))
        want = (per_channel * weight).sum() / weight.sum()
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("policy", [FullCache(), FadeMem(budget=4, beta=0.3)], ids=["full", "fademem"])
def test_a_rollout_exiting_at_the_last_step_is_the_few_step_sampler(model, policy) -> None:
    """With every chunk run to the end, the rollout is ``generate(sampler="few_step")``: the
    same noise draws, the same memory (checked against the engine's sampler)."""
    text = _text(2)
    with torch.no_grad():
        got = distill.self_forcing_rollout(model, text, policy, 4, 4, torch.Generator().manual_seed(5),
                                           _Exit(distill.GEN_STEPS - 1))
        want = generate(model, text, policy, 12, 64, 64, seed=5, sampler="few_step",
                        steps=even_timesteps(distill.GEN_STEPS), shift=5.0)
    assert torch.allclose(got, want, atol=1e-6)
    with torch.no_grad():  # only the last chunks come back
        tail = distill.self_forcing_rollout(model, text, policy, 4, 1, torch.Generator().manual_seed(5),
                                            _Exit(distill.GEN_STEPS - 1))
    assert torch.allclose(tail, want[:, :, 9:], atol=1e-6)


def test_a_chunk_exiting_at_step_one_is_a_one_step_sample(model) -> None:
    text = _text(1)
    with torch.no_grad():
        got = distill.self_forcing_rollout(model, text, FullCache(), 3, 3, torch.Generator().manual_seed(2), _Exit(0))
        want = generate(model, text, FullCache(), 9, 64, 64, seed=2, sampler="few_step", steps=[1000.0], shift=5.0)
    assert torch.allclose(got, want, atol=1e-6)


def test_only_the_returned_chunks_carry_a_graph(model) -> None:
    tr = model.transformer
    tr.requires_grad_(True)
    try:
        rng = np.random.default_rng(0)
        out = distill.self_forcing_rollout(model, _text(1), FullCache(), 3, 1, torch.Generator().manual_seed(0), rng)
        assert out.shape == (1, 16, 3, 8, 8) and out.requires_grad
        out.sum().backward()
        assert tr.proj_out.weight.grad is not None and float(tr.proj_out.weight.grad.abs().sum()) > 0
        with torch.no_grad():
            assert not distill.self_forcing_rollout(model, _text(1), FullCache(), 3, 1,
                                                    torch.Generator().manual_seed(0), rng).requires_grad
    finally:
        tr.requires_grad_(False)
        tr.zero_grad(set_to_none=True)
    with pytest.raises(ValueError, match="grad_chunks"):
        distill.self_forcing_rollout(model, _text(1), FullCache(), 2, 3, torch.Generator(), rng)


def test_dmd_step_is_critic_minus_teacher_over_the_normaliser(model) -> None:
    teacher = model.transformer
    critic = init_transformer(1).requires_grad_(False)
    text = _text(2)
    frames = torch.randn(2, 16, 6, 8, 8, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    distill.dmd_loss(frames, text, teacher, critic, torch.Generator().manual_seed(4)).backward()
    g = torch.Generator().manual_seed(4)  # written out: DMD's gradient with respect to the frames
    lo, hi = distill.DMD_SIGMA
    sig = lo + (hi - lo) * torch.rand(2, generator=g)
    s = sig[:, None, None, None, None]
    xt = (1 - s) * frames.detach() + s * torch.randn(frames.shape, generator=g)
    ones, ts = torch.ones(6, 6, dtype=torch.bool), sig[:, None].expand(2, 6) * 1000.0
    with torch.no_grad():
        real = xt - s * forward_masked(teacher, xt, ts, text_kv(teacher, text), list(range(6)), ones)
        fake = xt - s * forward_masked(critic, xt, ts, text_kv(critic, text), list(range(6)), ones)
    norm = (frames.detach() - real).abs().mean(dim=(1, 2, 3, 4), keepdim=True)
    assert torch.allclose(frames.grad, (fake - real) / norm / frames.numel(), rtol=1e-4, atol=1e-9)


def test_a_critic_equal_to_the_teacher_gives_no_step(model) -> None:
    frames = torch.randn(1, 16, 3, 8, 8, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    loss = distill.dmd_loss(frames, _text(1), model.transformer, model.transformer, torch.Generator())
    loss.backward()
    assert float(loss.detach()) == 0.0 and float(frames.grad.abs().max()) == 0.0


def test_teacher_then_distilled_generator_train_reproducibly(tmp_path) -> None:
    from safetensors.torch import load_file

    from fademem_core import load_model
    from fademem_core.tinyworld import train as tw
    from fademem_core.tinyworld.recipe import Recipe

    base, teacher = tmp_path / "base.safetensors", tmp_path / "teacher.safetensors"
    tw.train(base, Recipe(episodes=1, batch=2, frames=6, threads=1))
    rec = tw.train(teacher, Recipe(episodes=2, batch=2, frames=6, threads=1, policy="window", init=base))
    assert rec["training"]["policy"].startswith("window teacher") and "--policy window" in rec["command"]
    assert rec["what"].startswith("DMD's teacher")
    runs = []
    for name in ("a", "b"):
        out = tmp_path / f"{name}.safetensors"
        info = tw.train(out, Recipe(episodes=4, batch=2, frames=6, threads=1, lr=1e-4, init=base,
                                    policy="fademem", teacher=teacher, rollout=12))
        runs.append(load_file(out))
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    assert info["sampler"] == {"name": "few_step", "steps": distill.GEN_STEPS, "shift": 5.0}
    assert info["training"]["teacher"] == "teacher.safetensors" and info["training"]["rollout_frames"] == 12
    assert info["training"]["steps"] == 2  # every second iteration moves the generator
    assert f"--teacher {teacher} --rollout 12" in info["command"]
    w = "blocks.0.attn1.to_q.weight"
    assert float((runs[0][w] - load_file(base)[w]).abs().max()) > 0  # the generator moved
    recorded = json.loads((tmp_path / "a.json").read_text())["sampler"]
    assert load_model(tmp_path / "a.safetensors").sampler_record.name == recorded["name"] == "few_step"


def test_a_distillation_too_short_to_step_the_generator_records_no_loss(tmp_path) -> None:
    """One episode is a critic step only: the generator is saved unchanged, the record says so."""
    from safetensors.torch import load_file

    from fademem_core.tinyworld import train as tw
    from fademem_core.tinyworld.recipe import Recipe

    base, teacher, out = (tmp_path / f"{n}.safetensors" for n in ("base", "teacher", "out"))
    tw.train(base, Recipe(episodes=1, batch=1, frames=3, threads=1))
    tw.train(teacher, Recipe(episodes=1, batch=1, frames=3, threads=1, policy="window"))
    info = tw.train(out, Recipe(episodes=1, batch=1, frames=3, threads=1, init=base, teacher=teacher, rollout=3))
    assert info["training"]["steps"] == 0 and info["training"]["final_loss"] is None
    assert json.loads(out.with_suffix(".json").read_text())["training"]["final_loss"] is None
    wb, wo = load_file(base), load_file(out)
    assert all(torch.equal(wb[k], wo[k]) for k in wb)


@pytest.mark.parametrize("first", [None, 0.6])
def test_a_share_of_rollouts_are_the_first_window_the_rest_uniform(first) -> None:
    """The first chunk (from the prompt alone) is graded in a share ``first`` of the rollouts
    (default a quarter) plus its uniform share: 4 to 24 chunks is 21 lengths, so
    first + (1 - first) / 21 of draws are 4."""
    from fademem_core.tinyworld.loop import rollout_chunks

    rng = np.random.default_rng(0)
    n = 20000
    draws = np.array([rollout_chunks(rng, 12, 72, *(() if first is None else (first,))) for _ in range(n)])
    assert draws.min() == 4 and draws.max() == 24
    share = 0.25 if first is None else first
    want = share + (1 - share) / 21
    assert abs(np.mean(draws == 4) - want) < 4 * np.sqrt(want * (1 - want) / n)
    later = draws[draws > 4]  # the rest: uniform over 5 .. 24
    counts = np.bincount(later, minlength=25)[5:]
    assert counts.min() > 0.8 * counts.mean() and counts.max() < 1.2 * counts.mean()
    assert rollout_chunks(rng, 12, 12) == 4  # a rollout no longer than the window is the window
