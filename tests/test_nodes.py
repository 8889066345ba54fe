"""The node pack in plain pytest (no ComfyUI): declarations, and every node run on the tiny model."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from fademem_core import POLICIES
from tests.support.pack import Recorder, load_pack, node_module

PACK = load_pack()
NODES = PACK.NODE_CLASS_MAPPINGS
comfy = node_module("comfy")
sampler_nodes = node_module("sampler")

EXPECTED = {"FadeMemModelLoader", "FadeMemCache", "FadeMemBaselineCache", "FadeMemSampler",
            "FadeMemPromptSchedule", "FadeMemMemoryLayout", "FadeMemSpectralDecay",
            "FadeMemStreamingSave", "FadeMemTinyWorldPrompt", "FadeMemTinyWorldDecode"}
TEXT_DIM = 32  # tiny_model's text width


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    from fademem_core.model.testing import write_checkpoints

    return write_checkpoints(tmp_path_factory.mktemp("ckpts"))


@pytest.fixture
def models_dir(tmp_path, monkeypatch, checkpoints):
    """A ComfyUI-like models folder with real file names, used through the folder fallback."""
    (tmp_path / "diffusion_models").mkdir()
    (tmp_path / "loras").mkdir()
    shutil.copy(checkpoints.formats["self_forcing.pt"], tmp_path / "diffusion_models" / "self_forcing_dmd.pt")
    shutil.copy(checkpoints.formats["longlive.pth"], tmp_path / "diffusion_models" / "longlive_base.pt")
    shutil.copy(checkpoints.loras["longlive_nested.pt"], tmp_path / "loras" / "lora.pt")
    monkeypatch.setenv("FADEMEM_MODELS_DIR", str(tmp_path))
    return tmp_path


def cond(seed: int, length: int = 16):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(1, length, TEXT_DIM, generator=g), {"pooled_output": None}]]


def fademem(**kw):
    args = {"budget": 4, "beta": 0.3, "anchor": True, "operator": "weighted_average", "positions": "absolute"}
    args.update(kw)
    return NODES["FadeMemCache"]().build(**args)[0]


# ----------------------------------------------------------------------------- declarations
def test_pack_exports_every_node_with_a_display_name():
    assert set(NODES) == EXPECTED
    assert set(PACK.NODE_DISPLAY_NAME_MAPPINGS) == EXPECTED
    assert PACK.WEB_DIRECTORY == "./web"


def _check_input(node: str, name: str, spec) -> None:
    where = f"{node}.{name}"
    kind = spec[0]
    opts = spec[1] if len(spec) > 1 else {}
    assert isinstance(opts.get("tooltip"), str) and len(opts["tooltip"]) > 10, f"{where}: no tooltip"
    if isinstance(kind, list):
        assert kind, f"{where}: empty combo"
        if "default" in opts:
            assert opts["default"] in kind, f"{where}: default not an option"
        return
    assert isinstance(kind, str) and kind.isupper(), f"{where}: bad type {kind!r}"
    if kind in ("INT", "FLOAT"):
        lo, hi, default = opts["min"], opts["max"], opts["default"]
        assert lo <= default <= hi, f"{where}: default {default} outside [{lo}, {hi}]"
        assert opts.get("step", 1) > 0, f"{where}: step"
        if kind == "INT":
            assert all(isinstance(opts[k], int) for k in ("min", "max", "default")), where
            if opts.get("step", 1) > 1:  # the default must be reachable from min with the step
                assert (default - lo) % opts["step"] == 0, f"{where}: default off the step grid"
    if name == "seed":
        assert opts.get("control_after_generate") is True, f"{where}: seed without control_after_generate"
    if kind == "BOOLEAN":
        assert isinstance(opts["default"], bool), where


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_input_types_are_valid(name, models_dir):
    cls = NODES[name]
    spec = cls.INPUT_TYPES()
    assert set(spec) <= {"required", "optional", "hidden"}
    assert spec["required"], name
    for section in ("required", "optional"):
        for input_name, input_spec in spec.get(section, {}).items():
            _check_input(name, input_name, input_spec)
    assert cls.CATEGORY == "FadeMem"
    assert callable(getattr(cls, cls.FUNCTION))
    assert len(cls.RETURN_TYPES) == len(cls.RETURN_NAMES) == len(cls.OUTPUT_TOOLTIPS)
    assert isinstance(cls.DESCRIPTION, str) and cls.DESCRIPTION


def test_every_combo_option_builds_the_policy_it_names():
    from fademem_core import policy_parameters

    cache = node_module("cache")
    spec = cache.FadeMemCache.INPUT_TYPES()["required"]
    for operator in spec["operator"][0]:
        for positions in spec["positions"][0]:
            (policy,) = cache.FadeMemCache().build(12, 0.3, True, operator, positions)
            assert (policy.operator, policy.positions) == (operator, positions)
    kinds = cache.FadeMemBaselineCache.INPUT_TYPES()["required"]["kind"][0]
    built = {type(cache.FadeMemBaselineCache().build(k, -1, -1, "default")[0]).__name__
             for k in kinds}
    assert built == {"SinkWindow", "SlidingWindow", "FullCache", "FadeMemRelease", "InfinityRope",
                     "MemRope", "DeepForcing", "MemFlow"}
    positions = cache.FadeMemBaselineCache.INPUT_TYPES()["required"]["positions"][0]
    for kind in kinds:  # every positions option a kind accepts reaches its policy
        for option in positions[1:]:
            try:
                (policy,) = cache.FadeMemBaselineCache().build(kind, -1, -1, option)
            except ValueError as e:
                assert "positions" in str(e)
            else:
                assert policy.positions == option or "positions" not in policy_parameters(kind)


def test_cache_defaults_are_the_papers():
    req = NODES["FadeMemCache"].INPUT_TYPES()["required"]
    assert (req["budget"][1]["default"], req["beta"][1]["default"], req["anchor"][1]["default"]) == (12, 0.3, True)
    assert req["operator"][1]["default"] == "weighted_average"
    assert req["beta"][1]["display"] == "slider"
    length = NODES["FadeMemSampler"].INPUT_TYPES()["required"]["length"][1]
    assert length["default"] == 957 and length["step"] == 4
    assert sampler_nodes.latent_frames(957) == 240


def test_loader_lists_diffusion_models_and_loras(models_dir):
    req = NODES["FadeMemModelLoader"].INPUT_TYPES()["required"]
    embedded = list(node_module("loader").EMBEDDED)  # the tiny models shipped in the pack first
    assert req["model_name"][0] == embedded + ["longlive_base.pt", "self_forcing_dmd.pt"]
    assert req["lora_name"][0] == ["None", "lora.pt"]


# ----------------------------------------------------------------------------- loader
def test_loader_loads_checkpoint_and_merges_lora(models_dir, checkpoints):
    loader = NODES["FadeMemModelLoader"]()
    (plain,) = loader.load("self_forcing_dmd.pt", "None", 1.0, "fp32")
    ref = checkpoints.model.transformer.state_dict()
    got = plain.transformer.state_dict()
    name = "blocks.0.attn1.to_q.weight"
    torch.testing.assert_close(got[name], ref[name], rtol=0, atol=0)

    strength = 0.5
    (merged,) = loader.load("longlive_base.pt", "lora.pt", strength, "default")
    lora = checkpoints.lora
    module = "blocks.0.attn1.to_q"
    expected = ref[name] + strength * checkpoints.peft_alpha / lora.rank * lora.up[module] @ lora.down[module]
    torch.testing.assert_close(merged.transformer.state_dict()[name], expected, rtol=1e-5, atol=1e-6)
    assert merged.dtype == torch.float32  # default on CPU


@pytest.fixture(scope="module")
def causal_forcing_models(tmp_path_factory, checkpoints):
    """A models folder holding tiny checkpoints in thu-ml Causal-Forcing's two layouts."""
    root = tmp_path_factory.mktemp("cf_models")
    (root / "diffusion_models").mkdir()
    for layout in ("chunkwise", "framewise"):
        shutil.copy(checkpoints.formats[f"causal_forcing_{layout}.pt"],
                    root / "diffusion_models" / f"causal_forcing_{layout}.pt")
    return root


