"""The pack inside a real ComfyUI: runs only when COMFYUI_PATH points at a ComfyUI checkout.

    COMFYUI_PATH=/path/to/ComfyUI [COMFYUI_PYTHON=/path/to/its/python] pytest tests/test_comfy_integration.py

ComfyUI is started with --cpu on 127.0.0.1 and a free port, with --base-directory set to a
temporary folder (the checkout is left untouched) holding:
  custom_nodes/fademem               -> a link to this repository
  custom_nodes/fademem_test_helpers  a test-only node producing a seeded CONDITIONING of the
                                     tiny model's width (the real umT5 is 11 GB)
  models/diffusion_models/tiny_fademem.safetensors   the tiny random Wan (fademem_core)
The test checks /object_info, the /fademem/plan route, the served extension and workflow
templates, then queues API graphs through /prompt and checks /history: the tiny model's rollout
(compared with fademem_core run here), a prefix from core VAE Encode (a random full-size Wan 2.1
VAE written by ComfyUI's own class; compared with our streaming encoder and generate run here),
the shipped memory-layout workflow, and a bad input.
Every wait is bounded.
"""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.support.comfy_host import (COMFYUI_PATH, COMFYUI_PYTHON, PROMPT_S, TEXT_DIM, TEXT_LEN,
                                      TEXT_SEED, TINY, tiny_graph)
from tests.support.pack import ROOT

if not COMFYUI_PATH:
    pytest.skip("COMFYUI_PATH is not set: the real-ComfyUI integration test was SKIPPED "
                "(see 'Development' in the README to run it)", allow_module_level=True)

OUR_NODES = {"FadeMemModelLoader", "FadeMemCache", "FadeMemBaselineCache", "FadeMemSampler",
             "FadeMemPromptSchedule", "FadeMemMemoryLayout", "FadeMemSpectralDecay",
             "FadeMemStreamingSave", "FadeMemTinyWorldPrompt", "FadeMemTinyWorldDecode"}

# a randomly initialised full-size Wan 2.1 VAE written by ComfyUI's own class (core Load VAE
# recognises the Wan 2.1 VAE by its weight names and has fixed widths, so no tiny one loads)
MAKE_WAN_VAE = '''
import sys
import torch
out = sys.argv[1]
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import comfy.latent_formats
import comfy.ldm.wan.vae as wan_vae
from safetensors.torch import save_file
vae = wan_vae.WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                     temperal_downsample=[False, True, True], dropout=0.0)
g = torch.Generator().manual_seed(0)
with torch.no_grad():  # ComfyUI's layers skip initialisation (weights come from files): set them
    for name, p in vae.named_parameters():
        if name.endswith("gamma"):
            p.fill_(1.0)
        elif p.ndim > 1:
            p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
        else:
            p.zero_()
save_file({k: v.to(torch.bfloat16).contiguous() for k, v in vae.state_dict().items()}, out)
fmt = comfy.latent_formats.Wan21()
probe = torch.linspace(-3, 3, 16 * 2).reshape(1, 16, 2, 1, 1)
print({"mean": fmt.latents_mean.flatten().tolist(), "std": fmt.latents_std.flatten().tolist(),
       "process_in": fmt.process_in(probe).flatten().tolist(), "probe": probe.flatten().tolist()})
'''
WAN_VAE = "tiny_random_wan_vae.safetensors"


def test_object_info_lists_our_nodes(comfy):
    status, info = comfy.get_json("/object_info")
    assert status == 200
    missing = OUR_NODES - set(info)
    assert not missing, f"not loaded: {missing}\n{comfy.log_tail()}"
    failed = [line for line in comfy.log.read_text(errors="replace").splitlines()
              if ("IMPORT FAILED" in line or "Cannot import" in line) and "fademem" in line]
    assert not failed, failed
    sampler = info["FadeMemSampler"]
    assert sampler["category"] == "FadeMem" and sampler["output"] == ["LATENT", "LATENT"]
    assert sampler["output_name"] == ["latent", "with_prefix"]
    assert sampler["input_order"]["required"] == ["model", "positive", "cache", "width", "height", "length",
                                                  "chunk", "steps", "shift", "seed", "context_noise",
                                                  "context_input", "switch"]
    assert sampler["input_order"]["optional"] == ["sampler", "prefix"]
    assert sampler["input"]["optional"]["prefix"][0] == "LATENT"
    assert info["FadeMemSampler"]["input"]["required"]["seed"][1]["control_after_generate"] is True
    # the loader lists ComfyUI's diffusion_models folder through folder_paths
    assert TINY in info["FadeMemModelLoader"]["input"]["required"]["model_name"][0]


