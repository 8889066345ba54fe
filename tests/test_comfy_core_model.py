"""Core's loaders feeding FadeMem Sampler in a real ComfyUI (runs only with COMFYUI_PATH set).

    COMFYUI_PATH=/path/to/ComfyUI COMFYUI_PYTHON=/path/to/its/python pytest tests/test_comfy_core_model.py

A tiny causal Wan in ComfyUI's names (width 256 = 2 heads x 128, text 4096, frequency 256: the
sizes core's Wan detection assumes) is loaded by core **Load Diffusion Model** (UNETLoader),
optionally through core **LoraLoaderModelOnly**, and sampled by FadeMem Sampler.  The latents
are compared with fademem_core run here on the same files (our loader and our LoRA merge: an
implementation independent of ComfyUI's patching).  A test-only node checks, inside ComfyUI,
that the model the sampler runs shares the patcher's tensors and that they carry the LoRA.
"""
from __future__ import annotations

import json

import pytest

from tests.support.comfy_host import COMFYUI_PATH, HELPER, TINY, make_base, start_comfy
from tests.support.pack import ROOT

if not COMFYUI_PATH:
    pytest.skip("COMFYUI_PATH is not set: the real-ComfyUI core-loader test was SKIPPED",
                allow_module_level=True)

CORE_WAN = "tiny_causal_wan_comfy.safetensors"
LORA = "tiny_causal_wan_lora.safetensors"
SIZE = {"heads": 2, "head_dim": 128, "text_dim": 4096, "freq_dim": 256, "ffn": 64}
TEXT_SEED, TEXT_LEN, TEXT_DIM = 7, 12, 4096
LORA_STRENGTH = 0.7

SHARING_HELPER = '''

class FadeMemTestSharing:
    """Test only: what FadeMem builds from a core MODEL, once ComfyUI loaded and patched it."""

    CATEGORY = "FadeMem/testing"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "check"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",)}}

    def check(self, model):
        import json
        import sys
        from safetensors.torch import load_file

        loader = next(m for name, m in sys.modules.items()
                      if name.endswith("nodes.loader") and hasattr(m, "core_causal_wan"))
        comfy_services = sys.modules[loader.__name__.rsplit(".", 1)[0] + ".comfy"]
        comfy_services.load_models([model], 0)
        ours = loader.core_causal_wan(model)
        held = model.model.diffusion_model
        pairs = [(ours.transformer.blocks[i].attn1.to_q.weight, held.blocks[i].self_attn.q.weight)
                 for i in range(len(held.blocks))]
        pairs += [(ours.transformer.blocks[i].ffn.net[2].weight, held.blocks[i].ffn[2].weight)
                  for i in range(len(held.blocks))]
        import folder_paths
        original = load_file(folder_paths.get_full_path("diffusion_models", "__CORE__"))
        q0 = ours.transformer.blocks[0].attn1.to_q.weight
        report = {"shared": all(a.data_ptr() == b.data_ptr() for a, b in pairs),
                  "q0_change": float((q0.float().cpu() - original["blocks.0.self_attn.q.weight"].float()).abs().max()),
                  "dtype": str(ours.dtype)}
        return {"ui": {"text": [json.dumps(report)]}}


NODE_CLASS_MAPPINGS["FadeMemTestSharing"] = FadeMemTestSharing
'''.replace("__CORE__", CORE_WAN)


def tiny_core_model():
    from fademem_core import tiny_model

    return tiny_model(3, **SIZE)


def write_models(base):
    """The tiny model in ComfyUI's (original Wan) names and a kohya-style LoRA on every q and v."""
    import torch
    from safetensors.torch import save_file

    from fademem_core.model.testing import original_state_dict

    save_file(original_state_dict(tiny_core_model()), str(base / "models" / "diffusion_models" / CORE_WAN))
    g = torch.Generator().manual_seed(11)
    lora = {}
    for i in range(SIZE.get("layers", 2)):
        for proj in ("self_attn.q", "self_attn.v", "cross_attn.o", "ffn.0"):
            out_dim, in_dim = (SIZE["ffn"], 256) if proj == "ffn.0" else (256, 256)
            name = f"diffusion_model.blocks.{i}.{proj}"
            lora[f"{name}.lora_down.weight"] = torch.randn(4, in_dim, generator=g) * 0.2
            lora[f"{name}.lora_up.weight"] = torch.randn(out_dim, 4, generator=g) * 0.2
            lora[f"{name}.alpha"] = torch.tensor(2.0)
    (base / "models" / "loras").mkdir(parents=True, exist_ok=True)
    save_file(lora, str(base / "models" / "loras" / LORA))


@pytest.fixture(scope="module")
def core_comfy(tmp_path_factory):
    """A real ComfyUI with the pack, the test-only nodes (seeded conditioning, the sharing
    check) and the tiny model in ComfyUI's names plus a LoRA for it."""
    base = make_base(tmp_path_factory.mktemp("comfy_core_base"), ROOT, HELPER + SHARING_HELPER, TINY)
    write_models(base)
    with start_comfy(base) as server:
        yield server


