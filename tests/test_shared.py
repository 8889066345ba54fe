"""causal_wan_from_weights: a CausalWan over weights a host (ComfyUI) holds, shared not copied.

References are independent of the code under test: the same weights written to a file and read
by load_model (the pack's loader), or rounded / dequantised by hand before that."""
from __future__ import annotations

import pytest
import torch

from fademem_core import generate, load_model
from fademem_core.memory.policies import POLICIES
from fademem_core.model.shared import UpcastLinear, causal_wan_from_weights
from fademem_core.model.testing import original_state_dict
from tests.support.policy_harness import policy_for

W, H, FRAMES = 32, 32, 4
FP8 = torch.float8_e4m3fn


def text():
    return torch.randn(1, 6, 32, generator=torch.Generator().manual_seed(3))


def rollout(m, policy=None, chunk=2):
    policy = policy or POLICIES["fademem"](budget=3)
    return generate(m, text(), policy, FRAMES, H, W, seed=5, steps=[1000.0, 500.0], chunk=chunk)


def file_model(tmp_path, sd, dtype=torch.float32, name="ref.safetensors"):
    """The pack's own loader on ``sd`` written to a file: the independent reference."""
    from safetensors.torch import save_file

    path = tmp_path / name
    save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    return load_model(path, dtype=dtype, device="cpu")


def linear_names(sd):
    """Original-name Linear weights (2-D) of a Wan state dict."""
    return [k for k, v in sd.items() if v.ndim == 2 and k.endswith(".weight")]


@pytest.mark.parametrize("prefix", ["", "model.diffusion_model.", "diffusion_model."])
def test_linear_weights_are_shared_not_copied(model, prefix):
    sd = original_state_dict(model, prefix)
    shared = causal_wan_from_weights(sd)
    ours = {p.data_ptr() for p in shared.transformer.parameters()}
    big = [k for k in linear_names(sd) if "time_embedding" not in k and "time_projection" not in k]
    assert big and all(sd[k].data_ptr() in ours for k in big), "a Linear weight was copied"
    q = shared.transformer.blocks[1].attn1.to_q.weight
    assert q.data_ptr() == sd[f"{prefix}blocks.1.self_attn.q.weight"].data_ptr()
    # what the host holds is left as it was (the float32 copies are ours)
    assert all(v.dtype == torch.float32 for v in sd.values())


def test_a_module_is_taken_as_its_state_dict(model):
    shared = causal_wan_from_weights(model.transformer)  # diffusers names, a module
    assert shared.transformer.blocks[0].ffn.net[2].weight.data_ptr() == \
        model.transformer.blocks[0].ffn.net[2].weight.data_ptr()


@pytest.mark.parametrize("chunk", [1, 3])
@pytest.mark.parametrize("name", sorted(POLICIES))
def test_rollout_equals_the_loaded_file_under_every_policy(model, tmp_path, name, chunk):
    sd = original_state_dict(model, "model.diffusion_model.")
    got = rollout(causal_wan_from_weights(sd), policy_for(name, chunk), chunk)
    assert torch.equal(got, rollout(file_model(tmp_path, sd), policy_for(name, chunk), chunk))


def test_bf16_weights_run_in_bf16_sharing_storage(model, tmp_path):
    sd = {k: v.to(torch.bfloat16) for k, v in original_state_dict(model).items()}
    shared = causal_wan_from_weights(sd)
    assert shared.dtype == torch.bfloat16
    assert shared.transformer.blocks[0].attn2.to_v.weight.data_ptr() == sd["blocks.0.cross_attn.v.weight"].data_ptr()
    assert torch.equal(rollout(shared), rollout(file_model(tmp_path, sd, torch.bfloat16)))


def test_manual_cast_bf16_weights_computed_in_float32_upcast_per_layer(model, tmp_path):
    """ComfyUI's manual cast: weights stored bf16, computed in float32, cast per layer."""
    sd = {k: v.to(torch.bfloat16) for k, v in original_state_dict(model).items()}
    shared = causal_wan_from_weights(sd, compute_dtype=torch.float32)
    assert shared.dtype == torch.float32
    layer = shared.transformer.blocks[0].attn1.to_k
    assert isinstance(layer, UpcastLinear) and layer.weight.dtype == torch.bfloat16
    assert layer.weight.data_ptr() == sd["blocks.0.self_attn.k.weight"].data_ptr()
    widened = {k: v.float() for k, v in sd.items()}  # the same values, cast by hand
    assert torch.equal(rollout(shared), rollout(file_model(tmp_path, widened)))


def _fp8(sd):
    """Every Linear weight stored as float8 e4m3fn (what Load Diffusion Model's fp8 option does)."""
    return {k: (v.to(FP8) if k in linear_names(sd) else v) for k, v in sd.items()}


def test_fp8_weights_run_upcast_per_layer(model, tmp_path):
    sd = _fp8(original_state_dict(model))
    shared = causal_wan_from_weights(sd)
    assert shared.dtype == torch.bfloat16  # fp8 computes in bf16 unless told otherwise
    layer = shared.transformer.blocks[1].ffn.net[0].proj
    assert isinstance(layer, UpcastLinear) and layer.weight.dtype == FP8
    assert layer.weight.data_ptr() == sd["blocks.1.ffn.0.weight"].data_ptr()
    # reference: the fp8 values widened to bf16 by hand, loaded as a bf16 file
    widened = {k: (v.to(torch.bfloat16) if v.dtype == FP8 else v) for k, v in sd.items()}
    got = rollout(shared)
    assert torch.equal(got, rollout(file_model(tmp_path, widened, torch.bfloat16)))
    assert torch.isfinite(got).all()


def test_scaled_fp8_weights_are_dequantised_weight_times_scale(model, tmp_path):
    base = original_state_dict(model)
    sd, widened = {}, {}
    for k, v in base.items():
        if k in linear_names(base):
            scale = v.abs().amax() / 448.0  # e4m3fn's largest finite value
            q = (v / scale).to(FP8)
            sd[k], sd[k[: -len(".weight")] + ".scale_weight"] = q, scale.reshape(1)
            sd[k[: -len(".weight")] + ".scale_input"] = torch.ones(1)
            widened[k] = q.to(torch.float32) * scale.float()
        else:
            sd[k] = widened[k] = v
    sd["scaled_fp8"] = torch.zeros(0, dtype=FP8)  # the marker ComfyUI's scaled files carry
    got = rollout(causal_wan_from_weights(sd, compute_dtype=torch.float32))
    assert torch.equal(got, rollout(file_model(tmp_path, widened)))


def test_refusals_name_what_was_found(model):
    sd = original_state_dict(model)
    with pytest.raises(ValueError, match="weight_dtype"):
        causal_wan_from_weights({k: (v.to(torch.int8) if k in linear_names(sd) else v) for k, v in sd.items()})
    with pytest.raises(ValueError, match="not a Wan DiT"):
        causal_wan_from_weights({"input_blocks.0.0.weight": torch.zeros(4, 4)})
    i2v = dict(sd, **{"img_emb.proj.0.bias": torch.zeros(4)})
    with pytest.raises(ValueError, match="image-to-video"):
        causal_wan_from_weights(i2v)
    with pytest.raises(ValueError, match="compute dtype"):
        causal_wan_from_weights(sd, compute_dtype=torch.int8)
    with pytest.raises(ValueError, match="state dict or a torch module"):
        causal_wan_from_weights([1, 2])
