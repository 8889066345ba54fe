"""load_model: every checkpoint format, shape-inferred config, LoRA merge, clear refusals."""
from __future__ import annotations

import pytest
import torch

from fademem_core import generate, load_model, tiny_model, FullCache
from fademem_core.model.loading import infer_config, save_model, to_diffusers_names
from fademem_core.model.testing import original_name, write_checkpoints


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    return write_checkpoints(tmp_path_factory.mktemp("ckpt"), seed=0)


def _weights(model):
    return {k: v.detach().float() for k, v in model.transformer.state_dict().items()}


FORMATS = [
    "diffusers_meta.safetensors", "diffusers.safetensors", "original.safetensors", "comfy.safetensors",
    "model_prefix.safetensors", "self_forcing.pt", "longlive.pth", "longlive_trainer.pt", "causvid.pt",
    "flat.pt", "causal_forcing_chunkwise.pt", "causal_forcing_framewise.pt",
]


@pytest.mark.parametrize("name", FORMATS)
def test_every_format_loads_identical_weights(ck, name):
    m = load_model(ck.formats[name], device="cpu")
    ref = _weights(ck.model)
    got = _weights(m)
    assert set(got) == set(ref)
    for k in ref:
        assert torch.equal(got[k], ref[k]), k
    assert (m.num_layers, m.heads, m.head_dim, m.text_dim) == (2, 2, 16, 32)
    assert m.dtype == torch.float32 and m.device.type == "cpu"


def test_bf16_file_loads_rounded_weights(ck):
    m = load_model(ck.formats["original_bf16.safetensors"], device="cpu")
    for k, v in _weights(ck.model).items():
        assert torch.equal(_weights(m)[k], v.bfloat16().float()), k


def _proj(model):
    return _weights(model)["proj_out.weight"]


def test_training_checkpoint_weights_follow_their_project(ck, capsys):
    """Self-Forcing's inference loads generator_ema (--use_ema), LongLive's generator."""
    w = _proj(ck.model)  # the fixtures put the perturbed (w + 1) weights in the other set
    assert torch.equal(_proj(load_model(ck.formats["self_forcing.pt"], device="cpu")), w)
    note = capsys.readouterr().err
    assert "loaded 'generator_ema'" in note and "Self-Forcing" in note and "weights='generator'" in note
    assert torch.equal(_proj(load_model(ck.formats["longlive_trainer.pt"], device="cpu")), w)
    note = capsys.readouterr().err
    assert "loaded 'generator'" in note and "LongLive" in note and "weights='ema'" in note
    # asked for explicitly: the other set, no note
    assert torch.equal(_proj(load_model(ck.formats["self_forcing.pt"], weights="generator")), w + 1.0)
    assert torch.equal(_proj(load_model(ck.formats["longlive_trainer.pt"], weights="ema")), w + 1.0)
    assert torch.equal(_proj(load_model(ck.formats["longlive_trainer.pt"], weights="generator")), w)
    assert capsys.readouterr().err == ""
    # one set only: that one, whatever the project
    assert torch.equal(_proj(load_model(ck.other_generator, device="cpu")), w + 1.0)
    assert torch.equal(_proj(load_model(ck.formats["longlive.pth"], weights="ema")), w)


def test_weights_of_an_unknown_project_default_to_ema_with_a_note(ck, tmp_path, capsys):
    from fademem_core.model.testing import original_state_dict

    sd = original_state_dict(ck.model, "model.")
    path = tmp_path / "someone.pt"
    torch.save({"generator": {k: v + 1.0 for k, v in sd.items()}, "generator_ema": sd, "step": 7}, path)
    assert torch.equal(_proj(load_model(path, device="cpu")), _proj(ck.model))
    note = capsys.readouterr().err
    assert "someone.pt" in note and "loaded 'generator_ema'" in note and "cannot be told" in note
    assert "weights='generator'" in note and "--weights generator" in note


def test_weights_choice_is_checked(ck, tmp_path):
    with pytest.raises(ValueError, match="weights must be one of"):
        load_model(tmp_path / "not_read.pt", weights="best")  # refused before any read
    with pytest.raises(ValueError, match="weights='ema'.*'generator_ema'"):
        load_model(ck.other_generator, weights="ema")
    with pytest.raises(ValueError, match="weights='generator'"):
        load_model(ck.formats["original.safetensors"], weights="generator")


