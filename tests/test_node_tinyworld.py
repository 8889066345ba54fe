"""The embedded tiny world in the nodes (plain pytest): the loader's embedded entries, the
sampler's ``auto`` sampler, the prompt and decode nodes, and the shipped workflow's graph run
end to end against the core rollout with the sampler the weights' JSON records."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tests.support.pack import ROOT, load_pack, node_module

NODES = load_pack().NODE_CLASS_MAPPINGS
comfy = node_module("comfy")
WEIGHTS = ROOT / "fademem_core" / "weights"
TINY = "tiny_world (embedded, no download)"
TINY_FT = "tiny_world_ft (embedded, FadeMem-FT, no download)"


def recorded_euler(weights_json):
    """The JSON's sampler record as generate options, written out from the file itself."""
    spec = json.loads(weights_json.read_text())["sampler"]
    n = spec["steps"]
    return {"sampler": spec["name"], "steps": [1000.0 * (n - i) / n for i in range(n)],
            "shift": float(spec["shift"])}


def load(name):
    return NODES["FadeMemModelLoader"]().load(name, "None", 1.0, "default")[0]


@pytest.fixture(scope="module")
def tiny():
    return load(TINY)


def fademem_cache():
    return NODES["FadeMemCache"]().build(12, 0.3, True, "weighted_average", "absolute")[0]


def run_sampler(model, positive, length, seed=3, steps=4, shift=5.0, **kw):
    return NODES["FadeMemSampler"]().sample(model, positive, fademem_cache(), 64, 64, length, 3,
                                            steps, shift, seed, 0.0, **kw)


# ----------------------------------------------------------------------------- loader
def test_loader_offers_the_embedded_weights_first_and_loads_them_from_the_package():
    choices = NODES["FadeMemModelLoader"].INPUT_TYPES()["required"]["model_name"][0]
    assert choices[:2] == [TINY, TINY_FT]
    from safetensors.torch import load_file

    for name, file in ((TINY, "tiny_world"), (TINY_FT, "tiny_world_ft")):
        model = load(name)
        stored = load_file(WEIGHTS / f"{file}.safetensors")
        got = model.transformer.state_dict()
        key = "blocks.0.attn1.to_q.weight"
        assert torch.equal(got[key], stored[key].float())
        assert model.transformer.dtype == torch.float32  # default: fp32 for the tiny models
        spec = json.loads((WEIGHTS / f"{file}.json").read_text())["sampler"]
        record = model.sampler_record
        assert (record.name, record.steps, record.shift) == (spec["name"], spec["steps"], spec["shift"])


# ----------------------------------------------------------------------------- prompt / decode
def test_prompt_node_is_the_worlds_prompt_embedding(tiny):
    from fademem_core.tinyworld import world

    (cond,) = NODES["FadeMemTinyWorldPrompt"]().encode(tiny, 2, "class 5", "none")
    ((emb, meta),) = cond
    assert meta == {}
    assert torch.equal(emb, world.prompt_embedding(2, (5, None), text_dim=tiny.text_dim))
    (two,) = NODES["FadeMemTinyWorldPrompt"]().encode(tiny, 2, "class 5", "class 0")
    assert not torch.equal(two[0][0], emb)
    spec = NODES["FadeMemTinyWorldPrompt"].INPUT_TYPES()["required"]
    assert spec["sprite_a"][0] == [f"class {c}" for c in range(world.NUM_CLASSES)]
    assert spec["family"][1]["max"] == world.NUM_FAMILIES - 1


@pytest.mark.parametrize("family,a,b,match", [
    (4, "class 0", "none", r"family must be an integer in \[0, 3\], got 4"),
    (-1, "class 0", "none", r"family must be an integer in \[0, 3\], got -1"),
    (True, "class 0", "none", "family"), (1.0, "class 0", "none", "family"),
    (0, "none", "class 1", "sprite_a"), (0, "class 6", "none", "sprite_a"),
    (0, "class 1", "class 9", "sprite_b")])
