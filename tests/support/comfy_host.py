"""A real ComfyUI started for a test (helper of the real-ComfyUI tests; no tests here).

``start_comfy(base)`` runs ``main.py --cpu`` from ``$COMFYUI_PATH`` on 127.0.0.1 and a free port
with ``--base-directory base`` (the checkout is left untouched) and yields a :class:`Comfy`
client once it answers; every wait is bounded and the server is stopped afterwards.
"""
from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Iterator

COMFYUI_PATH = os.environ.get("COMFYUI_PATH")
COMFYUI_PYTHON = os.environ.get("COMFYUI_PYTHON", sys.executable)
STARTUP_S = 240
PROMPT_S = 300

# the tiny model and the test-only nodes every real-ComfyUI test installs
TINY = "tiny_fademem.safetensors"
TEXT_SEED, TEXT_LEN, TEXT_DIM = 5, 16, 32

HELPER = f'''
import torch


class FadeMemTestConditioning:
    """Test only: a seeded random CONDITIONING [1, length, dim]."""

    CATEGORY = "FadeMem/testing"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {{"required": {{"seed": ("INT", {{"default": 0, "min": 0, "max": 2**31}}),
                             "length": ("INT", {{"default": {TEXT_LEN}, "min": 1, "max": 512}}),
                             "dim": ("INT", {{"default": {TEXT_DIM}, "min": 1, "max": 4096}})}}}}

    def make(self, seed, length, dim):
        g = torch.Generator().manual_seed(seed)
        return ([[torch.randn(1, length, dim, generator=g), {{"pooled_output": None}}]],)


class FadeMemTestImages:
    """Test only: seeded random video frames, an IMAGE [frames, height, width, 3] in 0..1."""

    CATEGORY = "FadeMem/testing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {{"required": {{"seed": ("INT", {{"default": 0, "min": 0, "max": 2**31}}),
                             "frames": ("INT", {{"default": 9, "min": 1, "max": 64}}),
                             "width": ("INT", {{"default": 64, "min": 8, "max": 512}}),
                             "height": ("INT", {{"default": 32, "min": 8, "max": 512}})}}}}

    def make(self, seed, frames, width, height):
        g = torch.Generator().manual_seed(seed)
        return (torch.rand(frames, height, width, 3, generator=g),)


class FadeMemTestTinyVAE:
    """Test only: a tiny random diffusers Wan VAE as a VAE (the streaming node drives one as it
    is; the real Wan VAE from core Load VAE: tests/test_comfy_streaming.py)."""

    CATEGORY = "FadeMem/testing"
    RETURN_TYPES = ("VAE",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {{"required": {{"seed": ("INT", {{"default": 0, "min": 0, "max": 2**31}})}}}}

    def make(self, seed):
        from fademem_core.rollout.vae_testing import tiny_wan_vae

        return (tiny_wan_vae(seed),)


NODE_CLASS_MAPPINGS = {{"FadeMemTestConditioning": FadeMemTestConditioning,
                       "FadeMemTestImages": FadeMemTestImages,
                       "FadeMemTestTinyVAE": FadeMemTestTinyVAE}}
'''


