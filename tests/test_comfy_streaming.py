"""FadeMem Sampler + Streaming Save inside a real ComfyUI, with a VAE loaded by core Load VAE.

Runs only when COMFYUI_PATH points at a ComfyUI checkout (see tests/support/comfy_host.py).  The VAE
file is made by ComfyUI's own Wan 2.1 VAE module (full width, random weights, written in its
original layout, as wan_2.1_vae.safetensors is), so the layout the pack converts is ComfyUI's,
not ours.  Checks: the streaming node's decode of the same latents against core VAE Decode
(the two implementations' float difference, measured), Save Video naming and the history
entry, and Cancel of a run without an end (segments at their final names, listed in /history).
"""
from __future__ import annotations

import json
import subprocess
import time
import urllib.request

import pytest

from tests.support.comfy_host import (COMFYUI_PATH, COMFYUI_PYTHON, HELPER, PROMPT_S, TEXT_DIM,
                                      TEXT_LEN, TEXT_SEED, TINY, make_base, start_comfy)
from tests.support.pack import ROOT

if not COMFYUI_PATH:
    pytest.skip("COMFYUI_PATH is not set: the real-ComfyUI streaming test was SKIPPED",
                allow_module_level=True)


VAE = "wan21_vae_test.safetensors"
# measured max |diff| 1.6e-6 (pixels 0..1, fp32, ComfyUI 0.3.64, torch 2.14.1 CPU); 6x margin
MP4_MEAN_MAX = 1.0  # levels of 255: encoder nondeterminism, not a different picture
CORE_VS_STREAMING_MAX = 1e-5

SAVE_TENSOR = '''

class FadeMemTestSaveTensor:
    """Test only: an IMAGE written as safetensors into the output folder."""

    CATEGORY = "FadeMem/testing"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "save"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",), "name": ("STRING", {"default": "image"})}}

    def save(self, images, name):
        import os
        import folder_paths
        from safetensors.torch import save_file

        save_file({"images": images.contiguous()},
                  os.path.join(folder_paths.get_output_directory(), name + ".safetensors"))
        return {}


NODE_CLASS_MAPPINGS["FadeMemTestSaveTensor"] = FadeMemTestSaveTensor
'''

MAKE_VAE = r'''
import os, sys
out = sys.argv[1]
sys.path[:0] = [os.getcwd(), sys.argv[2]]  # the ComfyUI checkout, the pack (for randomize_)
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options
comfy.options.enable_args_parsing()
import torch
import comfy.ldm.wan.vae as wan
from safetensors.torch import save_file
from fademem_core.rollout.vae_testing import randomize_

torch.manual_seed(0)
# the shape core Load VAE builds for wan_2.1_vae.safetensors (comfy/sd.py)
vae = wan.WanVAE(dim=96, z_dim=16, dim_mult=[1, 2, 4, 4], num_res_blocks=2, attn_scales=[],
                 temperal_downsample=[False, True, True], dropout=0.0)
randomize_(vae)  # core's layers skip weight init
save_file({k: v.contiguous() for k, v in vae.state_dict().items()}, out)
'''


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    base = make_base(tmp_path_factory.mktemp("comfy_stream"), ROOT, HELPER + SAVE_TENSOR, TINY)
    (base / "models" / "vae").mkdir(parents=True)
    (base / "make_vae.py").write_text(MAKE_VAE)
    made = subprocess.run([COMFYUI_PYTHON, str(base / "make_vae.py"), str(base / "models" / "vae" / VAE),
                           str(ROOT)],
                          cwd=COMFYUI_PATH, capture_output=True, text=True, timeout=PROMPT_S)
    assert made.returncode == 0, made.stderr[-3000:]
    with start_comfy(base) as server:
        yield server


def graph(**stream) -> dict:
    """Model, prompt, cache and VAE; FadeMem Sampler -> SaveLatent + core VAE Decode (node 6),
    and the streaming node (node 8) on the same inputs."""
    common = {"width": 64, "height": 32, "length": 9, "chunk": 1, "steps": 2, "shift": 5.0,
              "seed": 3, "context_noise": 0.0, "context_input": "clean", "switch": "auto"}
    g = {
        "1": {"class_type": "FadeMemModelLoader",
              "inputs": {"model_name": TINY, "lora_name": "None", "lora_strength": 1.0,
                         "weight_dtype": "default", "weights": "auto", "lora_alpha": 0.0}},
        "2": {"class_type": "FadeMemTestConditioning",
              "inputs": {"seed": TEXT_SEED, "length": TEXT_LEN, "dim": TEXT_DIM}},
        "3": {"class_type": "FadeMemCache",
              "inputs": {"budget": 4, "beta": 0.3, "anchor": True, "operator": "weighted_average",
                         "positions": "absolute"}},
        "4": {"class_type": "VAELoader", "inputs": {"vae_name": VAE}},
        "8": {"class_type": "FadeMemStreamingSave",
              "inputs": {"model": ["1", 0], "positive": ["2", 0], "cache": ["3", 0], "vae": ["4", 0],
                         **common, "until_cancel": False, "filename_prefix": "video/stream",
                         "segment_seconds": 0}},
    }
    g["8"]["inputs"].update(stream)
    return g