def test_prompt_node_refuses_bad_widgets(tiny, family, a, b, match):
    with pytest.raises(ValueError, match=match):
        NODES["FadeMemTinyWorldPrompt"]().encode(tiny, family, a, b)


def test_prompt_node_refuses_a_model_too_narrow_for_the_world():
    from fademem_core import tiny_model

    with pytest.raises(ValueError, match="text_dim must be >= 14"):
        NODES["FadeMemTinyWorldPrompt"]().encode(tiny_model(seed=0, text_dim=8), 0, "class 1", "none")
    with pytest.raises(ValueError, match="FadeMem Model Loader"):
        NODES["FadeMemTinyWorldPrompt"]().encode(object(), 0, "class 1", "none")


def test_decode_node_is_the_worlds_rgb_map_of_the_model_space_latents():
    from fademem_core import to_raw
    from fademem_core.tinyworld import world

    truth = world.render(world.sample_scene(0, family=1, classes=(2, 3)), 0, 5)  # [16, 5, 8, 8]
    (images,) = NODES["FadeMemTinyWorldDecode"]().decode({"samples": to_raw(truth[None])}, 4)
    assert images.shape == (5, 32, 32, 3) and images.dtype == torch.float32
    want = torch.from_numpy(world.to_rgb(truth, scale=4)).float()
    # raw -> model space round trip: at most one level of 255 off
    assert (images * 255 - want).abs().max() <= 1.0
    assert (images * 255 - want).abs().mean() < 0.01


@pytest.mark.parametrize("samples,scale,match", [
    ({"samples": torch.zeros(2, 16, 3, 8, 8)}, 8, "one video"), ({"x": 1}, 8, "one video"),
    ({"samples": torch.zeros(16, 3, 8, 8)}, 8, "one video"),
    ({"samples": torch.zeros(1, 16, 3, 8, 8)}, 0, r"scale must be an integer in \[1, 64\], got 0"),
    ({"samples": torch.zeros(1, 16, 3, 8, 8)}, 65, r"scale must be an integer in \[1, 64\], got 65")])
def test_decode_node_refuses_bad_input(samples, scale, match):
    with pytest.raises(ValueError, match=match):
        NODES["FadeMemTinyWorldDecode"]().decode(samples, scale)


