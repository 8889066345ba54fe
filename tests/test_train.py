"""Training through the engine with the memory in the loop: runs, learns, reproduces, validates."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from fademem_core.memory.policies import FadeMem, FullCache
from fademem_core.tinyworld import train as tw


def test_noise_levels_follow_the_shifted_uniform_law() -> None:
    gen = torch.Generator().manual_seed(0)
    sig = tw.noise_levels(gen, 20000).double()
    assert float(sig.min()) >= 1e-3 and float(sig.max()) <= 1.0
    # the 75 % shifted share: P(sigma <= warp(0.5)) = P(u <= 0.5) = 0.5 for that share, and for
    # the uniform share P(sigma <= 5/6) = 5/6: 0.75 * 0.5 + 0.25 * 5/6
    cut = float(tw.warp(0.5))
    assert cut == pytest.approx(5 * 0.5 / (1 + 4 * 0.5))
    assert float((sig <= cut).double().mean()) == pytest.approx(0.75 * 0.5 + 0.25 * cut, abs=0.015)


@pytest.mark.parametrize("policy", [FullCache(), FadeMem(budget=3, beta=0.3)])
def test_episode_trains_every_chunk_against_the_memory(policy) -> None:
    model = tw._start_model(None, 0)
    ema = tw.Ema(model.transformer, 0.9)
    opt = torch.optim.AdamW(model.transformer.parameters(), lr=1e-3)
    clips, text = tw.make_episode(np.random.default_rng(0), 2, 15, model.text_dim)
    before = {k: v.clone() for k, v in model.transformer.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    losses = tw.walk_episode(model, ema, opt, clips, text, policy, gen, lambda step: 1e-3)
    assert len(losses) == 5 and all(np.isfinite(losses))  # one step per chunk of 3
    after = model.transformer.state_dict()
    for name in ("condition_embedder.text_embedder.linear_1.weight", "blocks.0.attn1.to_k.weight",
                 "blocks.3.attn1.to_v.weight", "proj_out.weight"):
        assert not torch.equal(before[name], after[name]), name  # text and memory paths train
    assert ema.steps == 5


def test_training_lowers_the_loss_on_a_fixed_episode() -> None:
    model = tw._start_model(None, 0)
    ema = tw.Ema(model.transformer, 0.9)
    opt = torch.optim.AdamW(model.transformer.parameters(), lr=3e-3)
    clips, text = tw.make_episode(np.random.default_rng(1), 4, 9, model.text_dim)
    first = last = None
    for i in range(8):
        gen = torch.Generator().manual_seed(0)  # the same noise every pass
        losses = tw.walk_episode(model, ema, opt, clips, text, FullCache(), gen, lambda step: 3e-3)
        first = np.mean(losses) if first is None else first
        last = np.mean(losses)
    assert last < 0.7 * first, (first, last)


def test_train_writes_loadable_reproducible_weights(tmp_path) -> None:
    from fademem_core import load_model

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    info = tw.train(a, episodes=1, batch=2, frames=6, threads=1)
    tw.train(b, episodes=1, batch=2, frames=6, threads=1)
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    rec = json.loads(a.with_suffix(".json").read_text())
    assert rec["training"]["episodes"] == 1 and rec["training"]["steps"] == 2
    assert rec["training"]["threads"] == 1 and rec["training"]["torch"] == torch.__version__
    assert "--episodes 1" in rec["command"] and "--threads 1" in rec["command"]
    assert rec["sampler"] == {"name": "euler", "steps": tw.SAMPLER_STEPS, "shift": tw.SHIFT}
    assert info["parameters"] == sum(t.numel() for t in wa.values())
    model = load_model(a, device="cpu", dtype=torch.float32)
    assert model.num_layers == tw.MODEL_CONFIG["num_layers"]
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_fine_tuning_starts_from_the_given_weights(tmp_path) -> None:
    base = tmp_path / "base.safetensors"
    tw.train(base, episodes=1, batch=2, frames=6)
    ft = tmp_path / "ft.safetensors"
    tw.train(ft, episodes=1, batch=2, frames=18, policy="fademem", init=base, lr=1e-4)
    rec = json.loads(ft.with_suffix(".json").read_text())
    assert "FadeMem(budget=12, beta=0.3, anchor=True" in rec["training"]["policy"]
    assert f"--init {base}" in rec["command"] and "--policy fademem" in rec["command"]
    wb, wf = load_file(base), load_file(ft)
    # a small step away from the base (lr 1e-4, 6 steps), not a fresh initialisation
    w = "blocks.0.attn1.to_q.weight"
    assert 0 < float((wf[w] - wb[w]).abs().max()) < 0.05


def test_arguments_are_validated(tmp_path) -> None:
    with pytest.raises(SystemExit):
        tw.main(["--out", str(tmp_path / "w.pt"), "--episodes", "1"])
    with pytest.raises(ValueError, match="episodes"):
        tw.train(tmp_path / "w.safetensors", episodes=0)
    with pytest.raises(ValueError, match="minutes"):
        tw.train(tmp_path / "w.safetensors", minutes=-1)
    with pytest.raises(ValueError, match="--episodes or --minutes"):
        tw.train(tmp_path / "w.safetensors")
    with pytest.raises(ValueError, match="frames"):
        tw.train(tmp_path / "w.safetensors", episodes=1, frames=7)
    with pytest.raises(ValueError, match="policy"):
        tw.train(tmp_path / "w.safetensors", episodes=1, policy="sliding")
    with pytest.raises(ValueError, match="init"):
        tw.train(tmp_path / "w.safetensors", episodes=1, init=tmp_path / "missing.safetensors")
    assert not list(tmp_path.iterdir())


def test_cli_main_runs(tmp_path, capsys) -> None:
    out = tmp_path / "cli.safetensors"
    assert tw.main(["--out", str(out), "--episodes", "1", "--batch", "1", "--frames", "3"]) == 0
    assert out.is_file() and '"episodes": 1' in capsys.readouterr().out


def test_memory_window_draws_sorted_frames_before_the_window() -> None:
    rng = np.random.default_rng(0)
    starts = []
    for _ in range(400):
        start, past = tw.memory_window(rng, 240, 12, 8)
        starts.append(start)
        assert start % tw.CHUNK == 0 and 0 <= start <= 228
        assert past == sorted(set(past)) and len(past) == min(8, start)
        assert all(0 <= p < start for p in past)
    share0 = np.mean(np.array(starts) == 0)
    assert 0.18 < share0 < 0.33  # a quarter of the windows train the first chunk (plus 1/77 draws)
    assert max(starts) > 200


def test_windowed_loss_sees_its_memory() -> None:
    model = tw._start_model(None, 0)
    with torch.no_grad():  # move off the zero-initialised output layers so outputs differ
        for p in model.transformer.parameters():
            p.add_(0.05 * torch.randn_like(p))
    clips, text = tw.make_episode(np.random.default_rng(2), 2, 30, model.text_dim)
    window, past = clips[:, :, 21:27], [2, 9, 14]

    def loss(mem: torch.Tensor, win: torch.Tensor) -> float:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            return float(tw.teacher_forcing_loss(model, win, text, gen, mem, 21, past))

    base = loss(clips[:, :, past], window)
    assert np.isfinite(base)
    assert loss(clips[:, :, past] + 0.5, window) != pytest.approx(base, rel=1e-4)  # memory seen
    with pytest.raises(ValueError, match="memory positions"):
        tw.teacher_forcing_loss(model, window, text, torch.Generator(), clips[:, :, past], 21, [2, 9])


def test_windowed_training_records_its_recipe(tmp_path) -> None:
    out = tmp_path / "w.safetensors"
    info = tw.train(out, episodes=2, batch=2, frames=30, window=6, memory=4, policy="teacher_forcing", threads=1)
    assert info["training"]["window"] == 6 and info["training"]["memory_frames"] == 4
    assert "--window 6 --memory 4" in info["command"]
    with pytest.raises(ValueError, match="window"):
        tw.train(tmp_path / "x.safetensors", episodes=1, frames=30, window=7, policy="teacher_forcing")
    with pytest.raises(ValueError, match="window"):
        tw.train(tmp_path / "x.safetensors", episodes=1, frames=30, window=6, policy="full")
    with pytest.raises(ValueError, match="memory"):
        tw.train(tmp_path / "x.safetensors", episodes=1, frames=30, memory=3, policy="teacher_forcing")


def test_corrupted_context_changes_what_later_chunks_see_not_the_targets() -> None:
    model = tw._start_model(None, 0)
    with torch.no_grad():
        for p in model.transformer.parameters():
            p.add_(0.05 * torch.randn_like(p))
    clips, text = tw.make_episode(np.random.default_rng(3), 2, 9, model.text_dim)

    def loss(**kw) -> float:
        with torch.no_grad():
            return float(tw.teacher_forcing_loss(model, clips, text, torch.Generator().manual_seed(0), **kw))

    plain = loss()
    assert loss(corrupt=0.0) == plain  # no extra random draws when off
    assert loss(corrupt=1.0) != pytest.approx(plain, rel=1e-4)
    with pytest.raises(ValueError, match="corrupt"):
        tw.train(Path("/nonexistent/w.safetensors"), episodes=1, frames=9, corrupt=1.5, policy="teacher_forcing")
    with pytest.raises(ValueError, match="corrupt"):
        tw.train(Path("/nonexistent/w.safetensors"), episodes=1, frames=9, corrupt=0.5, policy="full")


@pytest.mark.parametrize("own", [0.0, 1.0])
def test_own_chunks_are_what_the_walk_commits(monkeypatch, own) -> None:
    model = tw._start_model(None, 0)
    ema = tw.Ema(model.transformer, 0.9)
    opt = torch.optim.AdamW(model.transformer.parameters(), lr=1e-3)
    clips, text = tw.make_episode(np.random.default_rng(4), 2, 9, model.text_dim)
    sampled, committed = [], []
    real_own, real_commit = tw.own_chunk, tw.commit_chunk

    def spy_own(*a):
        out = real_own(*a)
        sampled.append(out)
        return out

    def spy_commit(model_, clip, *a):
        committed.append(clip)
        return real_commit(model_, clip, *a)

    monkeypatch.setattr(tw, "own_chunk", spy_own)
    monkeypatch.setattr(tw, "commit_chunk", spy_commit)
    losses = tw.walk_episode(model, ema, opt, clips, text, FullCache(), torch.Generator().manual_seed(0),
                             lambda step: 1e-3, own=own)
    assert len(losses) == 3 and len(committed) == 3
    if own:
        assert len(sampled) == 3 and all(c is s for c, s in zip(committed, sampled))
        assert all(not torch.equal(c, clips[:, :, 3 * i:3 * i + 3]) for i, c in enumerate(committed))
    else:
        assert not sampled
        assert all(torch.equal(c, clips[:, :, 3 * i:3 * i + 3]) for i, c in enumerate(committed))
    with pytest.raises(ValueError, match="own"):
        tw.train(Path("/nonexistent/w.safetensors"), episodes=1, frames=9, own=0.5, policy="teacher_forcing")