def with_core_decode(g: dict) -> dict:
    common = {k: g["8"]["inputs"][k] for k in ("width", "height", "length", "chunk", "steps",
                                               "shift", "seed", "context_noise", "context_input",
                                               "switch")}
    g["5"] = {"class_type": "FadeMemSampler",
              "inputs": {"model": ["1", 0], "positive": ["2", 0], "cache": ["3", 0], **common}}
    g["6"] = {"class_type": "VAEDecode", "inputs": {"samples": ["5", 0], "vae": ["4", 0]}}
    g["7"] = {"class_type": "FadeMemTestSaveTensor", "inputs": {"images": ["6", 0], "name": "core"}}
    g["9"] = {"class_type": "SaveLatent", "inputs": {"samples": ["5", 0], "filename_prefix": "latent/x"}}
    return g


def test_streaming_save_matches_core_vae_decode(comfy):
    import av
    import numpy as np
    import torch
    from safetensors.torch import load_file

    from fademem_core.rollout.video import Mp4Writer, StreamingVAEDecoder, wan_vae_from_original

    entry = comfy.run(with_core_decode(graph()))
    assert entry["status"]["status_str"] == "success", f"{entry['status']}\n{comfy.log_tail()}"
    assert "Missing VAE keys" not in comfy.log.read_text(errors="replace")
    # history: the node lists its video like core Save Video does
    (video,) = entry["outputs"]["8"]["images"]
    assert video == {"filename": "stream_00001_.mp4", "subfolder": "video", "type": "output"}
    assert entry["outputs"]["8"]["animated"] == [True]
    out = comfy.base / "output"
    core = load_file(str(out / "core.safetensors"))["images"]  # [9, 32, 64, 3] in 0..1
    assert core.shape == (9, 32, 64, 3)
    (latent_file,) = (out / "latent").glob("*.latent")
    latent = load_file(str(latent_file))["latent_tensor"]

    # the streaming decoder, chunk by chunk, on the VAE file core loaded
    vae = wan_vae_from_original(load_file(str(comfy.base / "models" / "vae" / VAE)))
    stream = StreamingVAEDecoder(vae)
    streamed = torch.cat([stream.decode(latent[:, :, i:i + 1]) for i in range(3)], dim=2)[0]
    ours = ((streamed + 1) / 2).permute(1, 2, 3, 0)  # core's IMAGE convention
    diff = (ours - core).abs().max().item()
    print(f"\nstreaming decode vs core VAE Decode: max |diff| = {diff:.3g} "
          f"(pixels in 0..1; {(core > 0.01).logical_and(core < 0.99).float().mean():.0%} unclipped)")
    assert diff <= CORE_VS_STREAMING_MAX
    with av.open(str(out / "video" / "stream_00001_.mp4")) as c:
        frames = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])
        assert json.loads(c.metadata["prompt"])["8"]["class_type"] == "FadeMemStreamingSave"
    # the node wrote the streaming decode: the same frames through the same writer decode to
    # the same pixels up to x264's threaded encoding, which is not byte-deterministic when the
    # machine is loaded (exact equality at the writer is tests/test_streaming.py's)
    with Mp4Writer(out / "ours.mp4") as w:
        w.write(streamed)
    with av.open(str(out / "ours.mp4")) as c:
        expected = np.stack([f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])])
    assert frames.shape == expected.shape == (9, 32, 64, 3)
    gap = np.abs(frames.astype(np.int16) - expected.astype(np.int16))
    print(f"node's mp4 vs ours: mean |diff| {gap.mean():.3f}, max {gap.max()} (of 255)")
    assert gap.mean() <= MP4_MEAN_MAX


def test_cancel_of_a_run_without_an_end_keeps_every_segment(comfy):
    g = graph(until_cancel=True, segment_seconds=1, filename_prefix="endless/run", seed=4)
    status, body = comfy.post_json("/prompt", {"prompt": g, "client_id": "endless"})
    assert status == 200, body
    prompt_id = body["prompt_id"]
    folder = comfy.base / "output" / "endless"
    deadline = time.monotonic() + PROMPT_S
    while not (folder.is_dir() and list(folder.glob("run_*_.mp4"))):  # the first segment is done
        assert time.monotonic() < deadline, comfy.log_tail()
        time.sleep(0.5)
    req = urllib.request.Request(comfy.url + "/interrupt", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:  # Cancel, as the frontend sends it
        assert r.status == 200
    entry = comfy.wait(prompt_id)
    names = [v["filename"] for v in entry["outputs"]["8"]["images"]]
    assert len(names) >= 2 and names == [f"run_{i:05}_.mp4" for i in range(1, len(names) + 1)]
    assert sorted(p.name for p in folder.iterdir()) == names  # no partial, no hidden file
    from fademem_core.rollout.video import read_video_info

    counts = [read_video_info(folder / n)[0] for n in names]
    assert all(c == 16 for c in counts[:-1]) and 1 <= counts[-1] <= 16