@pytest.mark.parametrize("chunk", [1, 3])
@pytest.mark.parametrize("policy_name", sorted(POLICIES))
def test_causal_forcing_checkpoints_load_and_run_under_every_policy(causal_forcing_models, checkpoints,
                                                                    monkeypatch, policy_name, chunk):
    """Core's autoregressive template models (frame-wise = chunk 1, chunk-wise = chunk 3) through
    FadeMem Model Loader and FadeMem Sampler, against the rollout of the model that wrote them."""
    from fademem_core import generate
    from fademem_core.rollout.sampler import from_raw
    from tests.support.policy_harness import policy_for

    monkeypatch.setenv("FADEMEM_MODELS_DIR", str(causal_forcing_models))
    layout = "framewise" if chunk == 1 else "chunkwise"
    (model,) = NODES["FadeMemModelLoader"]().load(f"causal_forcing_{layout}.pt", "None", 1.0, "default")
    positive = cond(2)
    out = run_sampler(model, positive, policy_for(policy_name, chunk), length=17, chunk=chunk, steps=2)
    direct = generate(checkpoints.model, positive[0][0], policy_for(policy_name, chunk), 5, 32, 64, seed=1,
                      steps=[1000.0, 500.0], shift=5.0, chunk=chunk)
    torch.testing.assert_close(from_raw(out["samples"]), direct, rtol=1e-5, atol=1e-5)