def test_loaded_model_generates_like_the_original(ck):
    text = torch.randn(1, 4, 32)
    a = generate(ck.model, text, FullCache(), 3, 64, 64, seed=5)
    b = generate(load_model(ck.formats["longlive.pth"], device="cpu"), text, FullCache(), 3, 64, 64, seed=5)
    assert torch.equal(a, b)


def test_dtype_option_keeps_fp32_parts(ck):
    m = load_model(ck.formats["comfy.safetensors"], dtype="bf16", device="cpu")
    tr = m.transformer
    assert m.dtype == torch.bfloat16
    assert tr.blocks[1].ffn.net[0].proj.weight.dtype == torch.bfloat16
    assert tr.condition_embedder.time_embedder.linear_2.weight.dtype == torch.float32
    assert tr.blocks[1].scale_shift_table.dtype == torch.float32
    assert load_model(ck.formats["comfy.safetensors"], dtype=torch.float16, device="cpu").dtype == torch.float16
    with pytest.raises(ValueError, match="dtype"):
        load_model(ck.formats["comfy.safetensors"], dtype="int8", device="cpu")


def test_config_is_inferred_from_real_shapes():
    """Wan2.1-T2V-1.3B shapes (meta tensors, nothing allocated) under original names."""
    dim, ffn, layers, text, freq = 1536, 8960, 30, 4096, 256

    def t(*shape):
        return torch.empty(*shape, device="meta")

    sd = {"patch_embedding.weight": t(dim, 16, 1, 2, 2), "patch_embedding.bias": t(dim),
          "text_embedding.0.weight": t(dim, text), "time_embedding.0.weight": t(dim, freq),
          "head.head.weight": t(64, dim), "head.modulation": t(1, 2, dim)}
    for i in range(layers):
        sd[f"blocks.{i}.ffn.0.weight"] = t(ffn, dim)
        sd[f"blocks.{i}.norm3.weight"] = t(dim)
        sd[f"blocks.{i}.self_attn.q.weight"] = t(dim, dim)
    cfg = infer_config(to_diffusers_names(sd))
    assert cfg["num_attention_heads"] == 12 and cfg["attention_head_dim"] == 128
    assert (cfg["num_layers"], cfg["ffn_dim"], cfg["text_dim"], cfg["freq_dim"]) == (layers, ffn, text, freq)
    assert cfg["cross_attn_norm"] is True and cfg["patch_size"] == (1, 2, 2)
    assert (cfg["in_channels"], cfg["out_channels"]) == (16, 16)


def test_stored_config_carries_heads(tmp_path):
    m = tiny_model(seed=2, heads=4, head_dim=8, layers=3)
    p = save_model(m, tmp_path / "tiny.safetensors")
    back = load_model(p, device="cpu")
    assert (back.heads, back.head_dim, back.num_layers) == (4, 8, 3)
    assert not list(tmp_path.glob(".*tmp"))  # the atomic write left nothing behind


@pytest.mark.parametrize("name", ["peft.pt", "longlive_nested.pt", "kohya.safetensors"])
@pytest.mark.parametrize("strength", [1.0, 0.5])
def test_lora_merge_formula(ck, name, strength):
    base = _weights(ck.model)
    m = load_model(ck.formats["original.safetensors"], lora=ck.loras[name], lora_strength=strength, device="cpu")
    got = _weights(m)
    alpha = ck.lora.alpha if name.startswith("kohya") else ck.peft_alpha
    scale = strength * alpha / ck.lora.rank
    for mod in ck.lora.down:
        want = base[f"{mod}.weight"] + scale * ck.lora.up[mod] @ ck.lora.down[mod]
        assert (got[f"{mod}.weight"] - want).abs().max() <= 1e-6, mod
    untouched = [k for k in base if k[: -len(".weight")] not in ck.lora.down]
    assert untouched and all(torch.equal(got[k], base[k]) for k in untouched)


def _assert_merged(model, ck, scale_of):
    """Every adapted Linear is W + scale * B @ A (PEFT: scale = lora_alpha / r)."""
    base, got = _weights(ck.model), _weights(model)
    for mod in ck.lora.down:
        want = base[f"{mod}.weight"] + scale_of(mod) * ck.lora.up[mod] @ ck.lora.down[mod]
        assert (got[f"{mod}.weight"] - want).abs().max() <= 1e-5, mod


def _peft_dir(ck, tmp_path, config=None):
    import json
    import shutil

    d = tmp_path / "adapter"
    d.mkdir()
    path = shutil.copy(ck.loras["peft.pt"], d / "adapter_model.pt")
    if config is not None:
        (d / "adapter_config.json").write_text(json.dumps(config))
    return path


