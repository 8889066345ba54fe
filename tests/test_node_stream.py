"""FadeMem Sampler + Streaming Save in plain pytest: files, naming, equality with VAE Decode,
Cancel / error / out-of-memory mid-run, and runs until Cancel."""
from __future__ import annotations

import json
import os

import av
import numpy as np
import pytest
import torch

from fademem_core.rollout.video import read_video_info
from tests.support.pack import load_pack, node_module

NODES = load_pack().NODE_CLASS_MAPPINGS
comfy = node_module("comfy")
TEXT_DIM = 32
W, H = 64, 32


class Cancel(Exception):
    """Stands in for ComfyUI's InterruptProcessingException."""


@pytest.fixture(scope="module")
def vae():
    from fademem_core.rollout.vae_testing import tiny_wan_vae

    return tiny_wan_vae(seed=1)


@pytest.fixture
def out_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("FADEMEM_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("FADEMEM_TEMP_DIR", str(tmp_path.parent / f"{tmp_path.name}_temp"))
    return tmp_path


@pytest.fixture
def comfy_events(monkeypatch):
    """Cancel, node text and the passed-on interrupt, recorded as ComfyUI would see them."""
    events = {"texts": [], "passed_on": 0, "checks": 0, "cancel_at": None}

    def check():
        events["checks"] += 1
        if events["checks"] == events["cancel_at"]:
            raise Cancel

    monkeypatch.setattr(comfy, "interrupt_exception", lambda: (Cancel,))
    monkeypatch.setattr(comfy, "check_interrupted", check)
    monkeypatch.setattr(comfy, "send_text", lambda text, node: events["texts"].append(text))
    monkeypatch.setattr(comfy, "pass_interrupt_on",
                        lambda: events.__setitem__("passed_on", events["passed_on"] + 1))
    events["live"] = []

    def send_event(event, data):  # what the browser gets, and what it could play right then
        assert event == "fademem.live"
        events["live"].append((data, [read_video_info(served(f))[0] for f in data["files"]]))

    monkeypatch.setattr(comfy, "send_event", send_event)
    return events


def served(entry):
    """The file ComfyUI's /view serves for a {filename, subfolder, type} entry."""
    root = comfy.output_directory() if entry["type"] == "output" else comfy.temp_directory()
    return os.path.join(root, entry["subfolder"], entry["filename"])


def cond(seed=0):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, 8, TEXT_DIM, generator=g), {"pooled_output": None}]]


def fademem():
    return NODES["FadeMemCache"]().build(4, 0.3, True, "weighted_average", "absolute")[0]


def run(model, vae, length=29, until_cancel=False, segment_seconds=0, prefix="video/FadeMem",
        cache=None, **hidden):
    return NODES["FadeMemStreamingSave"]().save(
        model, cond(), cache or fademem(), W, H, length, 3, 2, 5.0, 1, 0.0, until_cancel, vae,
        prefix, segment_seconds, unique_id="7", **hidden)


def decoded(path) -> np.ndarray:
    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])


def files(ui):
    assert ui["ui"]["animated"] == (True,)
    return [(e["subfolder"], e["filename"], e["type"]) for e in ui["ui"]["images"]]


def test_saves_what_sampler_then_vae_decode_would_show(model, vae, out_dir, comfy_events):
    from fademem_core.rollout.video import Mp4Writer

    workflow = {"nodes": [1, 2]}
    ui = run(model, vae, prompt={"1": {"class_type": "X"}}, extra_pnginfo={"workflow": workflow})
    assert files(ui) == [("video", "FadeMem_00001_.mp4", "output")]
    path = out_dir / "video" / "FadeMem_00001_.mp4"
    assert comfy_events["passed_on"] == 0 and comfy_events["texts"][-1].startswith("done: 29 frames")
    # the graph users build today: FadeMem Sampler -> VAE Decode (all latents at once) -> video
    latent = NODES["FadeMemSampler"]().sample(model, cond(), fademem(), W, H, 29, 3, 2, 5.0, 1, 0.0)[0]
    with torch.no_grad():
        frames = vae.decode(latent["samples"]).sample[0].clamp(-1, 1)
    with Mp4Writer(out_dir / "reference.mp4") as w:
        w.write(frames)
    assert np.array_equal(decoded(path), decoded(out_dir / "reference.mp4"))
    with av.open(str(path)) as c:  # Save Video's metadata: the prompt and the workflow as JSON
        assert json.loads(c.metadata["workflow"]) == workflow
        assert json.loads(c.metadata["prompt"]) == {"1": {"class_type": "X"}}
    # the next run takes the next number, like Save Video
    assert files(run(model, vae)) == [("video", "FadeMem_00002_.mp4", "output")]