def test_plan_route_extension_and_workflow_templates(comfy):
    status, plan = comfy.get_json("/fademem/plan?frames=240&budget=12&beta=0.3&anchor=true")
    assert status == 200 and len(plan["entries"]) == 12
    assert sum(span for _, span in plan["entries"]) == 240
    status, api_plan = comfy.get_json("/api/fademem/plan?frames=240&budget=12&beta=0.3&anchor=true")
    assert status == 200 and api_plan == plan  # the frontend's api.fetchApi path
    status, err = comfy.get_json("/fademem/plan?beta=7")
    assert status == 400 and "beta" in err["error"]
    status, js = comfy.get("/extensions/fademem/fademem_preview.js")
    assert status == 200 and b"/fademem/plan" in js
    status, js = comfy.get("/extensions/fademem/fademem_live.js")
    assert status == 200 and b"fademem.live" in js
    status, templates = comfy.get_json("/api/workflow_templates")
    assert status == 200
    assert sorted(templates.get("fademem", [])) == sorted(p.stem for p in (ROOT / "workflows").glob("*.json"))


def test_tiny_model_rollout_through_prompt(comfy):
    import torch
    from safetensors.torch import load_file

    from fademem_core.model.loading import tiny_model
    from fademem_core.memory.policies import FadeMem
    from fademem_core.rollout.sampler import from_raw, generate

    entry = comfy.run(tiny_graph())
    assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{comfy.log_tail()}"
    (saved,) = entry["outputs"]["5"]["latents"]
    path = comfy.base / "output" / saved["subfolder"] / saved["filename"]
    latent = load_file(str(path))["latent_tensor"]
    assert latent.shape == (1, 16, 7, 4, 8)  # 25 video frames = 7 latent frames (chunks 3, 3, 1)

    text = torch.randn(1, TEXT_LEN, TEXT_DIM, generator=torch.Generator().manual_seed(TEXT_SEED))
    direct = generate(tiny_model(0), text, FadeMem(4, 0.3, True), 7, 32, 64, seed=11, steps=[1000.0, 500.0],
                      shift=5.0, chunk=3)
    torch.testing.assert_close(from_raw(latent), direct, rtol=1e-4, atol=1e-4)


def saved_latent(comfy, entry, node):
    from safetensors.torch import load_file

    (saved,) = entry["outputs"][node]["latents"]
    return load_file(str(comfy.base / "output" / saved["subfolder"] / saved["filename"]))["latent_tensor"]