def test_peft_alpha_is_assumed_rank_without_config(ck, tmp_path, capsys):
    m = load_model(ck.formats["original.safetensors"], lora=_peft_dir(ck, tmp_path), device="cpu")
    _assert_merged(m, ck, lambda mod: 1.0)  # rank 4, alpha 4
    note = capsys.readouterr().err
    assert "alpha 4 at rank 4" in note and "assumed alpha = rank" in note and "--lora-alpha" in note


def test_peft_alpha_from_adapter_config_beside_the_file(ck, tmp_path, capsys):
    cfg = {"peft_type": "LORA", "r": 4, "lora_alpha": 16, "alpha_pattern": {"self_attn.q": 32},
           "target_modules": ["q", "k", "v", "o"]}
    m = load_model(ck.formats["original.safetensors"], lora=_peft_dir(ck, tmp_path, cfg), device="cpu")
    _assert_merged(m, ck, lambda mod: (32 if mod.endswith("attn1.to_q") else 16) / 4)
    assert "from adapter_config.json beside it" in capsys.readouterr().err


def test_peft_rslora_config(ck, tmp_path):
    cfg = {"r": 4, "lora_alpha": 16, "use_rslora": True}
    m = load_model(ck.formats["original.safetensors"], lora=_peft_dir(ck, tmp_path, cfg), lora_strength=0.5)
    _assert_merged(m, ck, lambda mod: 0.5 * 16 / 4 ** 0.5)  # rsLoRA: alpha / sqrt(r)


def test_explicit_lora_alpha_wins(ck, tmp_path, capsys):
    path = _peft_dir(ck, tmp_path, {"lora_alpha": "not a number"})  # never read
    m = load_model(ck.formats["original.safetensors"], lora=path, lora_alpha=2.0, device="cpu")
    _assert_merged(m, ck, lambda mod: 2.0 / 4)
    kohya = load_model(ck.formats["original.safetensors"], lora=ck.loras["kohya.safetensors"], lora_alpha=2.0)
    _assert_merged(kohya, ck, lambda mod: 2.0 / 4)
    assert capsys.readouterr().err == ""


def test_file_alpha_beats_adapter_config(ck, tmp_path):
    import shutil

    d = tmp_path / "k"
    d.mkdir()
    path = shutil.copy(ck.loras["kohya.safetensors"], d / "kohya.safetensors")
    (d / "adapter_config.json").write_text('{"r": 4, "lora_alpha": 1000}')
    m = load_model(ck.formats["original.safetensors"], lora=path)
    _assert_merged(m, ck, lambda mod: ck.lora.alpha / 4)


@pytest.mark.parametrize("cfg,match", [
    ({"r": 8, "lora_alpha": 16}, "another adapter"),
    ({"r": 4, "lora_alpha": 16, "use_dora": True}, "DoRA"),
    ({"r": 4}, "lora_alpha"),
])
def test_bad_adapter_config_is_refused(ck, tmp_path, cfg, match):
    with pytest.raises(ValueError, match=match):
        load_model(ck.formats["original.safetensors"], lora=_peft_dir(ck, tmp_path, cfg))


@pytest.mark.parametrize("alpha", [0, -1.0, float("nan"), "16", True])
def test_bad_lora_alpha_is_refused_before_reading(tmp_path, alpha):
    with pytest.raises(ValueError, match="lora_alpha"):
        load_model(tmp_path / "not_read.safetensors", lora=tmp_path / "nor.pt", lora_alpha=alpha)


def test_lora_strength_zero_is_identity(ck):
    m = load_model(ck.formats["self_forcing.pt"], lora=ck.loras["peft.pt"], lora_strength=0.0, device="cpu")
    for k, v in _weights(ck.model).items():
        assert torch.equal(_weights(m)[k], v)


def test_lora_original_names_map_to_diffusers():
    assert original_name("blocks.3.attn2.to_out.0.weight") == "blocks.3.cross_attn.o.weight"
    assert original_name("blocks.0.norm2.weight") == "blocks.0.norm3.weight"


# ---------------------------------------------------------------------------- refusals
def test_refuses_image_to_video(ck):
    with pytest.raises(ValueError, match="image-to-video.*in_dim 36"):
        load_model(ck.refused["i2v"], device="cpu")


