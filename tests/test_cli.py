"""The command line: plan, demo, generate end to end on tiny components, and bad input."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fademem_core.cli import main
from fademem_core.cli.common import Progress
from fademem_core.memory.planner import plan_layout
from fademem_core.rollout.video import read_video_info
from tests.support.pack import ROOT


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def gen_args(ckpt: Path, wan: Path, *extra: str) -> list[str]:
    return ["generate", "--checkpoint", ckpt, "--wan-dir", wan, "--height", "32", "--width", "48",
            *extra]


def no_partial_files(folder: Path) -> bool:
    return not any(p.name.endswith(".partial.mp4") for p in folder.rglob("*"))


# ----------------------------------------------------------------------------- plan
def test_plan_prints_the_planner_layout(capsys, tmp_path):
    pic = tmp_path / "layout.png"
    code, out, _ = run_cli(capsys, "plan", "--frames", 240, "--budget", 12, "--beta", 0.3,
                           "--picture", pic)
    assert code == 0
    lines = out.splitlines()
    head = lines.index(next(line for line in lines if line.lstrip().startswith("entry")))
    rows = [line.split() for line in lines[head + 1: head + 13]]
    expected = plan_layout(240, 12, 0.3)
    assert [(float(r[1]), int(r[2])) for r in rows] == [(round(m, 2), s) for m, s in expected]
    assert rows[-1][3] == "239"  # the newest frame is exact
    assert "FadeMem (budget 12 + chunk 3)" in out
    # 15 FadeMem slots of K, V and the 44 un-roped temporal channels (2*128 + 44 per head) vs
    # 240 full-cache frames of K and V only (2*128): 240*256 / (15*300) = 13.65
    assert "(13.7x)" in out
    from PIL import Image
    with Image.open(pic) as im:
        assert im.format == "PNG" and im.size[0] > 100


def test_plan_seconds_matches_frames(capsys):
    _, by_seconds, _ = run_cli(capsys, "plan", "--seconds", 60)
    _, by_frames, _ = run_cli(capsys, "plan", "--frames", 240)
    assert by_seconds == by_frames  # 60 s at 16 fps = 957 frames = 240 latent frames


# ----------------------------------------------------------------------------- bad input
def bad_cases(tmp: Path, ckpt: Path, wan: Path) -> list[list]:
    blocker = tmp / "a_file"
    blocker.write_text("x")
    return [
        ["plan", "--frames", "abc"],
        ["plan", "--frames", "-3"],
        ["plan", "--beta", "0"],
        ["plan", "--beta", "nan"],
        ["plan", "--budget", "2"],
        ["plan", "--picture", blocker / "x.png"],
        ["plan", "--picture", tmp / "x.jpg"],
        ["demo", "--out-dir", blocker],
        ["demo", "--frames", "two"],
        ["demo", "--weights", tmp / "missing.safetensors"],
        gen_args(tmp / "missing.safetensors", wan, "--prompt", "a fox"),
        gen_args(ckpt, tmp / "no_wan", "--prompt", "a fox"),
        gen_args(ckpt, tmp, "--prompt", "a fox"),  # a folder without text_encoder/ ...
        gen_args(ckpt, wan, "--prompt", "a fox", "--frames", "0"),
        gen_args(ckpt, wan, "--prompt", "a fox", "--frames", "2"),  # less than a chunk
        gen_args(ckpt, wan, "--prompt", "a fox", "--seconds", "-1"),
        gen_args(ckpt, wan, "--prompt", "a fox", "--height", "30"),
        gen_args(ckpt, wan, "--prompt", "a fox", "--out", blocker / "v.mp4"),
        gen_args(ckpt, wan, "--prompt", "a fox", "--out", tmp / "v.avi"),
        gen_args(ckpt, wan, "--prompt", "a fox", "--steps", "250,500"),
        gen_args(ckpt, wan, "--prompt", "a fox", "--policy", "sliding_window", "--window", "2"),
        gen_args(ckpt, wan, "--prompt", "a fox", "--lora", tmp / "nope.pt"),
        gen_args(ckpt, wan, "--prompt-file", tmp / "nope.txt"),
        gen_args(ckpt, wan, "--prompt", "a", "--prompt-file", tmp / "nope.txt"),
        gen_args(ckpt, wan),  # no prompt at all
        gen_args(blocker, wan, "--prompt", "a fox"),  # not a checkpoint: fails while loading
    ]


def test_bad_input_is_one_line_and_nonzero(capsys, tmp_path, tiny_checkpoint, tiny_wan_dir):
    for argv in bad_cases(tmp_path, tiny_checkpoint, tiny_wan_dir):
        code, out, err = run_cli(capsys, *argv)
        assert code != 0, argv
        assert len(err.strip().splitlines()) == 1, (argv, err)
        assert "Traceback" not in err and "error:" in err, (argv, err)
    assert not list(tmp_path.rglob("*.mp4")) and no_partial_files(tmp_path)


def test_module_entry_point_reports_one_line(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    ok = subprocess.run([sys.executable, "-m", "fademem_core", "plan", "--frames", "24"],
                        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert ok.returncode == 0 and "entry" in ok.stdout
    bad = subprocess.run([sys.executable, "-m", "fademem_core", "plan", "--beta", "1.5"],
                         capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [
        "fademem plan: error: argument --beta: beta must be a number in (0, 1], got 1.5 "
        "(see fademem plan --help)"]


# ----------------------------------------------------------------------------- demo
def test_demo_end_to_end(capsys, tmp_path, monkeypatch):
    import fademem_core.cli.demo as demo

    monkeypatch.setattr(demo, "WEIGHTS", tmp_path / "absent.safetensors")
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "demo", "--frames", 12)
    assert code == 0
    folder = tmp_path / "fademem_out"  # the default output folder
    assert read_video_info(folder / "demo_fademem.mp4") == (12, 64, 64)
    assert read_video_info(folder / "demo_full.mp4") == (12, 64, 64)
    assert (folder / "fademem_layout.png").stat().st_size > 0
    assert "RANDOM weights" in out
    assert str(Path("fademem_out") / "demo_fademem.mp4") in out
    assert "fademem_layout.png" in out
    # the per-chunk table: 4 chunks, both policies, KV held per chunk
    lines = out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:1] == ["chunk"])
    assert "FadeMem KV" in lines[head] and "full cache KV" in lines[head]
    assert [int(r.split()[0]) for r in lines[head + 1: head + 5]] == [0, 1, 2, 3]


def test_demo_says_what_the_default_model_is(capsys, tmp_path):
    from fademem_core.cli.demo import WEIGHTS

    code, out, _ = run_cli(capsys, "demo", "--frames", 6, "--out-dir", tmp_path, "--no-compare")
    assert code == 0
    first = out.splitlines()[0]
    if WEIGHTS.is_file():  # the shipped tiny-world weights
        assert "trained on" in first and "RANDOM" not in first
        # the render check, and what its residual is made of (fademem_core.tinyworld.offworld)
        assert "verdict:" in out and "off-world residual by part" in out and "background drift" in out
    else:
        assert "RANDOM weights" in first


def test_demo_names_what_trained_weights_learned(capsys, tmp_path, monkeypatch):
    from fademem_core.model.loading import save_model, tiny_model

    weights = save_model(tiny_model(seed=3), tmp_path / "tw.safetensors")
    (tmp_path / "tw.json").write_text(json.dumps(
        {"what": "tiny causal Wan trained on a sprite world",
         "training": {"steps": 1234, "clip_frames": 21}}))
    code, out, _ = run_cli(capsys, "demo", "--frames", 6, "--weights", weights,
                           "--out-dir", tmp_path / "o", "--no-compare")
    assert code == 0
    assert "trained on a sprite world" in out and "1234 steps" in out
    assert "RANDOM" not in out
    assert read_video_info(tmp_path / "o" / "demo_fademem.mp4")[0] == 6
    assert not (tmp_path / "o" / "demo_full.mp4").exists()


# ----------------------------------------------------------------------------- generate
def test_generate_writes_the_streamed_video(capsys, tmp_path, tiny_checkpoint, tiny_wan_dir):
    out = tmp_path / "videos" / "fox.mp4"
    code, stdout, err = run_cli(capsys, *gen_args(tiny_checkpoint, tiny_wan_dir, "--prompt",
                                                  "a red fox walks", "--frames", 6, "--out", out))
    assert code == 0, err
    # 6 latent frames -> 1 + 4 * 5 = 21 video frames, 8x the 4x6 latent grid
    assert read_video_info(out) == (21, 32, 48)
    assert f"wrote {out}" in stdout
    assert "chunk 2/2" in err and "ETA" in err  # progress bar on stderr
    assert os.listdir(out.parent) == ["fox.mp4"]


def test_streamed_chunks_equal_full_decode(tiny_checkpoint, tiny_wan_dir):
    """The frames written chunk by chunk are exactly the VAE decode of the whole rollout."""
    from fademem_core.cli.render import rollout_to_video
    from fademem_core.model.loading import load_model
    from fademem_core.memory.policies import FadeMem
    from fademem_core.rollout.sampler import generate, to_raw
    from fademem_core.rollout.video import StreamingVAEDecoder, load_wan_vae

    model = load_model(tiny_checkpoint)
    vae = load_wan_vae(tiny_wan_dir)
    stream = StreamingVAEDecoder(vae)
    chunks = []

    def frames_of(x0):
        chunks.append(stream.decode(to_raw(x0))[0])
        return chunks[-1]

    text = torch.randn(1, 5, model.text_dim, generator=torch.Generator().manual_seed(0))
    res = rollout_to_video(model, text, FadeMem(budget=3, beta=0.5), 9, 32, 32, frames_of,
                           None, 16.0, seed=1)
    assert len(res.records) == 3 and [r.chunk for r in res.records] == [0, 1, 2]
    latents = generate(model, text, FadeMem(budget=3, beta=0.5), 9, 32, 32, seed=1)
    with torch.no_grad():
        full = vae.decode(to_raw(latents)).sample[0]
    assert torch.equal(torch.cat(chunks, dim=1), full)
    # bounded memory: what the chunk attends to stops growing once the budget is full
    assert res.records[1].held_bytes == res.records[2].held_bytes > res.records[0].held_bytes


def test_generate_schedule_and_lora(capsys, tmp_path, tiny_checkpoint, tiny_wan_dir):
    from fademem_core.model.testing import write_checkpoints

    lora = write_checkpoints(tmp_path / "ck").loras["peft.pt"]
    sched = tmp_path / "story.txt"
    sched.write_text("# two prompts\n0|a red fox walks\n1|the cat sleeps on the sofa\n")
    out = tmp_path / "story.mp4"
    code, _, err = run_cli(capsys, *gen_args(tiny_checkpoint, tiny_wan_dir, "--schedule", sched,
                                             "--seconds", 1.5, "--lora", lora, "--out", out,
                                             "--policy", "sink_window", "--sink", 1,
                                             "--window", 3))
    assert code == 0, err
    # 1.5 s at 16 fps = 6 latent frames (2 chunks) = 1 + 4 * 5 = 21 video frames
    assert read_video_info(out) == (21, 32, 48)


def test_generate_passes_weights_alpha_switch_and_context_input(capsys, tmp_path, tiny_wan_dir,
                                                                 monkeypatch):
    import fademem_core.model.loading as loading
    import fademem_core.rollout.sampler as sampler
    from fademem_core.model.testing import write_checkpoints

    ck = write_checkpoints(tmp_path / "ck")
    seen = {}

    def spy(real, name):
        def wrapped(*args, **kwargs):
            seen[name] = kwargs
            return real(*args, **kwargs)
        return wrapped

    monkeypatch.setattr(loading, "load_model", spy(loading.load_model, "load"))
    monkeypatch.setattr(sampler, "generate", spy(sampler.generate, "generate"))
    sched = tmp_path / "story.txt"
    sched.write_text("0|a red fox walks\n1|the cat sleeps on the sofa\n")
    code, _, err = run_cli(capsys, *gen_args(ck.formats["self_forcing.pt"], tiny_wan_dir, "--schedule",
                                             sched, "--seconds", 1.5, "--lora", ck.loras["peft.pt"],
                                             "--lora-alpha", 8, "--weights", "generator",
                                             "--policy", "sink_window", "--sink", 1, "--window", 3,
                                             "--switch", "longlive_resink", "--context-noise", 50,
                                             "--context-input", "noised", "--out", tmp_path / "s.mp4"))
    assert code == 0, err
    assert (seen["load"]["weights"], seen["load"]["lora_alpha"]) == ("generator", 8.0)
    kw = seen["generate"]
    assert (kw["switch"], kw["context_input"], kw["context_noise"]) == ("longlive_resink", "noised", 50.0)
    code, _, err = run_cli(capsys, *gen_args(ck.formats["self_forcing.pt"], tiny_wan_dir, "--prompt", "x",
                                             "--weights", "best"))
    assert code != 0 and "--weights" in err


def test_generate_prompt_file_names_by_index_and_resumes(capsys, tmp_path, tiny_checkpoint,
                                                         tiny_wan_dir):
    prompts = tmp_path / "p.txt"
    prompts.write_text("a red fox\n\nthe cat sleeps\nblue sky over city\n")
    out_dir = tmp_path / "batch"
    args = gen_args(tiny_checkpoint, tiny_wan_dir, "--prompt-file", prompts, "--frames", 3,
                    "--out-dir", out_dir)
    code, stdout, err = run_cli(capsys, *args)
    assert code == 0, err
    assert sorted(os.listdir(out_dir)) == ["0000.mp4", "0001.mp4", "0002.mp4"]
    assert read_video_info(out_dir / "0002.mp4") == (9, 32, 48)
    # a second run resumes: existing videos are kept, only the missing one is made
    (out_dir / "0001.mp4").unlink()
    before = (out_dir / "0000.mp4").stat().st_mtime_ns
    code, stdout, _ = run_cli(capsys, *args)
    assert code == 0 and "skipping 2 prompt(s)" in stdout
    assert (out_dir / "0001.mp4").exists() and (out_dir / "0000.mp4").stat().st_mtime_ns == before


def _fail_second_decode(monkeypatch, exc):
    from fademem_core.rollout.video import StreamingVAEDecoder

    real = StreamingVAEDecoder.decode
    calls = []

    def flaky(self, z):
        calls.append(1)
        if len(calls) == 2:
            raise exc
        return real(self, z)

    monkeypatch.setattr(StreamingVAEDecoder, "decode", flaky)


@pytest.mark.parametrize("exc", [RuntimeError("VAE out of memory"), KeyboardInterrupt()])
def test_stop_mid_video_keeps_a_playable_partial(capsys, tmp_path, monkeypatch, tiny_checkpoint,
                                                 tiny_wan_dir, exc):
    _fail_second_decode(monkeypatch, exc)
    out = tmp_path / "v.mp4"
    code, _, err = run_cli(capsys, *gen_args(tiny_checkpoint, tiny_wan_dir, "--prompt",
                                             "a fox", "--frames", 9, "--out", out))
    partial = tmp_path / "v.partial.mp4"
    # never at the final name; the hidden journal of finished chunks stays (for --resume)
    assert sorted(os.listdir(tmp_path)) == [".v.mp4.resume", "v.partial.mp4"]
    # the first chunk (3 latent frames = 9 video frames) made it, playable
    assert read_video_info(partial) == (9, 32, 48)
    if isinstance(exc, KeyboardInterrupt):
        assert code == 130 and f"kept 9 frames in {partial}" in err
    else:
        assert code == 1 and "VAE out of memory" in err and str(partial) in err
        assert err.strip().splitlines()[-1].startswith("fademem generate: error:")


def test_failure_mid_video_without_keep_partial_leaves_nothing(capsys, tmp_path, monkeypatch,
                                                               tiny_checkpoint, tiny_wan_dir):
    _fail_second_decode(monkeypatch, RuntimeError("VAE out of memory"))
    out = tmp_path / "v.mp4"
    code, _, err = run_cli(capsys, *gen_args(tiny_checkpoint, tiny_wan_dir, "--prompt",
                                             "a fox", "--frames", 9, "--out", out,
                                             "--no-keep-partial"))
    old = out.with_name("keep.mp4")
    assert code == 1 and "VAE out of memory" in err
    assert err.strip().splitlines()[-1].startswith("fademem generate: error:")
    # no video, partial or whole; only the hidden journal of finished chunks (for --resume)
    assert os.listdir(tmp_path) == [".v.mp4.resume"] and not old.exists()


# ----------------------------------------------------------------------------- progress
def test_progress_line_has_chunk_elapsed_and_eta():
    now = [100.0]
    buf = io.StringIO()
    p = Progress(10, stream=buf, clock=lambda: now[0])
    now[0] = 130.0
    p.update(3)  # 10 s per chunk so far -> 70 s to go
    assert p.line(3).endswith("chunk 3/10  elapsed 0:30  ETA 1:10")
    p.update(10)
    assert buf.getvalue().strip().splitlines()[-1].endswith("chunk 10/10  elapsed 0:30  ETA 0:00")


def test_prompt_embeddings_are_stored_without_pads():
    from fademem_core.cli.generate import _Padded

    emb = torch.zeros(1, 512, 8)
    emb[0, :7] = torch.randn(7, 8)
    kept = _Padded.of(emb)
    assert kept.rows.shape == (1, 7, 8)
    assert torch.equal(kept.full("cpu"), emb)


def test_write_atomic_replaces_whole_or_leaves_the_old_file(tmp_path):
    from fademem_core.cli.common import write_atomic

    target = tmp_path / "out.json"
    target.write_text("old")

    def half_then_fail(tmp):
        Path(tmp).write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, half_then_fail)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["out.json"]
    write_atomic(target, lambda tmp: Path(tmp).write_text("new"))
    assert target.read_text() == "new" and os.listdir(tmp_path) == ["out.json"]
    assert target.stat().st_mode & 0o777 == 0o666 & ~_umask()  # not mkstemp's 0600


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@pytest.mark.parametrize("argv", [["--seconds", "1e300"], ["--frames", "3000000"],
                                  ["--frames", "60000", "--budget", "4000"]])
def test_plan_refuses_a_plan_over_the_cost_cap_at_once(capsys, argv, monkeypatch):
    import fademem_core.cli.plan as plan_cli
    from fademem_core.memory import planner as schedule

    def never(*a, **k):
        raise AssertionError("the plan was started")

    monkeypatch.setattr(plan_cli, "plan_layout", never)
    code, out, err = run_cli(capsys, "plan", *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and "--frames" in err
    assert str(schedule.MAX_PLAN_FRAMES) in err or str(schedule.MAX_PLAN_WORK) in err


def test_generate_refuses_a_schedule_dropping_a_prompt_before_reading_weights(capsys, tmp_path, tiny_wan_dir,
                                                                                monkeypatch):
    from fademem_core.model import loading

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("weights were read"))
    sched = tmp_path / "s.txt"
    sched.write_text("0|a red fox\n0.1|a blue fox\n")
    ckpt = tmp_path / "never.safetensors"
    ckpt.write_bytes(b"x")
    code, out, err = run_cli(capsys, *gen_args(ckpt, tiny_wan_dir, "--schedule", sched, "--frames", "6",
                                               "--out", tmp_path / "v.mp4"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "the prompt at 0s and the prompt at 0.1s take over in the same chunk, chunk 0" in err


def test_analyze_refuses_bad_pt_latents_with_exit_2_and_one_line(capsys, tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo ran",))

    torch.save({"samples": Evil()}, tmp_path / "evil.pt")
    torch.save(torch.randn(16, 12, 8, 8), tmp_path / "ok.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:300])
    for name, needle in (("evil.pt", "needs code execution"), ("cut.pt", "truncated or corrupt")):
        code, out, err = run_cli(capsys, "analyze", tmp_path / name)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert needle in err and "weights_only` set to `False" not in err


@pytest.mark.parametrize("blocked", ["demo_fademem.mp4", "demo_full.mp4", "fademem_layout.png"])
def test_demo_checks_every_output_before_the_rollouts(capsys, tmp_path, monkeypatch, blocked):
    import fademem_core.cli.render as render

    monkeypatch.setattr(render, "rollout_to_video", lambda *a, **k: pytest.fail("a rollout ran"))
    (tmp_path / blocked).mkdir()  # a folder where the file must go
    code, out, err = run_cli(capsys, "demo", "--frames", 6, "--out-dir", tmp_path)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1
    assert blocked in err


def test_demo_refuses_a_layout_picture_over_the_plan_cap_before_the_rollouts(capsys, tmp_path, monkeypatch):
    import fademem_core.cli.render as render

    monkeypatch.setattr(render, "rollout_to_video", lambda *a, **k: pytest.fail("a rollout ran"))
    code, out, err = run_cli(capsys, "demo", "--frames", 100000, "--out-dir", tmp_path)
    assert code == 2 and "--frames" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("device,needle", [("foo", "torch device"), ("cuda", "CUDA"), ("cuda:3", "CUDA")])
def test_generate_refuses_a_bad_device_before_reading_weights(capsys, tmp_path, tiny_checkpoint, tiny_wan_dir,
                                                             monkeypatch, device, needle):
    from fademem_core.model import loading, textenc

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("weights were read"))
    monkeypatch.setattr(textenc.TextEncoder, "from_wan_dir", lambda *a, **k: pytest.fail("encoder was read"))
    code, out, err = run_cli(capsys, *gen_args(tiny_checkpoint, tiny_wan_dir, "--prompt", "a fox", "--frames", 3,
                                               "--device", device, "--out", tmp_path / "v.mp4"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "--device" in err and needle in err


def test_generate_with_a_tiny_positive_shift(capsys, tmp_path, tiny_checkpoint, tiny_wan_dir):
    out = tmp_path / "v.mp4"
    code, _, err = run_cli(capsys, *gen_args(tiny_checkpoint, tiny_wan_dir, "--prompt", "a fox", "--frames", 3,
                                             "--shift", "1e-300", "--out", out))
    assert code == 0, err
    assert read_video_info(out)[0] == 9


def test_generate_runs_the_sampler_the_weights_record(capsys, tmp_path, tiny_wan_dir, monkeypatch):
    """--sampler auto on the embedded tiny_world weights = generate with sampler_options of
    their record (an independent call); --sampler few_step differs; --steps/--shift reach
    generate only when the record is not used."""
    import fademem_core.rollout.sampler as sampler
    from fademem_core import FadeMem, embedded_weights, load_model, sampler_options

    real = sampler.generate
    calls = []

    def spy(model, text, policy, num_frames, height, width, callback=None, **kw):
        chunks = []

        def on_step(info):
            if info.step + 1 == info.num_steps:
                chunks.append(info.x0.clone())
            callback(info)
        calls.append((text, kw, chunks))
        return real(model, text, policy, num_frames, height, width, callback=on_step, **kw)

    monkeypatch.setattr(sampler, "generate", spy)
    weights = embedded_weights("tiny_world")

    def cli(*extra):
        code, out, err = run_cli(capsys, "generate", "--checkpoint", weights, "--wan-dir", tiny_wan_dir,
                                 "--height", 64, "--width", 64, "--prompt", "a red fox", "--frames", 3,
                                 "--out", tmp_path / f"{len(calls)}.mp4", *extra)
        assert code == 0, err
        text, kw, chunks = calls[-1]
        return out, text, kw, torch.cat(chunks, dim=2)

    out, text, _, auto = cli()
    assert "sampler euler, 12 steps, shift 5 (recorded with the weights)" in out
    model = load_model(weights)
    want = real(model, text, FadeMem(budget=12, beta=0.3), 3, 64, 64, seed=0,
                **sampler_options(model.sampler_record))
    assert torch.equal(auto, want)
    out, _, kw, few = cli("--sampler", "few_step")
    assert (kw["sampler"], kw["steps"], kw["shift"]) == ("few_step", [1000.0, 750.0, 500.0, 250.0], 5.0)
    assert "sampler few_step, 4 steps, shift 5" in out and "recorded" not in out
    assert (few - want).abs().max() > 0.1
    _, _, kw, _ = cli("--sampler", "euler", "--steps", "1000,500", "--shift", "3")
    assert (kw["sampler"], kw["steps"], kw["shift"]) == ("euler", [1000.0, 500.0], 3.0)
    out, _, kw, _ = cli("--steps", "1000,500")  # auto: the record's, and the CLI says so
    assert kw["steps"] == sampler_options(model.sampler_record)["steps"]
    assert "--steps not used (pass --sampler few_step or euler" in out
    code, help_text, _ = run_cli(capsys, "generate", "--help")
    help_text = " ".join(help_text.split())
    assert code == 0
    assert "--sampler {auto,few_step,euler}" in help_text and "records one" in help_text


def test_generate_refuses_an_unreadable_sampler_record_before_reading_weights(capsys, tmp_path, tiny_wan_dir):
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"not read")
    (tmp_path / "m.json").write_text('{"sampler": {"name": "ddim", "steps": 4}}')
    code, _, err = run_cli(capsys, *gen_args(ckpt, tiny_wan_dir, "--prompt", "x", "--frames", 3,
                                             "--out", tmp_path / "v.mp4"))
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "m.json" in err and "sampler name must be one of" in err


def test_interrupt_during_start_up_is_one_line_and_130(capsys, monkeypatch):
    import fademem_core.cli as cli

    def interrupted():
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    code, out, err = run_cli(capsys, "plan")
    assert code == 130 and out == "" and err.strip().splitlines() == ["fademem: interrupted"]


def test_interrupt_while_python_m_imports_the_cli_is_one_line_and_130(capsys, monkeypatch):
    import runpy

    class Interrupting:
        def find_spec(self, name, path=None, target=None):
            if name == "fademem_core.cli":
                raise KeyboardInterrupt
            return None

    monkeypatch.delitem(sys.modules, "fademem_core.cli")
    monkeypatch.setattr(sys, "meta_path", [Interrupting(), *sys.meta_path])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("fademem_core", run_name="__main__")
    assert e.value.code == 130
    assert capsys.readouterr().err.strip().splitlines() == ["fademem: interrupted"]


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_special_files_are_reported_for_what_they_are(capsys, tmp_path, tiny_wan_dir, kind):
    special = tmp_path / ("pipe.safetensors" if kind == "fifo" else "null.safetensors")
    os.mkfifo(special) if kind == "fifo" else special.symlink_to("/dev/null")
    words = "a FIFO (named pipe)" if kind == "fifo" else "a character device"
    code, _, err = run_cli(capsys, *gen_args(special, tiny_wan_dir, "--prompt", "a fox"))
    assert code == 2 and words in err and "directory" not in err
    code, _, err = run_cli(capsys, "analyze", special)
    assert code == 2 and words in err
    out = tmp_path / ("pipe.png" if kind == "fifo" else "null.png")
    os.mkfifo(out) if kind == "fifo" else out.symlink_to("/dev/null")
    code, _, err = run_cli(capsys, "plan", "--frames", "12", "--picture", out)
    assert code == 2 and words in err and out.exists() and not out.is_file()  # not replaced


def test_generate_refuses_a_video_larger_than_memory_before_reading_weights(capsys, tmp_path, tiny_wan_dir,
                                                                           monkeypatch):
    from fademem_core.model import loading, textenc

    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("weights were read"))
    monkeypatch.setattr(textenc.TextEncoder, "from_wan_dir", lambda *a, **k: pytest.fail("encoder was read"))
    ckpt = tmp_path / "never.safetensors"
    ckpt.write_bytes(b"x")
    code, out, err = run_cli(capsys, *gen_args(ckpt, tiny_wan_dir, "--prompt", "a fox", "--frames", 10**9,
                                               "--out", tmp_path / "v.mp4"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "bytes" in err


@pytest.mark.parametrize("command", ["plan", "generate"])
def test_a_length_too_large_for_any_number_is_bad_input(capsys, tmp_path, tiny_checkpoint, tiny_wan_dir, command):
    argv = (["plan", "--seconds", "1e308"] if command == "plan" else
            gen_args(tiny_checkpoint, tiny_wan_dir, "--prompt", "a fox", "--seconds", "1e308",
                     "--out", tmp_path / "v.mp4"))
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "seconds" in err


def _policies():
    from fademem_core import (DeepForcing, FadeMemRelease, InfinityRope, MemFlow, MemRope, SinkWindow,
                              SlidingWindow)

    return [
        (["--policy", "deep_forcing"], DeepForcing()),
        (["--policy", "deep_forcing", "--sink", "6", "--window", "12", "--positions", "packed"],
         DeepForcing(sink=6, window=12, positions="packed")),
        (["--policy", "memflow", "--bank", "2", "--interval", "1", "--window", "9"],
         MemFlow(bank=2, interval=1, window=9)),
        (["--policy", "memrope"], MemRope()),
        (["--policy", "memrope", "--sink", "1", "--recent", "2", "--alpha-short", "0.5"],
         MemRope(sink=1, recent=2, alpha_short=0.5)),
        (["--policy", "infinity_rope", "--flush-keep", "1"], InfinityRope(flush_keep=1)),
        (["--policy", "fademem_release", "--span-gamma", "1", "--positions", "absolute"],
         FadeMemRelease(span_gamma=1.0, positions="absolute")),
        (["--policy", "self_forcing"], SlidingWindow(window=21)),
        (["--policy", "sink_window"], SinkWindow()),
        (["--policy", "sliding_window", "--positions", "packed"],
         SlidingWindow(positions="packed")),
    ]


@pytest.mark.parametrize("argv,want", _policies())
def test_policy_options_reach_the_policy_and_default_to_its_own(argv, want):
    from fademem_core.cli import build_parser
    from fademem_core.cli.options import build_policy

    assert build_policy(build_parser().parse_args(["demo", *argv])) == want


def test_a_policy_option_the_policy_refuses_is_a_clean_error(capsys):
    code, _, err = run_cli(capsys, "demo", "--policy", "memrope", "--alpha-long", "2")
    assert code == 2 and "alpha_long" in err
