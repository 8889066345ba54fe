"""The tiny-world training script: runs, is reproducible, writes loadable weights."""
from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from fademem_core.tinyworld import train as tw


def test_sampler_sigmas_are_the_shifted_schedule() -> None:
    # direct formula: s*t / (1 + (s-1)*t) with t = timestep / 1000, s = 5
    want = [5 * t / (1 + 4 * t) for t in (1.0, 0.75, 0.5, 0.25)]
    assert tw.sampler_sigmas().tolist() == pytest.approx(want)
    assert tw.sampler_sigmas().tolist() == pytest.approx([1.0, 0.9375, 0.833333, 0.625], abs=1e-6)


def test_training_inputs_follow_the_flow_convention() -> None:
    x0 = torch.randn(2, 16, 9, 8, 8)
    gen = torch.Generator().manual_seed(0)
    x, ts, target = tw.training_step_inputs(x0, gen)
    f = 9
    assert x.shape == (2, 16, 18, 8, 8) and ts.shape == (2, 18)
    sig = ts[:, f:] / 1000
    # one sigma per chunk of 3 frames
    assert torch.equal(sig[:, 0::3], sig[:, 1::3]) and torch.equal(sig[:, 0::3], sig[:, 2::3])
    assert bool((ts[:, :f] <= 120 + 1e-4).all()) and bool((ts[:, :f] >= 0).all())
    s = sig[:, None, :, None, None]
    noise = (x[:, :, f:] - (1 - s) * x0) / s
    torch.testing.assert_close(target, noise - x0, atol=1e-4, rtol=1e-4)
    # the model target recovers x0 through the sampler's update x0 = x - sigma * v
    torch.testing.assert_close(x[:, :, f:] - s * target, x0, atol=1e-5, rtol=1e-5)


def test_train_runs_a_few_steps_and_writes_loadable_weights(tmp_path) -> None:
    from fademem_core import load_model

    out = tmp_path / "w.safetensors"
    info = tw.train(out, steps=3, batch=2, log_every=1)
    assert out.is_file() and out.with_suffix(".json").is_file()
    rec = json.loads(out.with_suffix(".json").read_text())
    assert rec["training"]["steps"] == 3 and rec["training"]["seed"] == 0
    assert "--steps 3" in rec["command"] and rec["config"] == tw.MODEL_CONFIG
    assert info["parameters"] == sum(t.numel() for t in load_file(out).values())
    model = load_model(out, device="cpu", dtype=torch.float32)
    assert model.num_layers == tw.MODEL_CONFIG["num_layers"] and model.heads == tw.MODEL_CONFIG["num_attention_heads"]
    # training moved the weights away from the seeded initialisation, text path included
    init = tw.init_transformer(0).state_dict()
    trained = load_file(out)
    for name in ("condition_embedder.text_embedder.linear_1.weight", "blocks.0.attn1.to_q.weight", "proj_out.weight"):
        assert not torch.equal(init[name], trained[name]), name
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_training_is_reproducible(tmp_path) -> None:
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    tw.train(a, steps=2, batch=2)
    tw.train(b, steps=2, batch=2)
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_cli_validates_arguments(tmp_path) -> None:
    with pytest.raises(SystemExit):
        tw.main(["--out", str(tmp_path / "w.pt"), "--steps", "1"])
    with pytest.raises(ValueError, match="steps"):
        tw.train(tmp_path / "w.safetensors", steps=0)
    with pytest.raises(ValueError, match="minutes"):
        tw.train(tmp_path / "w.safetensors", minutes=-1)
    with pytest.raises(ValueError, match="--steps or --minutes"):
        tw.train(tmp_path / "w.safetensors")


def test_cli_main_runs(tmp_path, capsys) -> None:
    out = tmp_path / "cli.safetensors"
    assert tw.main(["--out", str(out), "--steps", "1", "--batch", "1"]) == 0
    assert out.is_file()
    assert '"steps": 1' in capsys.readouterr().out
