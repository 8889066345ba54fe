"""Training from the command line: reproducible weights, the record and the reproducing command."""
from __future__ import annotations

import json
import shlex

import pytest
import torch
from safetensors.torch import load_file

from fademem_core.tinyworld import train as tw
from fademem_core.tinyworld.recipe import Recipe
from fademem_core.tinyworld.spec import MODEL_CONFIG, SAMPLER_STEPS, SHIFT


def test_train_writes_loadable_reproducible_weights(tmp_path) -> None:
    from fademem_core import load_model

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    info = tw.train(a, Recipe(episodes=1, batch=2, frames=6, threads=1))
    tw.train(b, Recipe(episodes=1, batch=2, frames=6, threads=1))
    wa, wb = load_file(a), load_file(b)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    rec = json.loads(a.with_suffix(".json").read_text())
    assert rec["training"]["episodes"] == 1 and rec["training"]["steps"] == 2
    assert rec["training"]["threads"] == 1 and rec["training"]["torch"] == torch.__version__
    assert "--episodes 1" in rec["command"] and "--threads 1" in rec["command"]
    assert "--context-noise" not in rec["command"] and rec["training"]["context_noise"] == 0.1
    assert rec["sampler"] == {"name": "euler", "steps": SAMPLER_STEPS, "shift": SHIFT}
    assert info["parameters"] == sum(t.numel() for t in wa.values())
    model = load_model(a, device="cpu", dtype=torch.float32)
    assert model.num_layers == MODEL_CONFIG["num_layers"]
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".tmp"]


def test_fine_tuning_starts_from_the_given_weights(tmp_path) -> None:
    base = tmp_path / "base.safetensors"
    tw.train(base, Recipe(episodes=1, batch=2, frames=6))
    ft = tmp_path / "ft.safetensors"
    tw.train(ft, Recipe(episodes=1, batch=2, frames=18, policy="fademem", init=base, lr=1e-4))
    rec = json.loads(ft.with_suffix(".json").read_text())
    assert "FadeMem(budget=12, beta=0.3, anchor=True" in rec["training"]["policy"]
    assert f"--init {base}" in rec["command"] and "--policy fademem" in rec["command"]
    assert rec["init_record"]["command"] == json.loads(base.with_suffix(".json").read_text())["command"]
    wb, wf = load_file(base), load_file(ft)
    # a small step away from the base (lr 1e-4, 6 steps), not a fresh initialisation
    w = "blocks.0.attn1.to_q.weight"
    assert 0 < float((wf[w] - wb[w]).abs().max()) < 0.05


def test_the_start_record_is_kept_when_there_is_one_and_a_broken_one_stops_the_run(tmp_path) -> None:
    base = tmp_path / "base.safetensors"
    tw.train(base, Recipe(episodes=1, batch=2, frames=6))
    base.with_suffix(".json").unlink()  # weights without a record: trained on, no history
    ft = tmp_path / "ft.safetensors"
    tw.train(ft, Recipe(episodes=1, batch=2, frames=6, init=base, lr=1e-4))
    rec = json.loads(ft.with_suffix(".json").read_text())
    assert rec["init_record"] is None and f"--init {base}" in rec["command"]
    base.with_suffix(".json").write_text("[1, 2]")  # refused when the start is loaded, before training
    again = tmp_path / "again.safetensors"
    with pytest.raises(ValueError, match="expected a JSON object"):
        tw.train(again, Recipe(episodes=1, batch=2, frames=6, init=base, lr=1e-4))
    assert not again.exists()


def test_bad_arguments_write_nothing(tmp_path) -> None:
    with pytest.raises(SystemExit):
        tw.main(["--out", str(tmp_path / "w.pt"), "--episodes", "1"])
    with pytest.raises(ValueError, match="frames"):
        tw.main(["--out", str(tmp_path / "w.safetensors"), "--episodes", "1", "--frames", "7"])
    assert not list(tmp_path.iterdir())


def test_cli_main_runs(tmp_path, capsys) -> None:
    out = tmp_path / "cli.safetensors"
    assert tw.main(["--out", str(out), "--episodes", "1", "--batch", "1", "--frames", "3"]) == 0
    assert out.is_file() and '"episodes": 1' in capsys.readouterr().out


def test_the_recorded_command_reruns_the_same_weights(tmp_path) -> None:
    out = tmp_path / "w.safetensors"
    info = tw.train(out, Recipe(episodes=2, batch=2, frames=30, window=6, memory_frames=4,
                                policy="teacher_forcing", threads=1, context_noise=0.3))
    assert info["training"]["window"] == 6 and info["training"]["memory_frames"] == 4
    assert info["training"]["context_noise"] == 0.3
    assert "--window 6 --memory 4" in info["command"] and "--context-noise 0.3" in info["command"]
    again = tmp_path / "again.safetensors"
    words = shlex.split(info["command"].replace(str(out), str(again)))
    assert tw.main(words[3:]) == 0
    wa, wb = load_file(out), load_file(again)
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    rerun = json.loads(again.with_suffix(".json").read_text())["training"]
    assert {k: v for k, v in rerun.items() if k != "seconds"} == \
        {k: v for k, v in info["training"].items() if k != "seconds"}