def test_refuses_non_wan(ck):
    with pytest.raises(ValueError, match="not a Wan DiT.*encoder.layer.0.weight"):
        load_model(ck.refused["not_wan"], device="cpu")


@pytest.mark.parametrize("which", ["truncated", "truncated_pt"])
def test_refuses_truncated(ck, which):
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_model(ck.refused[which], device="cpu")


def test_refuses_pickle_that_needs_code(ck):
    with pytest.raises(ValueError, match="needs code execution"):
        load_model(ck.refused["needs_code"], device="cpu")
    assert not ck.payload_marker.exists()  # the payload never ran


def test_refuses_mismatched_lora_naming_the_modules(ck):
    with pytest.raises(ValueError, match=r"LoRA targets do not match.*blocks\.0\.attn1\.to_q.*blocks\.99"):
        load_model(ck.formats["original.safetensors"], lora=ck.refused["lora_mismatch"], device="cpu")


def test_refuses_model_file_as_lora(ck):
    with pytest.raises(ValueError, match="not a LoRA file"):
        load_model(ck.formats["original.safetensors"], lora=ck.formats["comfy.safetensors"], device="cpu")


def test_missing_and_unknown_files(tmp_path, ck):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_model(tmp_path / "nope.safetensors")
    odd = tmp_path / "weights.onnx"
    odd.write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown format '.onnx'"):
        load_model(odd)
    with pytest.raises(FileNotFoundError, match="LoRA not found"):
        load_model(ck.formats["original.safetensors"], lora=tmp_path / "missing_lora.pt")


# ---------------------------------------------------------------------------- tiny_model
def test_tiny_model_deterministic_and_leaves_global_rng():
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = tiny_model(seed=7)
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = tiny_model(seed=7)
    c = tiny_model(seed=8)
    wa, wb, wc = _weights(a), _weights(b), _weights(c)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert not torch.equal(wa["proj_out.weight"], wc["proj_out.weight"])


def test_tiny_model_overrides():
    m = tiny_model(layers=3, text_dim=48, ffn_dim=96)
    assert m.num_layers == 3 and m.text_dim == 48
    assert m.transformer.blocks[0].ffn.net[0].proj.weight.shape[0] == 96
    with pytest.raises(ValueError, match="unknown Wan config field"):
        tiny_model(bogus=1)
    with pytest.raises(ValueError, match="image-to-video"):
        tiny_model(in_channels=36)


def test_lora_name_variants_and_file_alpha():
    from fademem_core.model.lora import parse_lora

    a, b = torch.randn(4, 32), torch.randn(32, 4)
    sd = {"base_model.model.model._fsdp_wrapped_module.blocks.1.cross_attn.o.lora_A.default.weight": a,
          "base_model.model.model._fsdp_wrapped_module.blocks.1.cross_attn.o.lora_B.default.weight": b}
    mods = parse_lora({"generator_lora": sd, "config": {"r": 4, "lora_alpha": 16}})
    (name, mod), = mods.items()
    assert name == "blocks.1.attn2.to_out.0"
    assert mod.rank == 4 and mod.alpha == 16.0
    assert torch.allclose(mod.delta(), b @ a * 4.0)
    with pytest.raises(ValueError, match="only one of A/B"):
        parse_lora({"blocks.0.self_attn.q.lora_A.weight": a})


def test_heads_inferred_as_width_over_128_without_metadata(tmp_path):
    from safetensors.torch import save_file

    m = tiny_model(seed=3, heads=2, head_dim=128, ffn_dim=64, text_dim=32)
    save_file({k: v.contiguous() for k, v in m.transformer.state_dict().items()}, str(tmp_path / "w.safetensors"))
    back = load_model(tmp_path / "w.safetensors", device="cpu")
    assert (back.heads, back.head_dim) == (2, 128)


def test_legacy_pickle_format_loads(ck, tmp_path):
    """Files from the pre-zip serializer cannot be memory-mapped: read them without mmap."""
    from fademem_core.model.testing import original_state_dict

    p = tmp_path / "legacy.pt"
    torch.save({"generator": original_state_dict(ck.model, "model.")}, p, _use_new_zipfile_serialization=False)
    m = load_model(p, device="cpu")
    assert torch.equal(_weights(m)["proj_out.weight"], _weights(ck.model)["proj_out.weight"])


@pytest.mark.parametrize("device,match", [("gpu", "'gpu'"), ("cuda:x", "'cuda:x'"), (3.5, "3.5")])
def test_bad_device_is_refused_before_reading(tmp_path, device, match):
    with pytest.raises(ValueError, match=f"device.*{match}"):
        load_model(tmp_path / "not_read.safetensors", device=device)  # no FileNotFoundError