def graph(weight_dtype="default", lora=False, check_sharing=False):
    model = ["1", 0]
    g = {
        "1": {"class_type": "UNETLoader", "inputs": {"unet_name": CORE_WAN, "weight_dtype": weight_dtype}},
        "2": {"class_type": "FadeMemTestConditioning",
              "inputs": {"seed": TEXT_SEED, "length": TEXT_LEN, "dim": TEXT_DIM}},
        "3": {"class_type": "FadeMemCache",
              "inputs": {"budget": 4, "beta": 0.3, "anchor": True, "operator": "weighted_average",
                         "positions": "absolute"}},
    }
    if lora:
        g["6"] = {"class_type": "LoraLoaderModelOnly",
                  "inputs": {"model": ["1", 0], "lora_name": LORA, "strength_model": LORA_STRENGTH}}
        model = ["6", 0]
    g["4"] = {"class_type": "FadeMemSampler",
              "inputs": {"model": model, "positive": ["2", 0], "cache": ["3", 0], "width": 64, "height": 32,
                         "length": 17, "chunk": 3, "steps": 2, "shift": 5.0, "seed": 4,
                         "context_noise": 0.0, "context_input": "clean", "switch": "auto"}}
    g["5"] = {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": "fademem_core/x"}}
    if check_sharing:
        g["7"] = {"class_type": "FadeMemTestSharing", "inputs": {"model": model}}
    return g


def run_latent(comfy, g):
    from safetensors.torch import load_file

    entry = comfy.run(g)
    assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{comfy.log_tail()}"
    (saved,) = entry["outputs"]["5"]["latents"]
    latent = load_file(str(comfy.base / "output" / saved["subfolder"] / saved["filename"]))["latent_tensor"]
    return latent, entry


def direct(comfy, lora=False, round_fp8=False):
    """The same rollout by fademem_core here, on the same files (our loader, our LoRA merge)."""
    import torch
    from safetensors.torch import load_file, save_file

    from fademem_core import FadeMem, generate, load_model

    path = comfy.base / "models" / "diffusion_models" / CORE_WAN
    if round_fp8:  # what Load Diffusion Model's fp8_e4m3fn option stores (read back from core
        # 0.3.64): every weight rounded to fp8 but the patch embedding, which stays as loaded
        rounded = {k: v if k.startswith("patch_embedding.") else v.to(torch.float8_e4m3fn).float()
                   for k, v in load_file(str(path)).items()}
        path = comfy.base / "rounded.safetensors"
        save_file(rounded, str(path))
    lora_path = comfy.base / "models" / "loras" / LORA if lora else None
    model = load_model(path, lora=lora_path, lora_strength=LORA_STRENGTH, dtype=torch.float32, device="cpu")
    text = torch.randn(1, TEXT_LEN, TEXT_DIM, generator=torch.Generator().manual_seed(TEXT_SEED))
    return generate(model, text, FadeMem(4, 0.3, True), 5, 32, 64, seed=4, steps=[1000.0, 500.0],
                    shift=5.0, chunk=3)


def test_sampler_accepts_either_model_type(core_comfy):
    status, info = core_comfy.get_json("/object_info")
    assert status == 200
    for name in ("FadeMemSampler", "FadeMemStreamingSave"):
        assert info[name]["input"]["required"]["model"][0] == "FADEMEM_MODEL,MODEL", name
    assert CORE_WAN in info["UNETLoader"]["input"]["required"]["unet_name"][0]


def test_load_diffusion_model_samples_as_our_loader(core_comfy):
    import torch

    from fademem_core import from_raw

    latent, _ = run_latent(core_comfy, graph())
    assert latent.shape == (1, 16, 5, 4, 8)
    torch.testing.assert_close(from_raw(latent), direct(core_comfy), rtol=1e-4, atol=1e-4)


def test_core_lora_loader_patches_apply_and_weights_are_shared(core_comfy):
    import torch

    from fademem_core import from_raw

    latent, entry = run_latent(core_comfy, graph(lora=True, check_sharing=True))
    report = json.loads(entry["outputs"]["7"]["text"][0])
    assert report["shared"] is True, report
    assert report["q0_change"] > 1e-4, report  # the weights FadeMem runs carry the LoRA
    with_lora = direct(core_comfy, lora=True)
    torch.testing.assert_close(from_raw(latent), with_lora, rtol=1e-4, atol=1e-4)
    assert (with_lora - direct(core_comfy)).abs().max() > 1e-2  # the LoRA changes the video


def test_fp8_weight_dtype_runs_upcast_per_layer(core_comfy):
    import torch

    from fademem_core import from_raw

    latent, _ = run_latent(core_comfy, graph(weight_dtype="fp8_e4m3fn"))
    got = from_raw(latent)
    assert torch.isfinite(got).all()
    rounded = direct(core_comfy, round_fp8=True)
    # measured on CPU (float32 compute): 2.4e-7 from the rounded reference, 0.049 from full precision
    assert float((got - rounded).abs().max()) <= 1e-5
    assert float((got - direct(core_comfy)).abs().max()) > 1e-3  # the fp8 weights are what ran