def test_prefix_from_core_vae_encode(comfy):
    """Core VAE Encode -> FadeMem Sampler prefix: core gives raw latents (our encoder's and
    from_raw's convention), the sampler continues them, with_prefix = prefix + new frames."""
    import ast

    import torch
    from diffusers import AutoencoderKLWan
    from diffusers.loaders.single_file_utils import convert_wan_vae_to_diffusers
    from safetensors.torch import load_file

    from fademem_core.model.loading import tiny_model
    from fademem_core.memory.policies import FadeMem
    from fademem_core.rollout.sampler import WAN_LATENT_MEAN, WAN_LATENT_STD, from_raw, generate
    from fademem_core.rollout.vae_encode import StreamingVAEEncoder

    vae_file = comfy.base / "models" / "vae" / WAN_VAE
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COMFYUI_PATH")}
    made = subprocess.run([COMFYUI_PYTHON, "-c", MAKE_WAN_VAE, str(vae_file)], cwd=COMFYUI_PATH,
                          env=dict(env, PYTHONPATH=COMFYUI_PATH, OMP_NUM_THREADS="1"),
                          capture_output=True, text=True, timeout=PROMPT_S)
    assert made.returncode == 0, made.stderr[-3000:]
    core = ast.literal_eval(made.stdout.strip().splitlines()[-1])
    # core's Wan 2.1 latent format normalises exactly as from_raw does
    assert core["mean"] == pytest.approx(list(WAN_LATENT_MEAN), abs=1e-6)
    assert core["std"] == pytest.approx(list(WAN_LATENT_STD), abs=1e-6)
    probe = torch.tensor(core["probe"]).reshape(1, 16, 2, 1, 1)
    torch.testing.assert_close(torch.tensor(core["process_in"]).reshape(1, 16, 2, 1, 1), from_raw(probe))

    graph = tiny_graph(length=9)  # 9 video frames after a prefix: 3 new latent frames
    graph["4"]["inputs"]["prefix"] = ["8", 0]
    graph.update({
        "6": {"class_type": "FadeMemTestImages", "inputs": {"seed": 3, "frames": 9, "width": 64, "height": 32}},
        "7": {"class_type": "VAELoader", "inputs": {"vae_name": WAN_VAE}},
        "8": {"class_type": "VAEEncode", "inputs": {"pixels": ["6", 0], "vae": ["7", 0]}},
        "9": {"class_type": "SaveLatent", "inputs": {"samples": ["8", 0], "filename_prefix": "fademem_test/encoded"}},
        "10": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 1], "filename_prefix": "fademem_test/whole"}},
    })
    entry = comfy.run(graph)
    assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{comfy.log_tail()}"
    encoded, new, whole = (saved_latent(comfy, entry, n) for n in ("9", "5", "10"))
    assert encoded.shape == (1, 16, 3, 4, 8)  # 9 frames: the first alone, then 2 groups of 4
    assert new.shape == (1, 16, 3, 4, 8) and whole.shape == (1, 16, 6, 4, 8)
    assert torch.equal(whole[:, :, :3], encoded) and torch.equal(whole[:, :, 3:], new)

    # the same pixels through our streaming encoder on the same weights (diffusers' names)
    ours = AutoencoderKLWan()
    ours.load_state_dict({k: v.float() for k, v in convert_wan_vae_to_diffusers(load_file(str(vae_file))).items()})
    pixels = torch.rand(9, 32, 64, 3, generator=torch.Generator().manual_seed(3))
    x = (pixels * 2 - 1).permute(3, 0, 1, 2)[None]
    stream = StreamingVAEEncoder(ours.eval())
    mine = torch.cat([stream.encode(x[:, :, :4]), stream.encode(x[:, :, 4:])], dim=2)
    scale = encoded.abs().max()
    assert scale > 0 and (mine - encoded).abs().max() <= 1e-4 * max(1.0, float(scale))

    text = torch.randn(1, TEXT_LEN, TEXT_DIM, generator=torch.Generator().manual_seed(TEXT_SEED))
    direct = generate(tiny_model(0), text, FadeMem(4, 0.3, True), 3, 32, 64, seed=11, steps=[1000.0, 500.0],
                      shift=5.0, chunk=3, prefix=from_raw(encoded))
    torch.testing.assert_close(from_raw(new), direct, rtol=1e-4, atol=1e-4)


WS_CLIENT = r'''
import json, struct, sys, urllib.request, uuid
import websocket  # websocket-client, in ComfyUI's environment

host, graph = sys.argv[1], json.load(open(sys.argv[2]))
cid = str(uuid.uuid4())
ws = websocket.create_connection(f"ws://{host}/ws?clientId={cid}", timeout=120)
req = urllib.request.Request(f"http://{host}/prompt", headers={"Content-Type": "application/json"},
                             data=json.dumps({"prompt": graph, "client_id": cid}).encode())
pid = json.load(urllib.request.urlopen(req, timeout=30))["prompt_id"]
progress, previews, texts, error = [], 0, [], None
while True:
    msg = ws.recv()
    if isinstance(msg, bytes):
        kind = struct.unpack(">I", msg[:4])[0]
        if kind == 3:  # progress text: node id length, node id, text
            n = struct.unpack(">I", msg[4:8])[0]
            texts.append([msg[8:8 + n].decode(), msg[8 + n:].decode()])
        elif kind in (1, 4):  # preview image (plain or with metadata)
            previews += 1
        continue
    m = json.loads(msg)
    data = m.get("data", {})
    if data.get("prompt_id") not in (None, pid):
        continue
    if m["type"] == "progress":
        progress.append([data["node"], data["value"], data["max"]])
    elif m["type"] == "execution_error":
        error = data.get("exception_message")
        break
    elif m["type"] == "executing" and data.get("node") is None:
        break
print(json.dumps({"progress": progress, "previews": previews, "texts": texts, "error": error}))
'''


