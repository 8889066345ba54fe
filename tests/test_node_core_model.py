"""The samplers' model input with a core MODEL (Load Diffusion Model), in plain pytest.

A stand-in ModelPatcher holds a ComfyUI-style Wan module (original names); the real ComfyUI is
tests/test_comfy_core_model.py."""
from __future__ import annotations

import types

import pytest
import torch

import fademem_core
from tests.support.pack import load_pack, node_module

NODES = load_pack().NODE_CLASS_MAPPINGS
comfy = node_module("comfy")
W, H, TEXT_DIM = 64, 32, 32


def module_holding(sd):
    """A module tree whose state dict is ``sd`` (the same tensors), as ComfyUI's WanModel is."""
    root = torch.nn.Module()
    for name, t in sd.items():
        *path, leaf = name.split(".")
        m = root
        for part in path:
            if part not in m._modules:
                m.add_module(part, torch.nn.Module())
            m = m._modules[part]
        m.register_parameter(leaf, torch.nn.Parameter(t, requires_grad=False))
    return root


class FakePatcher:
    """What core Load Diffusion Model hands over: ``.model.diffusion_model`` and its patches."""

    def __init__(self, diffusion_model, manual_cast_dtype=None):
        self.patches = {}
        self.model = types.SimpleNamespace(diffusion_model=diffusion_model, manual_cast_dtype=manual_cast_dtype)


@pytest.fixture
def patcher(model):
    from fademem_core.model.testing import original_state_dict

    return FakePatcher(module_holding(original_state_dict(model)))


@pytest.fixture
def loads(monkeypatch):
    """Every comfy.load_models / free_memory call; ``on_load`` stands in for ComfyUI's patching."""
    seen = {"loads": [], "frees": [], "on_load": None}

    def load_models(patchers, reserve=None):
        seen["loads"].append((list(patchers), reserve))
        if seen["on_load"] and patchers:
            seen["on_load"]()

    monkeypatch.setattr(comfy, "load_models", load_models)
    monkeypatch.setattr(comfy, "free_memory", lambda n: seen["frees"].append(n))
    return seen


@pytest.fixture
def used(monkeypatch):
    """The model generate() ran."""
    seen = []
    real = fademem_core.generate

    def spy(model, *args, **kwargs):
        seen.append(model)
        return real(model, *args, **kwargs)

    monkeypatch.setattr(fademem_core, "generate", spy)
    return seen


def cond(seed=0):
    return [[torch.randn(1, 8, TEXT_DIM, generator=torch.Generator().manual_seed(seed)), {"pooled_output": None}]]


def cache():
    return NODES["FadeMemCache"]().build(4, 0.3, True, "weighted_average", "absolute")[0]


def sample(model, **kw):
    return NODES["FadeMemSampler"]().sample(model, cond(), cache(), W, H, 17, 3, 2, 5.0, 1, 0.0, **kw)[0]["samples"]


def test_both_samplers_take_either_model_type():
    loader_type = NODES["FadeMemModelLoader"].RETURN_TYPES[0]
    for name in ("FadeMemSampler", "FadeMemStreamingSave"):
        kind = NODES[name].INPUT_TYPES()["required"]["model"][0]
        assert set(kind.split(",")) == {loader_type, "MODEL"}, name


def test_core_model_samples_what_our_loader_does_on_shared_weights(model, patcher, loads, used):
    expected = sample(model)
    assert loads["loads"] == [] and len(loads["frees"]) == 1  # our model: memory freed, no core load
    got = sample(patcher)
    assert torch.equal(got, expected)
    ((patchers, reserve),) = loads["loads"]
    assert patchers == [patcher] and reserve == loads["frees"][0]  # the same KV room kept free
    assert len(loads["frees"]) == 1  # a core model is loaded by ComfyUI, nothing else freed
    ran = used[-1]
    held = patcher.model.diffusion_model
    assert ran.transformer.blocks[0].attn1.to_q.weight.data_ptr() == held.get_parameter("blocks.0.self_attn.q.weight").data_ptr()
    assert ran.transformer.blocks[1].ffn.net[2].weight.data_ptr() == held.get_parameter("blocks.1.ffn.2.weight").data_ptr()


def test_weights_are_taken_after_comfyui_patched_them(model, patcher, loads):
    """ComfyUI applies LoRA patches when it loads the model (set_attr_param swaps the tensor):
    the rollout must run the patched tensors, not the ones held before loading."""
    held = patcher.model.diffusion_model.get_submodule("blocks.0.self_attn.v")
    patched = held.weight.detach() * 1.5

    def apply_patch():
        held.weight = torch.nn.Parameter(patched, requires_grad=False)

    loads["on_load"] = apply_patch
    got = sample(patcher)
    reference = fademem_core.tiny_model(0)
    with torch.no_grad():
        reference.transformer.blocks[0].attn1.to_v.weight.copy_(patched)
    assert torch.equal(got, sample(reference))
    assert not torch.equal(got, sample(model))


def test_manual_cast_dtype_is_the_compute_dtype(model, loads, used):
    from fademem_core.model.testing import original_state_dict

    bf16 = {k: v.to(torch.bfloat16) for k, v in original_state_dict(model).items()}
    sample(FakePatcher(module_holding(bf16), manual_cast_dtype=torch.float32))
    assert used[-1].dtype == torch.float32
    assert used[-1].transformer.blocks[0].attn1.to_q.weight.dtype == torch.bfloat16  # stored, shared


def test_streaming_sibling_loads_the_core_model_with_the_vae(model, patcher, loads, tmp_path, monkeypatch):
    from fademem_core.rollout.vae_testing import tiny_wan_vae

    monkeypatch.setenv("FADEMEM_OUTPUT_DIR", str(tmp_path))
    vae = tiny_wan_vae(seed=1)

    def run(m, prefix):
        NODES["FadeMemStreamingSave"]().save(m, cond(), cache(), W, H, 17, 3, 2, 5.0, 1, 0.0, False, vae,
                                             prefix, 0)
        return (tmp_path / f"{prefix}_00001_.mp4").read_bytes()

    run(model, "ours")
    run(patcher, "core")
    assert [p for p, _ in loads["loads"]] == [[], [patcher]]  # loaded together with the VAE
    import av
    import numpy as np

    def frames(name):
        with av.open(str(tmp_path / f"{name}_00001_.mp4")) as c:
            return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])

    assert np.array_equal(frames("ours"), frames("core"))


def test_wrong_models_are_refused_before_any_loading(loads):
    with pytest.raises(ValueError, match="Load Diffusion Model"):
        sample(object())
    sd_unet = FakePatcher(module_holding({"input_blocks.0.0.weight": torch.zeros(4, 4)}))
    with pytest.raises(ValueError, match="not usable by FadeMem.*not a Wan DiT"):
        sample(sd_unet)
    assert loads["loads"] == [] and loads["frees"] == []