def test_cuda_without_cuda_is_refused_before_reading(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="'cuda'.*CUDA"):
        load_model(tmp_path / "not_read.safetensors", device="cuda")


@pytest.mark.parametrize("strength", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_lora_strength_is_refused(ck, strength):
    with pytest.raises(ValueError, match="lora_strength.*finite"):
        load_model(ck.formats["self_forcing.pt"], lora=ck.loras["peft.pt"], lora_strength=strength,
                   device="cpu")


@pytest.mark.parametrize("seed", [1.5, -1, "0", True])
def test_tiny_model_refuses_a_bad_seed(seed):
    with pytest.raises(ValueError, match="seed"):
        tiny_model(seed=seed)


# ----------------------------------------------------------------------------- crafted files
def _diffusers_sd(ck) -> dict:
    return {k: v.detach().clone().contiguous() for k, v in ck.model.transformer.state_dict().items()}


def _write(tmp_path, sd, config=None, name="crafted.safetensors"):
    import json

    from safetensors.torch import save_file

    meta = {"fademem_config": config if isinstance(config, str) else json.dumps(config)} if config is not None else None
    path = tmp_path / name
    save_file(sd, str(path), metadata=meta)
    return path


def _edit(key, value):
    def edit(sd):
        if value is None:
            del sd[key]
        else:
            sd[key] = value
    return edit


CRAFTED = [
    ("far block index", _edit("blocks.30000.attn1.to_q.weight", torch.zeros(32, 32)), "block indices must run 0..30000"),
    ("inconsistent shape", _edit("blocks.1.attn1.to_q.weight", torch.zeros(32, 31)),
     r"blocks\.1\.attn1\.to_q\.weight is \(32, 31\), expected \(32, 32\)"),
    ("integer weights", _edit("blocks.0.attn1.to_k.weight", torch.zeros(32, 32, dtype=torch.int32)),
     r"blocks\.0\.attn1\.to_k\.weight must hold floating-point weights, got torch\.int32"),
    ("zero-size patch", _edit("patch_embedding.weight", torch.zeros(32, 16, 0, 2, 2)),
     r"patch_embedding\.weight is \(32, 16, 0, 2, 2\), expected a non-empty 5-D"),
    ("scalar proj_out", _edit("proj_out.weight", torch.zeros(())), r"proj_out\.weight is \(\), expected a non-empty 2-D"),
    ("1-D text embedder", _edit("condition_embedder.text_embedder.linear_1.weight", torch.zeros(32)),
     r"text_embedder\.linear_1\.weight is \(32,\), expected a non-empty 2-D"),
    ("proj_out not a patch multiple", _edit("proj_out.weight", torch.zeros(63, 32)), "proj_out.weight has 63 rows"),
    ("missing weight", _edit("blocks.1.ffn.net.2.bias", None), r"missing 'blocks\.1\.ffn\.net\.2\.bias'"),
    ("unknown weight", _edit("blocks.1.extra.weight", torch.zeros(3)), r"unexpected 'blocks\.1\.extra\.weight'"),
    ("NaN weight", _edit("blocks.1.attn2.to_v.weight", torch.full((32, 32), float("nan"))),
     r"blocks\.1\.attn2\.to_v\.weight holds NaN or inf"),
]


@pytest.mark.parametrize("what,edit,match", CRAFTED, ids=[c[0] for c in CRAFTED])
def test_crafted_checkpoint_is_refused_naming_the_key(ck, tmp_path, monkeypatch, what, edit, match):
    from fademem_core.model import loading

    built = []
    real = loading.build_transformer
    monkeypatch.setattr(loading, "build_transformer",
                        lambda cfg, device=None: built.append(cfg["num_layers"]) or real(cfg, device))
    sd = _diffusers_sd(ck)
    edit(sd)
    with pytest.raises(ValueError, match=match):
        load_model(_write(tmp_path, sd), device="cpu")
    assert max(built, default=0) <= 2  # nothing the size the file claims was ever built


@pytest.mark.parametrize("config,match", [
    ({"num_attention_heads": "two"}, "num_attention_heads"),
    ({"num_attention_heads": [2]}, "num_attention_heads"),
    ('{"num_attention_heads": 1e400}', "num_attention_heads"),
    ({"num_attention_heads": 3}, "num_attention_heads"),
    ({"num_attention_heads": 0}, "num_attention_heads"),
    ({"num_attention_heads": True}, "num_attention_heads"),
    ({"num_attention_heads": 32}, "attention_head_dim must be even"),
    ({"num_attention_heads": 2, "eps": "small"}, "eps"),
    ('{"num_attention_heads": 2, "eps": NaN}', "eps"),
    ({"num_attention_heads": 2, "eps": -1e-6}, "eps"),
    ({"num_attention_heads": 2, "eps": 0}, "eps"),
    ('{"num_attention_heads": 2, "eps": 1e400}', "eps"),
])
def test_lying_config_metadata_is_refused(ck, tmp_path, config, match):
    with pytest.raises(ValueError, match=match):
        load_model(_write(tmp_path, _diffusers_sd(ck), config), device="cpu")


def test_weights_that_overflow_the_requested_dtype_are_refused(ck, tmp_path):
    sd = _diffusers_sd(ck)
    sd["blocks.0.ffn.net.2.weight"] = torch.full_like(sd["blocks.0.ffn.net.2.weight"], 1e6)
    path = _write(tmp_path, sd)
    load_model(path, device="cpu")  # fine in float32
    with pytest.raises(ValueError, match=r"blocks\.0\.ffn\.net\.2\.weight holds NaN or inf .*float16"):
        load_model(path, dtype="fp16", device="cpu")


def _kohya(ck, **change):
    sd = {}
    for name in ck.lora.down:
        sd[f"diffusion_model.{name}.lora_down.weight"] = ck.lora.down[name]
        sd[f"diffusion_model.{name}.lora_up.weight"] = ck.lora.up[name]
        sd[f"diffusion_model.{name}.alpha"] = torch.tensor(float(ck.lora.alpha))
    name = next(iter(ck.lora.down))
    for part, value in change.items():
        sd[f"diffusion_model.{name}.{part}"] = value
    return sd


@pytest.mark.parametrize("change,match", [
    ({"lora_down.weight": torch.zeros(0, 32), "lora_up.weight": torch.zeros(32, 0)}, "rank >= 1"),
    ({"alpha": torch.tensor(float("nan"))}, "alpha must be a finite number"),
    ({"alpha": torch.tensor(float("inf"))}, "alpha must be a finite number"),
    ({"lora_up.weight": torch.full((32, 4), float("nan"))}, "B holds NaN or inf"),
    ({"lora_down.weight": torch.ones(4, 32, dtype=torch.int64)}, "A must hold floating-point"),
    ({"lora_down.weight": torch.zeros(())}, "non-empty matrices"),
])
def test_crafted_lora_is_refused_naming_the_module(ck, tmp_path, change, match):
    path = _write(tmp_path, _kohya(ck, **change), name="lora.safetensors")
    with pytest.raises(ValueError, match=match):
        load_model(ck.formats["original.safetensors"], lora=path, device="cpu")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_save_model_honours_the_umask(tmp_path, umask):
    import os

    old = os.umask(umask)
    try:
        path = save_model(tiny_model(seed=0), tmp_path / f"m{umask:o}.safetensors")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_special_files_are_named_for_what_they_are(tmp_path):
    import os

    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="got a FIFO"):
        load_model(fifo, device="cpu")
    dev = tmp_path / "null.pt"
    dev.symlink_to("/dev/null")
    with pytest.raises(ValueError, match="got a character device"):
        load_model(dev, device="cpu")
    (tmp_path / "dir.pt").mkdir()
    with pytest.raises(ValueError, match="got a directory"):
        load_model(tmp_path / "dir.pt", device="cpu")


def test_any_single_bad_tensor_is_a_valueerror_naming_it(ck, tmp_path):
    """Every weight in turn made a scalar, integer or flat tensor (one mutation per weight, in
    rotation, to keep the test short): always a ValueError naming that weight."""
    mutations = (lambda t: torch.zeros(()), lambda t: torch.zeros(t.shape, dtype=torch.int16),
                 lambda t: torch.zeros(t.numel() + 2))
    base = _diffusers_sd(ck)
    keys = [k for k in base if not k.startswith("blocks.1.")]  # block 1 is checked like block 0
    for i, key in enumerate(keys):
        sd = dict(base)
        sd[key] = mutations[i % len(mutations)](sd[key])
        with pytest.raises(ValueError, match=key.replace(".", r"\.")):
            load_model(_write(tmp_path, sd), device="cpu")