def test_drives_a_core_vae_in_the_original_layout(model, vae, out_dir, comfy_events):
    """What core Load VAE hands over: a VAE whose first_stage_model holds wan_2.1_vae's names."""
    from fademem_core.rollout.vae_testing import original_vae_state_dict

    class CoreVAE:
        class first_stage_model:  # noqa: N801 - the attribute name core's VAE has
            weights = original_vae_state_dict(vae)

            @classmethod
            def state_dict(cls):
                return cls.weights

    run(model, vae, prefix="a")
    run(model, CoreVAE(), prefix="b")
    assert np.array_equal(decoded(out_dir / "a_00001_.mp4"), decoded(out_dir / "b_00001_.mp4"))
    with pytest.raises(ValueError, match="Load VAE"):
        run(model, object(), prefix="c")


def test_cancel_keeps_a_playable_partial_and_passes_the_cancel_on(model, vae, out_dir, comfy_events):
    comfy_events["cancel_at"] = 5  # the first step of the third chunk (2 steps per chunk)
    ui = run(model, vae, length=45)
    assert files(ui) == [("video", "FadeMem_00001_.partial.mp4", "output")]
    assert os.listdir(out_dir / "video") == ["FadeMem_00001_.partial.mp4"]  # never the final name
    assert decoded(out_dir / "video" / "FadeMem_00001_.partial.mp4").shape[0] == 21  # 2 chunks
    assert comfy_events["passed_on"] == 1  # the rest of the prompt stops too
    assert "stopped by Cancel: 21 frames" in comfy_events["texts"][-1]
    assert "FadeMem_00001_.partial.mp4" in comfy_events["texts"][-1]


@pytest.mark.parametrize("error", [RuntimeError, torch.OutOfMemoryError])
def test_an_error_mid_run_names_the_partial_file(model, vae, out_dir, comfy_events, monkeypatch,
                                                 error):
    from fademem_core.rollout.video import StreamingVAEDecoder

    real, calls = StreamingVAEDecoder.decode, []

    def decode(self, z):
        calls.append(1)
        if len(calls) == 3:
            raise error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(self, z)

    monkeypatch.setattr(StreamingVAEDecoder, "decode", decode)
    freed = []
    monkeypatch.setattr(comfy, "soft_empty_cache", lambda: freed.append(1))
    with pytest.raises(error) as caught:  # the type stays: ComfyUI's out-of-memory handling
        run(model, vae, length=45)
    message = str(caught.value)
    assert "Tried to allocate" in message and "kept the 21 frames" in message
    assert str(out_dir / "video" / "FadeMem_00001_.partial.mp4") in message
    assert os.listdir(out_dir / "video") == ["FadeMem_00001_.partial.mp4"]
    assert freed and comfy_events["passed_on"] == 0


def test_until_cancel_writes_playable_segments_in_flat_memory(model, vae, out_dir, comfy_events,
                                                              monkeypatch):
    monkeypatch.setattr(node_module("sampler"), "_mib", lambda n: f"{n} B")  # exact bytes
    comfy_events["cancel_at"] = 2 * 9 + 1  # after 9 chunks = 27 latent frames = 105 video frames
    ui = run(model, vae, until_cancel=True, segment_seconds=2)  # 32 frames a file
    names = [n for _, n, _ in files(ui)]
    assert names == [f"FadeMem_{i:05}_.mp4" for i in range(1, 5)]  # all complete, final names
    counts = [decoded(out_dir / "video" / n).shape[0] for n in names]
    assert counts == [32, 32, 32, 9]
    assert comfy_events["passed_on"] == 1
    kv = [t.split("KV memory ")[1].split(" (")[0] for t in comfy_events["texts"] if t.startswith("chunk")]
    assert len(kv) == 9 and len(set(kv)) == 1 and kv[0] != "0 B"  # allocated once, never grows