def test_loader_weights_and_lora_alpha(models_dir, checkpoints, capsys):
    loader = NODES["FadeMemModelLoader"]()
    name = "blocks.0.attn1.to_q.weight"
    ref = checkpoints.model.transformer.state_dict()[name]
    (gen,) = loader.load("self_forcing_dmd.pt", "None", 1.0, "fp32", "generator", 0.0)
    torch.testing.assert_close(gen.transformer.state_dict()[name], ref + 1.0, rtol=0, atol=0)
    (ema,) = loader.load("self_forcing_dmd.pt", "None", 1.0, "fp32", "auto", 0.0)
    torch.testing.assert_close(ema.transformer.state_dict()[name], ref, rtol=0, atol=0)
    assert "loaded 'generator_ema'" in capsys.readouterr().err
    (merged,) = loader.load("longlive_base.pt", "lora.pt", 1.0, "default", "auto", 8.0)
    lora, module = checkpoints.lora, "blocks.0.attn1.to_q"
    expected = ref + 8.0 / lora.rank * lora.up[module] @ lora.down[module]
    torch.testing.assert_close(merged.transformer.state_dict()[name], expected, rtol=1e-5, atol=1e-6)
    tooltip = NODES["FadeMemModelLoader"].INPUT_TYPES()["required"]["lora_alpha"][1]["tooltip"]
    assert "alpha = rank" in tooltip and "ASSUMED" in tooltip and "adapter_config.json" in tooltip
    with pytest.raises(ValueError, match="weights"):
        loader.load("self_forcing_dmd.pt", "None", 1.0, "fp32", "best", 0.0)


def test_loader_frees_vram_first_and_uses_comfy_device(models_dir, monkeypatch):
    calls = []
    monkeypatch.setattr(comfy, "free_vram_for_new_model", lambda: calls.append("free"))
    monkeypatch.setattr(comfy, "torch_device", lambda: calls.append("device") or torch.device("cpu"))
    NODES["FadeMemModelLoader"]().load("self_forcing_dmd.pt", "None", 1.0, "bf16")
    assert calls == ["free", "device"]