# ----------------------------------------------------------------------------- sampler choice
def test_sampler_auto_runs_what_the_weights_record_and_the_widgets_override_it(tiny, monkeypatch):
    import fademem_core as core

    seen, texts = [], []
    real = core.generate
    monkeypatch.setattr(core, "generate", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    monkeypatch.setattr(comfy, "send_text", lambda text, node: texts.append(text))
    (cond,) = NODES["FadeMemTinyWorldPrompt"]().encode(tiny, 0, "class 1", "none")
    want = recorded_euler(WEIGHTS / "tiny_world.json")
    run_sampler(tiny, cond, 9, steps=4, shift=3.0)  # auto: the widgets' 4 steps / shift 3 unused
    assert {k: seen[-1][k] for k in want} == want
    assert any(f"sampler euler, {len(want['steps'])} steps" in t and "recorded with the weights" in t
               for t in texts)
    run_sampler(tiny, cond, 9, steps=2, shift=3.0, sampler="few_step")
    assert (seen[-1]["sampler"], seen[-1]["steps"], seen[-1]["shift"]) == ("few_step", [1000.0, 500.0], 3.0)
    run_sampler(tiny, cond, 9, steps=3, sampler="euler")
    assert (seen[-1]["sampler"], len(seen[-1]["steps"])) == ("euler", 3)
    assert "(the widgets)" in texts[-1]
    with pytest.raises(ValueError, match="sampler must be one of"):
        run_sampler(tiny, cond, 9, sampler="ddim")


def test_sampler_auto_on_weights_without_a_record_is_the_few_step_schedule(model, monkeypatch):
    import fademem_core as core

    seen = []
    real = core.generate
    monkeypatch.setattr(core, "generate", lambda *a, **kw: seen.append(kw) or real(*a, **kw))
    positive = [[torch.randn(1, 4, model.text_dim, generator=torch.Generator().manual_seed(0)), {}]]
    run_sampler(model, positive, 9, steps=2, shift=4.0)
    assert (seen[-1]["sampler"], seen[-1]["steps"], seen[-1]["shift"]) == ("few_step", [1000.0, 500.0], 4.0)


# ----------------------------------------------------------------------------- the workflow's graph
def test_tiny_world_workflow_graph_is_the_core_rollout_with_the_recorded_euler_sampler():
    """loader(tiny) -> prompt -> FadeMem Cache -> Sampler -> Tiny Decode, as the shipped
    workflow wires it (widgets from its API twin), on a short length."""
    from fademem_core import FadeMem, from_raw, generate, load_model, to_raw
    from fademem_core.tinyworld import probes, world

    graph = json.loads((ROOT / "tests" / "api_graphs" / "fademem_tiny_world.json").read_text())
    node = {n["class_type"]: n["inputs"] for n in graph.values()}
    lw, pw, cw = node["FadeMemModelLoader"], node["FadeMemTinyWorldPrompt"], node["FadeMemCache"]
    sw, dw = node["FadeMemSampler"], node["FadeMemTinyWorldDecode"]
    (model,) = NODES["FadeMemModelLoader"]().load(lw["model_name"], lw["lora_name"], lw["lora_strength"],
                                                  lw["weight_dtype"])
    (cond,) = NODES["FadeMemTinyWorldPrompt"]().encode(model, pw["family"], pw["sprite_a"], pw["sprite_b"])
    (cache,) = NODES["FadeMemCache"]().build(cw["budget"], cw["beta"], cw["anchor"], cw["operator"],
                                             cw["positions"])
    length = 1 + 4 * 23  # 24 latent frames = 8 chunks, instead of the workflow's 240
    latent, _ = NODES["FadeMemSampler"]().sample(
        model, cond, cache, sw["width"], sw["height"], length, sw["chunk"], sw["steps"], sw["shift"],
        sw["seed"], sw["context_noise"], sw["context_input"], sw["switch"], sw["sampler"])
    (images,) = NODES["FadeMemTinyWorldDecode"]().decode(latent, dw["scale"])

    # the reference: the core rollout, with the prompt and the sampler taken from the files
    classes = (int(pw["sprite_a"].split()[1]), int(pw["sprite_b"].split()[1]))
    record = json.loads((WEIGHTS / "tiny_world.json").read_text())
    text = world.prompt_embedding(pw["family"], classes, text_dim=record["config"]["text_dim"])
    ref = generate(load_model(WEIGHTS / "tiny_world.safetensors"), text,
                   FadeMem(budget=12, beta=0.3, anchor=True), 24, 64, 64, seed=sw["seed"], chunk=3,
                   **recorded_euler(WEIGHTS / "tiny_world.json"))
    assert torch.equal(latent["samples"], to_raw(ref))
    want = torch.from_numpy(world.to_rgb(ref, scale=dw["scale"])).float()
    assert images.shape == (24, 64, 64, 3)
    assert (images * 255 - want).abs().max() <= 1.0  # the raw -> model space round trip

    # the world's probes read the prompted class of sprite A (on screen from frame 0; sprite B
    # enters after frame 20) back from some frames. How often is the weights' quality, which
    # the demo's own check measures: here it only has to be the prompted class at all.
    reading = probes.read_frames(from_raw(latent["samples"])[0])
    seen_a = reading.cls[reading.visible()[:, 0], 0]
    assert (seen_a == classes[0]).any(), reading.cls[:, 0]
    assert np.isfinite(reading.residual).all()
