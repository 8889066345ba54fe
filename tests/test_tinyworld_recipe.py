"""The training recipe: every option validated on construction, its command reproduces it."""
from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest

from fademem_core.memory.policies import FadeMem, FullCache
from fademem_core.tinyworld.recipe import TRAIN_POLICIES, Recipe
from fademem_core.tinyworld.train import parse

PREFIX = ["python", "-m", "fademem_core.tinyworld.train"]


def _round_trip(recipe: Recipe, out: Path) -> tuple[Path, Recipe]:
    words = shlex.split(recipe.command(out))
    assert words[:3] == PREFIX
    return parse(words[3:])


@pytest.mark.parametrize("kw", [
    {},
    {"policy": "teacher_forcing", "window": 12, "memory_frames": 4, "corrupt": 0.5, "frames": 24},
    {"policy": "teacher_forcing", "window": 6, "frames": 30, "context_noise": 0.3},
    {"policy": "full", "own": 0.5, "lr": 3e-4, "ema_decay": 0.99, "seed": 7, "batch": 2},
    {"policy": "fademem", "own": 1.0, "context_noise": 0.0, "init": "INIT"},
    {"policy": "window", "frames": 12, "init": "INIT"},
    {"policy": "fademem", "frames": 12, "init": "INIT", "teacher": "TEACHER", "rollout": 60},
    {"policy": "teacher_forcing", "window": 3, "frames": 30, "texture_weight": 4.0, "first_window": 0.5},
    {"policy": "window", "frames": 12, "texture_weight": 2.5},
    {"policy": "full", "frames": 12, "init": "INIT", "teacher": "TEACHER", "rollout": 36, "first_window": 1.0},
    {"policy": "fademem", "own": 0.5, "first_steps": 0.25, "texture_weight": 4.0},
    {"policy": "teacher_forcing", "window": 6, "memory_frames": 12, "return_windows": 0.3, "first_window": 0.5},
    {"policy": "fademem", "own": 0.5, "return_windows": 0.5, "lr": 1e-4},
])
def test_the_command_parses_back_to_the_same_recipe(tmp_path, kw) -> None:
    for key, name in (("init", "base.safetensors"), ("teacher", "teacher.safetensors")):
        if kw.get(key) == key.upper():
            path = tmp_path / name
            path.write_bytes(b"")
            kw = {**kw, key: path}
    recipe = Recipe(episodes=3, threads=1, **kw)
    out, back = _round_trip(recipe, tmp_path / "w.safetensors")
    assert out == tmp_path / "w.safetensors" and back == recipe


def test_paths_with_spaces_are_quoted_and_run_back(tmp_path) -> None:
    init = tmp_path / "my weights" / "base model.safetensors"
    init.parent.mkdir()
    init.write_bytes(b"")
    recipe = Recipe(episodes=2, threads=1, policy="full", init=init)
    out, back = _round_trip(recipe, tmp_path / "out dir" / "w.safetensors")
    assert out == tmp_path / "out dir" / "w.safetensors" and back == recipe


def test_a_timed_recipe_is_fixed_before_its_command_is_written(tmp_path) -> None:
    timed = Recipe(minutes=5.0, batch=2)
    with pytest.raises(ValueError, match="episodes and threads"):
        timed.command(tmp_path / "w.safetensors")
    fixed = timed.fixed(episodes=12, threads=2)
    assert (fixed.episodes, fixed.minutes, fixed.threads, fixed.batch) == (12, None, 2, 2)
    _, back = _round_trip(fixed, tmp_path / "w.safetensors")
    assert back == fixed


def test_the_command_keeps_todays_flag_order_and_omits_the_default_context_noise() -> None:
    r = Recipe(episodes=20, threads=2, policy="fademem", lr=3e-4, own=0.5, init=None, frames=240)
    assert r.command(Path("w.safetensors")) == (
        "python -m fademem_core.tinyworld.train --out w.safetensors --episodes 20 --seed 0 --batch 16 "
        "--lr 0.0003 --policy fademem --frames 240 --threads 2 --ema 0.999 --own 0.5")
    tf = Recipe(episodes=1, threads=1, policy="teacher_forcing", window=12, memory_frames=8, corrupt=0.25,
                context_noise=0.2)
    assert tf.command(Path("w.safetensors")).endswith(
        "--ema 0.999 --window 12 --memory 8 --corrupt 0.25 --context-noise 0.2")