def test_validates_before_any_work(model, vae, out_dir, comfy_events):
    full = NODES["FadeMemBaselineCache"]().build("full", 3, 9, "absolute")[0]
    with pytest.raises(ValueError, match="segment_seconds > 0"):
        run(model, vae, until_cancel=True, segment_seconds=0)
    with pytest.raises(ValueError, match="bounded cache"):
        run(model, vae, until_cancel=True, segment_seconds=1, cache=full)
    with pytest.raises(ValueError, match="filename_prefix"):
        run(model, vae, prefix=" ")
    for bad in (-1, 3601, True, 2.0):
        with pytest.raises(ValueError, match=rf"segment_seconds must be an integer in \[0, 3600\], got {bad!r}"):
            run(model, vae, segment_seconds=bad)
    with pytest.raises(ValueError, match="length"):
        run(model, vae, length=30)
    assert comfy_events["checks"] == 0 and not any(out_dir.iterdir())


def test_live_playback_grows_one_chunk_at_a_time(model, vae, out_dir, comfy_events):
    ui = run(model, vae, length=45, segment_seconds=2)  # 45 frames: files of 32 + 13
    live = comfy_events["live"]
    running = [(d, counts) for d, counts in live if d["running"]]
    # chunks of 9, 12, 12, 12 frames; an event for every piece written and every file closed
    # (the third chunk: 11 frames end file 1, which is closed, 1 frame starts file 2)
    assert [d["frames"] for d, _ in running] == [9, 21, 32, 32, 33, 45, 45]
    for data, counts in running:
        assert data["node"] == "7" and data["fps"] == 16
        assert counts == [f["frames"] for f in data["files"]]  # every listed file plays in full
        assert [f["start"] for f in data["files"]] == list(np.cumsum([0] + counts[:-1]))
    final, counts = live[-1]
    assert not final["running"] and counts == [32, 13]
    assert [{k: f[k] for k in ("filename", "subfolder", "type")} for f in final["files"]] == \
        ui["ui"]["images"]
    assert not os.listdir(os.path.join(comfy.temp_directory(), "fademem_live"))  # cleaned up


def test_continues_a_prefix_like_sampler_with_prefix_then_vae_decode(model, vae, out_dir,
                                                                     comfy_events, monkeypatch):
    from fademem_core.rollout.video import Mp4Writer

    written, real = [], Mp4Writer.write  # compared at the writer (see test_streaming.py)
    monkeypatch.setattr(Mp4Writer, "write", lambda self, f: (
        written.append(f.clone()) if self.path.name.startswith("cont") else None) or real(self, f))
    first = NODES["FadeMemSampler"]().sample(model, cond(), fademem(), W, H, 17, 3, 2, 5.0, 1, 0.0)[0]
    node = NODES["FadeMemStreamingSave"]()
    ui = node.save(model, cond(), fademem(), W, H, 13, 3, 2, 5.0, 2, 0.0, False, vae, "cont", 0,
                   prefix=first, unique_id="7")
    assert files(ui) == [("", "cont_00001_.mp4", "output")]
    _, whole = NODES["FadeMemSampler"]().sample(model, cond(), fademem(), W, H, 13, 3, 2, 5.0, 2,
                                                0.0, prefix=first)
    assert whole["samples"].shape[2] == 5 + 4  # 17 video frames = 5 latent, then length 13 = 4 more
    from fademem_core import from_raw, to_raw

    # the rollout holds the prefix in model space and to_raw(from_raw(x)) is not x to the last
    # bit: the one-shot reference decodes the prefix as the rollout holds it
    held = to_raw(from_raw(first["samples"]))
    with torch.no_grad():
        frames = vae.decode(torch.cat([held, whole["samples"][:, :, 5:]], dim=2)).sample[0].clamp(-1, 1)
        given = vae.decode(whole["samples"]).sample[0].clamp(-1, 1)
    got = torch.cat(written, dim=1)
    assert got.shape == frames.shape == (3, 17 + 16, H, W)  # the prefix's frames, then the new
    assert torch.equal(got, frames)
    assert (got - given).abs().max() < 1e-4  # and as given, up to that rounding (1.5e-5 seen)
    assert read_video_info(out_dir / "cont_00001_.mp4")[0] == 33
    with pytest.raises(ValueError, match="prefix must be a video LATENT"):
        node.save(model, cond(), fademem(), W, H, 13, 3, 2, 5.0, 2, 0.0, False, vae, "c", 0,
                  prefix={"samples": torch.zeros(1, 16, 4)})