def test_progress_preview_and_kv_text_reach_the_browser(comfy, tmp_path):
    """A websocket client (as the frontend) sees chunks x steps progress, previews, KV text."""
    has_ws = subprocess.run([COMFYUI_PYTHON, "-c", "import websocket"], capture_output=True).returncode == 0
    if not has_ws:
        pytest.skip("websocket-client is not installed in ComfyUI's Python: websocket check SKIPPED")
    graph = tiny_graph(length=25)
    graph["4"]["inputs"]["seed"] = 12  # not cached from the other test: the sampler must run
    (tmp_path / "graph.json").write_text(json.dumps(graph))
    (tmp_path / "ws_client.py").write_text(WS_CLIENT)
    done = subprocess.run([COMFYUI_PYTHON, str(tmp_path / "ws_client.py"), f"127.0.0.1:{comfy.port}",
                           str(tmp_path / "graph.json")], capture_output=True, text=True, timeout=PROMPT_S)
    assert done.returncode == 0, done.stderr + comfy.log_tail()
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["error"] is None, seen["error"]
    sampler = [(v, m) for node, v, m in seen["progress"] if node == "4"]
    assert sampler and sampler[-1] == (6, 6)  # 3 chunks x 2 steps
    assert [v for v, _ in sampler] == sorted(v for v, _ in sampler)
    assert seen["previews"] >= 1
    kv = [text for node, text in seen["texts"] if node == "4"]
    assert any("KV memory" in t for t in kv) and "peak KV memory" in kv[-1]


def test_shipped_layout_workflow_runs(comfy):
    from PIL import Image

    graph = json.loads((ROOT / "tests" / "api_graphs" / "fademem_memory_layout_betas.json").read_text())
    entry = comfy.run(graph)
    assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{comfy.log_tail()}"
    saves = [out["images"] for out in entry["outputs"].values() if "images" in out]
    (images,) = saves
    (image,) = images
    picture = Image.open(comfy.base / "output" / image["subfolder"] / image["filename"])
    assert picture.size == (768, 3 * 384 + 2 * 8)  # three layouts stacked with 8 px spacing


def test_shipped_tiny_world_workflow_runs_with_nothing_downloaded(comfy):
    """The shipped no-download workflow, shortened to 7 latent frames: the embedded model, the
    recorded Euler sampler, core Create Video + Save Video; its latents equal the core rollout."""
    import av
    import torch

    from fademem_core import FadeMem, embedded_weights, from_raw, generate, load_model
    from fademem_core.tinyworld import world

    graph = json.loads((ROOT / "tests" / "api_graphs" / "fademem_tiny_world.json").read_text())
    (sid,) = [k for k, n in graph.items() if n["class_type"] == "FadeMemSampler"]
    graph[sid]["inputs"]["length"] = 25
    graph["99"] = {"class_type": "SaveLatent",
                   "inputs": {"samples": [sid, 0], "filename_prefix": "fademem_test/tiny_world"}}
    entry = comfy.run(graph)
    assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{comfy.log_tail()}"
    latent = saved_latent(comfy, entry, "99")
    (video,) = [o for o in entry["outputs"].values() if "images" in o and o["images"]][0]["images"]
    with av.open(str(comfy.base / "output" / video["subfolder"] / video["filename"])) as f:
        frames = [fr.to_ndarray(format="rgb24") for fr in f.decode(video=0)]
    assert len(frames) == 7 and frames[0].shape == (64, 64, 3)

    spec = json.loads(embedded_weights("tiny_world").with_suffix(".json").read_text())["sampler"]
    n = spec["steps"]
    text = world.prompt_embedding(0, (1, 4), text_dim=32)
    direct = generate(load_model(embedded_weights("tiny_world")), text, FadeMem(12, 0.3, True), 7, 64, 64,
                      seed=0, chunk=3, sampler=spec["name"], shift=spec["shift"],
                      steps=[1000.0 * (n - i) / n for i in range(n)])
    torch.testing.assert_close(from_raw(latent), direct, rtol=1e-4, atol=1e-4)


def test_bad_input_fails_with_a_clear_message(comfy):
    entry = comfy.run(tiny_graph(length=26))  # not 1 + 4k video frames
    assert entry["status"]["status_str"] == "error"
    errors = [m[1] for m in entry["status"]["messages"] if m[0] == "execution_error"]
    assert errors and errors[0]["node_type"] == "FadeMemSampler"
    assert "length must be 1 + 4*k" in errors[0]["exception_message"]
    assert comfy.proc.poll() is None  # the server survives it