def test_loader_errors(models_dir, monkeypatch):
    loader = NODES["FadeMemModelLoader"]()
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        loader.load("missing.pt", "None", 1.0, "default")
    with pytest.raises(FileNotFoundError, match="nolora.pt"):
        loader.load("self_forcing_dmd.pt", "nolora.pt", 1.0, "default")
    with pytest.raises(ValueError, match="weight_dtype"):
        loader.load("self_forcing_dmd.pt", "None", 1.0, "int8")


# ----------------------------------------------------------------------------- caches
def test_cache_nodes_build_core_policies():
    from fademem_core.memory.policies import FadeMem, FullCache, SinkWindow, SlidingWindow

    assert fademem(budget=12, beta=0.5, anchor=False, operator="average") == FadeMem(12, 0.5, False, "average")
    base = NODES["FadeMemBaselineCache"]()
    assert base.build("sink_window", 3, 9, "absolute")[0] == SinkWindow(3, 9)
    assert base.build("sliding_window", 3, 12, "packed")[0] == SlidingWindow(12, positions="packed")
    assert base.build("full", 3, 9, "absolute")[0] == FullCache()
    with pytest.raises(ValueError, match="kind"):
        base.build("ring", 3, 9, "absolute")
    with pytest.raises(ValueError, match="budget"):
        fademem(budget=2)


# ----------------------------------------------------------------------------- sampler
@pytest.fixture
def spy_generate(monkeypatch):
    """Record every StepInfo the core hands the node's callback (the real generate runs)."""
    import fademem_core as core  # the nodes call the public name

    real = core.generate
    seen = {"infos": [], "calls": 0, "real": real}

    def wrapped(*args, **kwargs):
        seen["calls"] += 1
        node_callback = kwargs["callback"]

        def callback(info):
            seen["infos"].append(info)
            node_callback(info)

        kwargs["callback"] = callback
        return real(*args, **kwargs)

    monkeypatch.setattr(core, "generate", wrapped)
    return seen


def run_sampler(model, positive, cache, length=29, chunk=3, steps=2, seed=1, width=64, height=32, **kw):
    return NODES["FadeMemSampler"]().sample(model, positive, cache, width, height, length, chunk, steps,
                                            5.0, seed, 0.0, **kw)[0]