def test_the_training_record_holds_the_recipe() -> None:
    rec = Recipe(episodes=2, threads=1, policy="teacher_forcing", window=6, memory_frames=3, frames=30,
                 context_noise=0.25).training(steps=2, final_loss=0.5, seconds=1.0)
    assert (rec["clip_frames"], rec["window"], rec["memory_frames"], rec["episodes"], rec["steps"]) == (30, 6, 3, 2, 2)
    assert rec["context_noise"] == 0.25 and rec["threads"] == 1 and rec["init"] is None
    assert (rec["texture_weight"], rec["first_window"]) == (1.0, 0.25)
    assert rec["policy"] == "teacher_forcing (masked forward, no cache)"
    assert "first_steps" not in rec  # written only when taken: older records read the same
    mixed = Recipe(episodes=2, threads=1, first_steps=0.25)
    assert mixed.training(steps=160, final_loss=0.5, seconds=1.0)["first_steps"] == 0.25
    assert mixed.command(Path("w.safetensors")).endswith("--ema 0.999 --first-steps 0.25")
    assert "return_windows" not in rec
    at_returns = Recipe(episodes=2, threads=1, policy="teacher_forcing", window=6, memory_frames=8,
                        return_windows=0.3)
    assert at_returns.training(steps=2, final_loss=0.5, seconds=1.0)["return_windows"] == 0.3
    assert at_returns.command(Path("w.safetensors")).endswith("--window 6 --memory 8 --return-windows 0.3")


def test_the_texture_weight_is_the_loss_weight_of_the_texture_planes_only() -> None:
    base = Recipe(episodes=1).channel_weight()
    heavy = Recipe(episodes=1, texture_weight=4.0).channel_weight()
    assert base.tolist() == [1.0] * 6 + [4.0] * 10  # the shipped stages' weights, written out
    assert heavy.tolist() == [1.0] * 4 + [4.0] * 2 + [4.0] * 10


def test_the_memory_in_the_loop_is_the_named_policy() -> None:
    assert isinstance(Recipe(episodes=1).memory(), FullCache)
    ft = Recipe(episodes=1, policy="fademem").memory()
    assert isinstance(ft, FadeMem) and (ft.budget, ft.beta, ft.anchor) == (12, 0.3, True)
    assert Recipe(episodes=1, policy="teacher_forcing").memory() is None
    assert Recipe(episodes=1, policy="window").memory() is None
    assert set(TRAIN_POLICIES) == {"full", "fademem", "teacher_forcing", "window"}


def test_a_distilled_generator_records_the_few_step_sampler_it_is_trained_for(tmp_path) -> None:
    from fademem_core.tinyworld.distill import GEN_STEPS
    from fademem_core.tinyworld.spec import SAMPLER, SAMPLER_STEPS

    (tmp_path / "t.safetensors").write_bytes(b"")
    dmd = Recipe(episodes=1, threads=1, frames=12, init=tmp_path / "t.safetensors",
                 teacher=tmp_path / "t.safetensors", rollout=36)
    assert dmd.sampler() == {"name": "few_step", "steps": GEN_STEPS, "shift": 5.0}
    assert Recipe(episodes=1).sampler() == {"name": SAMPLER, "steps": SAMPLER_STEPS, "shift": 5.0}
    rec = dmd.training(steps=1, final_loss=0.1, seconds=1.0)
    assert (rec["teacher"], rec["rollout_frames"], rec["policy"]) == ("t.safetensors", 36, "FullCache(positions='absolute')")
    assert "teacher" not in Recipe(episodes=1).training(1, 0.1, 1.0)
    assert Recipe(episodes=1, policy="window").training(1, 0.1, 1.0)["policy"].startswith("window teacher")


TF = {"policy": "teacher_forcing"}