def tiny_graph(length: int = 25) -> dict:
    """The tiny model, a seeded prompt and FadeMem Cache(4) into FadeMem Sampler -> SaveLatent
    (nodes "1".."5"; 64x32, chunk 3, 2 steps)."""
    return {
        "1": {"class_type": "FadeMemModelLoader",
              "inputs": {"model_name": TINY, "lora_name": "None", "lora_strength": 1.0, "weight_dtype": "default",
                         "weights": "auto", "lora_alpha": 0.0}},
        "2": {"class_type": "FadeMemTestConditioning",
              "inputs": {"seed": TEXT_SEED, "length": TEXT_LEN, "dim": TEXT_DIM}},
        "3": {"class_type": "FadeMemCache",
              "inputs": {"budget": 4, "beta": 0.3, "anchor": True, "operator": "weighted_average",
                         "positions": "absolute"}},
        "4": {"class_type": "FadeMemSampler",
              "inputs": {"model": ["1", 0], "positive": ["2", 0], "cache": ["3", 0], "width": 64, "height": 32,
                         "length": length, "chunk": 3, "steps": 2, "shift": 5.0, "seed": 11,
                         "context_noise": 0.0, "context_input": "clean", "switch": "auto"}},
        "5": {"class_type": "SaveLatent", "inputs": {"samples": ["4", 0], "filename_prefix": "fademem_test/tiny"}},
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Comfy:
    def __init__(self, base: Path, port: int, proc: subprocess.Popen, log: Path):
        self.base, self.port, self.proc, self.log = base, port, proc, log
        self.url = f"http://127.0.0.1:{port}"

    def get(self, path: str, timeout: float = 30):
        try:
            with urllib.request.urlopen(self.url + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def get_json(self, path: str):
        status, body = self.get(path)
        return status, json.loads(body)

    def post_json(self, path: str, data: dict):
        req = urllib.request.Request(self.url + path, data=json.dumps(data).encode(),
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def run(self, graph: dict, timeout: float = PROMPT_S) -> dict:
        """Queue ``graph``; return its /history entry once it finished (bounded wait)."""
        status, body = self.post_json("/prompt", {"prompt": graph, "client_id": str(uuid.uuid4())})
        assert status == 200, f"/prompt refused the graph: {body}\n{self.log_tail()}"
        return self.wait(body["prompt_id"], timeout)

    def wait(self, prompt_id: str, timeout: float = PROMPT_S) -> dict:
        """The /history entry of ``prompt_id`` once it finished (bounded wait)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"ComfyUI died:\n{self.log_tail()}"
            _, history = self.get_json(f"/history/{prompt_id}")
            entry = history.get(prompt_id)
            if entry and entry.get("status", {}).get("completed") is not None and (
                    entry["status"]["status_str"] in ("success", "error")):
                return entry
            time.sleep(0.5)
        raise AssertionError(f"prompt {prompt_id} did not finish in {timeout} s\n{self.log_tail()}")


def make_base(base: Path, pack: Path, helpers: str, tiny_name: str) -> Path:
    """A --base-directory: the pack linked as custom_nodes/fademem, test-only nodes (the source
    ``helpers``) in custom_nodes/fademem_test_helpers, and the tiny random Wan as a diffusion model."""
    from fademem_core.model.loading import save_model, tiny_model

    nodes = base / "custom_nodes"
    nodes.mkdir()
    (nodes / "fademem").symlink_to(pack, target_is_directory=True)
    (nodes / "fademem_test_helpers").mkdir()
    (nodes / "fademem_test_helpers" / "__init__.py").write_text(helpers)
    save_model(tiny_model(0), base / "models" / "diffusion_models" / tiny_name)
    return base


@contextlib.contextmanager
def start_comfy(base: Path) -> Iterator[Comfy]:
    """ComfyUI on ``base`` (which holds custom_nodes/, models/ ...), stopped on exit."""
    (base / "user").mkdir(exist_ok=True)
    port = free_port()
    log = base / "comfyui.log"
    cmd = [COMFYUI_PYTHON, "main.py", "--cpu", "--listen", "127.0.0.1", "--port", str(port),
           "--base-directory", str(base), "--user-directory", str(base / "user"),
           "--database-url", "sqlite:///:memory:", "--disable-auto-launch"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COMFYUI_PATH")}
    env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=COMFYUI_PATH, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Comfy(base, port, proc, log)
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"ComfyUI exited with {proc.returncode}:\n{server.log_tail()}")
            try:
                if server.get("/system_stats", timeout=5)[0] == 200:
                    break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"ComfyUI did not answer within {STARTUP_S} s:\n{server.log_tail()}")
            time.sleep(1)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        print(f"\n--- ComfyUI log tail ({log}) ---\n{server.log_tail(25)}")