def test_sampler_returns_raw_latents_of_the_core_rollout(model, spy_generate, monkeypatch):
    from fademem_core.rollout.sampler import from_raw

    generate = spy_generate["real"]
    bars, texts = [], []
    monkeypatch.setattr(comfy, "progress_bar", lambda total: bars.append(Recorder(total)) or bars[-1])
    monkeypatch.setattr(comfy, "send_text", lambda text, node: texts.append((node, text)))
    policy = fademem()
    positive = cond(0)
    out = run_sampler(model, positive, policy, length=29, chunk=3, steps=2, unique_id="12")
    samples = out["samples"]
    # 29 video frames = 8 latent frames = chunks of 3, 3, 2
    assert samples.shape == (1, 16, 8, 32 // 8, 64 // 8)
    direct = generate(model, positive[0][0], policy, 8, 32, 64, seed=1, steps=[1000.0, 500.0], shift=5.0,
                      chunk=3, context_noise=0.0)
    torch.testing.assert_close(from_raw(samples), direct, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(samples, direct)  # raw space differs from model space

    (bar,) = bars
    assert bar.total == 3 * 2
    assert [u[0] for u in bar.updates] == list(range(1, 7))
    previews = [u[2] for u in bar.updates]
    assert all(p[0] == "JPEG" and p[1].size == (64, 32) for p in previews)
    assert all(node == "12" for node, _ in texts)
    assert any("KV memory" in t for _, t in texts) and "peak KV memory" in texts[-1][1]

    infos = spy_generate["infos"]  # the node's run only: the direct reference bypasses the spy
    assert [(i.chunk, i.step) for i in infos] == [(c, s) for c in range(3) for s in range(2)]


def test_sampler_preview_shows_the_newest_chunk(model, spy_generate, monkeypatch):
    previews = []
    monkeypatch.setattr(sampler_nodes, "preview_image",
                        lambda frame: previews.append(frame.clone()) or _tiny_picture())
    run_sampler(model, cond(0), fademem(), length=29)
    infos = spy_generate["infos"]
    for frame, info in zip(previews, infos):
        torch.testing.assert_close(frame, info.x0[0, :, -1])  # last frame of the current chunk


def _tiny_picture():
    from PIL import Image

    return Image.new("RGB", (8, 8))


@pytest.mark.parametrize("policy_args", [("fademem",), ("sink_window", 1, 4), ("sliding_window", 0, 5)])
def test_sampler_never_exceeds_the_policy_bound(model, spy_generate, policy_args):
    policy = fademem() if policy_args[0] == "fademem" else NODES["FadeMemBaselineCache"]().build(
        policy_args[0], policy_args[1], policy_args[2], "absolute")[0]
    run_sampler(model, cond(0), policy, length=45, chunk=3, steps=1)
    bound = policy.memory_bytes(model.geometry(1, 32, 64), 3)
    peak = max(i.kv_bytes for i in spy_generate["infos"])
    assert 0 < peak <= bound


def test_sampler_checks_interruption_at_every_step(model, monkeypatch):
    class Stop(Exception):
        pass

    calls = []

    def check():
        calls.append(1)
        if len(calls) == 5:
            raise Stop("interrupted by the user")

    monkeypatch.setattr(comfy, "check_interrupted", check)
    with pytest.raises(Stop):
        run_sampler(model, cond(0), fademem(), length=45, chunk=3, steps=2)
    assert len(calls) == 5  # stopped at the 5th step, nothing after


def test_sampler_returns_freed_memory_when_interrupted(model, monkeypatch):
    """Cancel mid-rollout: the cache generate() freed goes back to the driver before the raise."""
    class Stop(Exception):
        pass

    events = []

    def check():
        events.append("step")
        if events.count("step") == 3:
            raise Stop("interrupted by the user")

    monkeypatch.setattr(comfy, "check_interrupted", check)
    monkeypatch.setattr(comfy, "soft_empty_cache", lambda: events.append("empty"))
    with pytest.raises(Stop):
        run_sampler(model, cond(0), fademem(), length=45, chunk=3, steps=2)
    assert events == ["step", "step", "step", "empty"]


def test_sampler_validates_before_any_work(model, spy_generate):
    with pytest.raises(ValueError, match="length"):
        run_sampler(model, cond(0), fademem(), length=30)
    with pytest.raises(ValueError, match="'wan'"):
        run_sampler(model, [[torch.zeros(1, 8, 4096), {}]], fademem())
    with pytest.raises(ValueError, match="Prompt Schedule"):
        run_sampler(model, cond(0) + cond(1), fademem())
    with pytest.raises(ValueError, match="multiples of 16"):
        run_sampler(model, cond(0), fademem(), width=40)
    with pytest.raises(ValueError, match="FadeMem"):  # LongLive's re-cache needs LongLive's memory
        run_sampler(model, cond(0), fademem(), switch="longlive")
    assert spy_generate["calls"] == 0


@pytest.mark.parametrize("switch,context_input", [("longlive_resink", "noised"), ("keep", "clean")])
def test_sampler_passes_switch_and_context_input(model, switch, context_input):
    from fademem_core.rollout.sampler import from_raw, generate

    a, b = cond(1), cond(2)
    (schedule,) = NODES["FadeMemPromptSchedule"]().build(a, conditioning_2=b, start_2=60)
    policy = NODES["FadeMemBaselineCache"]().build("sink_window", 3, 6, "absolute")[0]
    node = NODES["FadeMemSampler"]().sample(model, schedule, policy, 64, 32, 81, 3, 1, 5.0, 1, 100.0,
                                            context_input=context_input, switch=switch)[0]
    kw = dict(steps=[1000.0], shift=5.0, chunk=3, context_noise=100.0)
    sched = [(0, a[0][0]), (15, b[0][0])]
    direct = generate(model, sched, policy, 21, 32, 64, seed=1, switch=switch,
                      context_input=context_input, **kw)
    torch.testing.assert_close(from_raw(node["samples"]), direct, rtol=1e-5, atol=1e-5)
    default = generate(model, sched, policy, 21, 32, 64, seed=1, **kw)  # auto + clean
    assert (direct - default).abs().max() > 1e-4


def test_sampler_continues_a_prefix_and_returns_the_whole_clip(model, spy_generate, monkeypatch):
    """prefix = raw latents (core VAE Encode); latent = new frames, with_prefix = prefix + new."""
    from fademem_core.rollout.sampler import from_raw, to_raw

    generate = spy_generate["real"]
    bars = []
    monkeypatch.setattr(comfy, "progress_bar", lambda total: bars.append(Recorder(total)) or bars[-1])
    policy = fademem()
    given = to_raw(torch.randn(1, 16, 4, 4, 8, generator=torch.Generator().manual_seed(3)))
    node = NODES["FadeMemSampler"]()
    new, whole = node.sample(model, cond(0), policy, 64, 32, 21, 3, 2, 5.0, 1, 0.0,
                             prefix={"samples": given})
    # 21 video frames = 6 new latent frames after the 4 of the prefix
    assert new["samples"].shape == (1, 16, 6, 4, 8) and whole["samples"].shape == (1, 16, 10, 4, 8)
    assert torch.equal(whole["samples"][:, :, :4], given)  # the prefix exactly as it came in
    assert torch.equal(whole["samples"][:, :, 4:], new["samples"])
    direct = generate(model, cond(0)[0][0], policy, 6, 32, 64, seed=1, steps=[1000.0, 500.0],
                      shift=5.0, chunk=3, prefix=from_raw(given))
    torch.testing.assert_close(from_raw(new["samples"]), direct, rtol=1e-5, atol=1e-5)
    (bar,) = bars
    assert bar.total == 4 * 2  # prefix chunks of 1 and 3 frames, then 2 new chunks, 2 steps each
    assert bar.updates[-1][0] == bar.total
    assert [i.primed for i in spy_generate["infos"]][:2] == [True, True]


def test_sampler_without_prefix_returns_the_new_frames_twice(model):
    new, whole = NODES["FadeMemSampler"]().sample(model, cond(0), fademem(), 64, 32, 9, 3, 1, 5.0,
                                                  1, 0.0)
    assert torch.equal(new["samples"], whole["samples"])


def test_sampler_refuses_a_bad_prefix_before_sampling(model, spy_generate):
    with pytest.raises(ValueError, match="prefix must be a video LATENT"):
        run_sampler(model, cond(0), fademem(), prefix={"samples": torch.zeros(1, 16, 4, 8)})
    with pytest.raises(ValueError, match="requested size needs 4x8"):
        run_sampler(model, cond(0), fademem(), prefix={"samples": torch.zeros(1, 16, 2, 60, 104)})
    with pytest.raises(ValueError, match="channels"):
        run_sampler(model, cond(0), fademem(), prefix={"samples": torch.zeros(1, 48, 2, 4, 8)})
    assert spy_generate["infos"] == []


def test_prompt_schedule_drives_the_core_schedule(model):
    from fademem_core.rollout.sampler import from_raw, generate

    a, b, c = cond(1), cond(2), cond(3)
    (schedule,) = NODES["FadeMemPromptSchedule"]().build(a, conditioning_2=b, start_2=12, conditioning_3=c,
                                                         start_3=21)
    assert [entry[1][sampler_nodes.START_KEY] for entry in schedule] == [0, 3, 6]
    assert schedule[0][1]["pooled_output"] is None  # other conditioning keys are kept
    out = run_sampler(model, schedule, fademem(), length=33, steps=1)
    direct = generate(model, [(0, a[0][0]), (3, b[0][0]), (6, c[0][0])], fademem(), 9, 32, 64, seed=1,
                      steps=[1000.0], shift=5.0, chunk=3)
    torch.testing.assert_close(from_raw(out["samples"]), direct, rtol=1e-5, atol=1e-5)
    single = run_sampler(model, a, fademem(), length=33, steps=1)
    assert not torch.allclose(single["samples"], out["samples"])  # the switches changed the video


def test_prompt_schedule_skips_unconnected_and_rejects_disorder():
    node = NODES["FadeMemPromptSchedule"]()
    (only_one,) = node.build(cond(1), start_2=320, conditioning_3=cond(3), start_3=8)
    assert [e[1][sampler_nodes.START_KEY] for e in only_one] == [0, 2]
    with pytest.raises(ValueError, match="start_3"):
        node.build(cond(1), conditioning_2=cond(2), start_2=40, conditioning_3=cond(3), start_3=40)


# ----------------------------------------------------------------------------- layout
def test_memory_layout_image():
    from fademem_core.memory.picture import draw_layout

    (image,) = NODES["FadeMemMemoryLayout"]().draw(fademem(budget=12, beta=0.3), 957, 400, 300)
    assert image.shape == (1, 300, 400, 3) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    ref = np.asarray(draw_layout(240, 12, 0.3, anchor=True, width=400, height=300), dtype=np.float32) / 255
    np.testing.assert_array_equal(image[0].numpy(), ref)
    (other,) = NODES["FadeMemMemoryLayout"]().draw(fademem(budget=12, beta=0.9), 957, 400, 300)
    assert not torch.equal(image, other)  # beta changes the picture
    with pytest.raises(ValueError, match="SinkWindow"):
        NODES["FadeMemMemoryLayout"]().draw(NODES["FadeMemBaselineCache"]().build("sink_window", 3, 9, "absolute")[0],
                                            957, 400, 300)


def test_preview_image_projects_a_latent_frame():
    frame = torch.zeros(16, 4, 6)
    frame[0::3] = 3.0  # strong "red" group in the fallback projection
    image = sampler_nodes.preview_image(frame)
    assert image.size == (6 * 8, 4 * 8)
    r, g, b = image.getpixel((0, 0))
    assert r > 240 and g == b == 128


@pytest.mark.parametrize("batch,length", [(3, 45), (2, 9)])
def test_sampler_frees_and_shows_the_bound_generate_allocates(model, spy_generate, monkeypatch, batch, length):
    """The conditioning's batch and the video's length set what is allocated; the node asks
    ComfyUI to free exactly that and shows it."""
    freed, texts = [], []
    monkeypatch.setattr(comfy, "free_memory", lambda nbytes: freed.append(nbytes))
    monkeypatch.setattr(comfy, "send_text", lambda text, node: texts.append(text))
    g = torch.Generator().manual_seed(3)
    positive = [[torch.randn(batch, 16, TEXT_DIM, generator=g), {"pooled_output": None}]]
    policy = fademem(budget=12)
    run_sampler(model, positive, policy, length=length, chunk=3, steps=1)
    allocated = {i.kv_bytes for i in spy_generate["infos"]}
    frames = (length - 1) // 4 + 1
    slot = model.geometry(batch, 32, 64).slot_bytes(True)
    assert allocated == {min(12 + 3, frames) * slot} == set(freed)  # written out: slots x slot bytes
    assert f"bound {freed[0] / 2**20:.1f} MiB" in texts[-1]


def test_schedule_starts_inside_one_chunk_are_refused_naming_the_widgets(model, spy_generate):
    """Valid widget values (start_2=4, start_3=8 video frames = latent 1 and 2) both fall in
    chunk 1 of a chunk-3 rollout: refused before sampling, not silently dropped."""
    a, b, c = cond(0), cond(1), cond(2)
    (schedule,) = NODES["FadeMemPromptSchedule"]().build(a, conditioning_2=b, start_2=4, conditioning_3=c,
                                                         start_3=8)
    with pytest.raises(ValueError, match=r"prompt 2 \(start_2=4\) and prompt 3 \(start_3=8\) take over in the "
                                         r"same chunk, chunk 1 \(latent frames 3-5\)"):
        run_sampler(model, schedule, fademem(), length=45, chunk=3, steps=1)
    assert spy_generate["infos"] == []
    run_sampler(model, schedule, fademem(), length=45, chunk=1, steps=1)  # chunk 1: each gets a chunk


def test_sampler_node_with_a_tiny_positive_shift(model):
    out = NODES["FadeMemSampler"]().sample(model, cond(0), fademem(), 64, 32, 9, 3, 2, 1e-300, 0, 0.0)[0]
    assert torch.isfinite(out["samples"]).all()


def test_node_lengths_are_capped_at_the_widget_maximum_even_from_the_api():
    top = sampler_nodes.MAX_LENGTH
    assert sampler_nodes.length_input("")[1]["max"] == top
    assert sampler_nodes.latent_frames(top) == (top - 1) // 4 + 1
    with pytest.raises(ValueError, match=f"at most {top}"):
        sampler_nodes.latent_frames(top + 4)
    with pytest.raises(ValueError, match=f"at most {top}"):
        NODES["FadeMemMemoryLayout"]().draw(fademem(), 4 * 10**9 + 1, 256, 256)


@pytest.mark.parametrize("kind", ["sink_window", "sliding_window", "full", "self_forcing",
                                  "fademem_release", "infinity_rope", "memrope", "deep_forcing",
                                  "memflow"])
def test_every_baseline_kind_at_the_widget_defaults_is_its_policy_at_its_defaults(kind):
    from fademem_core import policy_from_name, policy_parameters

    spec = NODES["FadeMemBaselineCache"].INPUT_TYPES()["required"]
    defaults = {name: opts[1]["default"] for name, opts in spec.items() if name != "kind"}
    (policy,) = NODES["FadeMemBaselineCache"]().build(kind, **defaults)
    assert policy == policy_from_name(kind)
    for name in policy_parameters(kind):  # each parameter is a widget whose tooltip names the kind
        assert kind in spec[name][1]["tooltip"] or name == "positions", (kind, name)


def test_baseline_widgets_reach_the_policy_and_bad_values_are_refused():
    from fademem_core import DeepForcing, FadeMemRelease, InfinityRope, MemFlow, MemRope, SlidingWindow

    base = NODES["FadeMemBaselineCache"]()
    assert base.build("fademem_release", -1, -1, "absolute", budget=8, beta=0.5)[0] == \
        FadeMemRelease(budget=8, beta=0.5, positions="absolute")
    assert base.build("infinity_rope", 2, 9, "default", flush_keep=1)[0] == \
        InfinityRope(sink=2, window=9, flush_keep=1)
    assert base.build("memrope", 1, -1, "default", recent=2, alpha_short=0.5)[0] == \
        MemRope(sink=1, recent=2, alpha_short=0.5)
    assert base.build("self_forcing", 5, -1, "packed")[0] == SlidingWindow(21, positions="packed")
    assert base.build("deep_forcing", 6, 12, "default", recent=3)[0] == \
        DeepForcing(sink=6, window=12, recent=3)
    assert base.build("deep_forcing", -1, -1, "packed")[0] == DeepForcing(positions="packed")
    assert base.build("memflow", 2, -1, "default", bank=4, interval=1)[0] == \
        MemFlow(sink=2, bank=4, interval=1)
    with pytest.raises(ValueError, match="window"):
        base.build("deep_forcing", 10, 12, "default")  # sink + recent > window
    with pytest.raises(ValueError, match="positions"):
        base.build("fademem_release", -1, -1, "packed")
    with pytest.raises(ValueError, match="alpha_long"):
        base.build("memrope", -1, -1, "default", alpha_long=1.5)


def test_every_registered_memory_is_a_baseline_kind_or_the_fademem_node():
    from fademem_core.memory.policies import POLICIES, PRESETS
    from nodes.cache import BASELINES

    assert {k.replace("_", "") for k in BASELINES} | {"fademem"} == set(POLICIES) | set(PRESETS)