@pytest.mark.parametrize("kw,match", [
    ({"episodes": None}, r"give --episodes or --minutes"),
    ({"episodes": 0}, r"episodes must be >= 1, got 0"),
    ({"episodes": None, "minutes": -1}, r"minutes must be > 0, got -1"),
    ({"frames": 7}, r"frames must be a positive multiple of 3, got 7"),
    ({"frames": 0}, r"frames must be a positive multiple of 3, got 0"),
    ({"window": 7, "frames": 30, **TF}, r"window needs --policy teacher_forcing .* got 7"),
    ({"window": 33, "frames": 30, **TF}, r"window .*frames=30\], got 33"),
    ({"window": 6, "frames": 30}, r"window .* got 6 with policy 'full'"),
    ({"corrupt": 1.5, **TF}, r"corrupt must be in \[0, 1\] .* got 1.5"),
    ({"corrupt": 0.5}, r"corrupt .* with --policy teacher_forcing, got 0.5"),
    ({"own": -0.1}, r"own must be in \[0, 1\] .* got -0.1"),
    ({"own": 0.5, **TF}, r"own .*memory in the loop.* got 0.5"),
    ({"memory_frames": -1, "window": 6, "frames": 30, **TF}, r"memory frames must be >= 0 .* got -1"),
    ({"memory_frames": 3, **TF}, r"memory frames .* need a window, got 3"),
    ({"context_noise": 1.0}, r"context noise must be in \[0, 1\), got 1.0"),
    ({"context_noise": -0.1}, r"context noise must be in \[0, 1\), got -0.1"),
    ({"context_noise": float("nan")}, r"context noise must be in \[0, 1\), got nan"),
    ({"texture_weight": 0.0}, r"texture weight must be a finite number > 0, got 0.0"),
    ({"texture_weight": float("inf")}, r"texture weight must be a finite number > 0, got inf"),
    ({"first_window": 1.5, "window": 6, "frames": 30, **TF}, r"first window must be in \[0, 1\] .* got 1.5"),
    ({"first_window": 0.5}, r"first window .* with --window \(teacher forcing\) or --teacher \(DMD\), got 0.5"),
    ({"first_steps": 1.5}, r"first steps must be in \[0, 1\] .* got 1.5"),
    ({"first_steps": 0.25, **TF}, r"first steps .*memory in the loop.* got 0.25 with policy 'teacher_forcing'"),
    ({"first_steps": 0.25, "teacher": "T", "rollout": 36, "init": "T"}, r"first steps .*no --teacher.* got 0.25"),
    ({"return_windows": 0.3, **TF}, r"return windows must be in \[0, 1\] with --window .* got 0.3"),
    ({"return_windows": 0.3, "policy": "window", "frames": 12}, r"return windows .* got 0.3 with policy 'window'"),
    ({"return_windows": 0.5, "policy": "fademem", "frames": 132}, r"--frames >= 138 \+ window, got window 6, frames 132"),
    ({"return_windows": -0.1, "window": 6, **TF}, r"return windows must be in \[0, 1\] .* got -0.1"),
    ({"return_windows": 0.3, "window": 6, "frames": 30, **TF}, r"return windows need .* got window 6, frames 30"),
    ({"init": Path("/nonexistent/base.safetensors")}, r"init weights not found: '/nonexistent/base.safetensors'"),
    ({"policy": "sliding"}, r"policy must be one of .*, got 'sliding'"),
    ({"policy": "window", "own": 0.5}, r"--policy window .* takes no --window, --own or --teacher"),
    ({"teacher": "T"}, r"--teacher and --rollout go together, got teacher .*, rollout None"),
    ({"rollout": 36}, r"--teacher and --rollout go together, got teacher None, rollout 36"),
    ({"teacher": "T", "rollout": 36, "init": "T", **TF}, r"--teacher distils .* got policy 'teacher_forcing'"),
    ({"teacher": "T", "rollout": 36}, r"--teacher distils a trained generator \(--init\).* init None"),
    ({"teacher": "T", "rollout": 36, "init": "T", "own": 0.5}, r"--teacher distils .* own 0.5"),
    ({"teacher": "/nonexistent/t.safetensors", "rollout": 36, "init": "T"},
     r"teacher weights not found: '/nonexistent/t.safetensors'"),
    ({"teacher": "T", "rollout": 6, "init": "T", "frames": 12}, r"rollout must be a multiple of 3 in \[frames=12, 240\], got 6"),
    ({"teacher": "T", "rollout": 37, "init": "T", "frames": 12}, r"rollout must be .* got 37"),
    ({"teacher": "T", "rollout": 243, "init": "T", "frames": 12}, r"rollout must be .* got 243"),
])
def test_each_bad_option_is_named(tmp_path, kw, match) -> None:
    stand_in = tmp_path / "t.safetensors"  # "T": a weights file that exists
    stand_in.write_bytes(b"")
    kw = {k: stand_in if v == "T" else v for k, v in kw.items()}
    with pytest.raises(ValueError, match=match):
        Recipe(**{"episodes": 1, **kw})


def test_the_cli_validates_before_any_work(tmp_path) -> None:
    with pytest.raises(SystemExit):  # argparse: not a safetensors path
        parse(["--out", str(tmp_path / "w.pt"), "--episodes", "1"])
    with pytest.raises(ValueError, match="context noise"):
        parse(["--out", str(tmp_path / "w.safetensors"), "--episodes", "1", "--context-noise", "1.5"])
    assert parse(["--out", "w.safetensors", "--minutes", "2"])[1] == Recipe(minutes=2.0)
    assert not list(tmp_path.iterdir())


def _shipped_records() -> list[dict]:
    """Every record in the shipped weights' JSON files, the nested init records included."""
    from fademem_core.tinyworld import WEIGHTS, WEIGHTS_FT

    found = []
    for weights in (WEIGHTS, WEIGHTS_FT):
        rec = json.loads(Path(weights).with_suffix(".json").read_text(encoding="utf-8"))
        while rec:
            found.append(rec)
            rec = rec.get("init_record")
    return found


def test_the_shipped_commands_parse_and_are_written_back_word_for_word(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # the --init files named there, as empty stand-ins
    records = _shipped_records()
    assert len(records) >= 6
    for rec in records:
        words = shlex.split(rec["command"])
        if "--init" in words:
            init = tmp_path / words[words.index("--init") + 1]
            init.parent.mkdir(parents=True, exist_ok=True)
            init.touch()
        out, recipe = parse(words[3:])
        assert recipe.command(out) == rec["command"]
        ours = recipe.training(rec["training"]["steps"], 0.0, 0.0)
        assert set(rec["training"]) <= set(ours)  # early stages predate some options
        # not "init": a stage's record names its starting file as it was called then (renamed since)
        for key in ("clip_frames", "window", "memory_frames", "corrupt", "own_chunks", "episodes",
                    "batch", "lr", "seed", "ema", "context_noise", "threads", "policy", "texture_weight",
                    "first_window", "first_steps", "return_windows"):
            if key in rec["training"]:
                assert ours[key] == rec["training"][key], (key, rec["command"])
