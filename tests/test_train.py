"""Training through the engine with the memory in the loop: runs, learns, reproduces, validates."""
from __future__ import annotations

import json

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
