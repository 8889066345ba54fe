"""nodes/comfy.py: ComfyUI's runtime services when present, plain fallbacks when not."""
from __future__ import annotations

import sys
import types

import pytest
import torch

from tests.support.pack import Recorder, node_module

comfy = node_module("comfy")


def test_comfy_fallbacks_outside_comfyui(tmp_path, monkeypatch):
    assert not comfy.in_comfyui()
    monkeypatch.setenv("FADEMEM_MODELS_DIR", str(tmp_path))
    (tmp_path / "unet" / "sub").mkdir(parents=True)
    (tmp_path / "unet" / "sub" / "a.safetensors").write_bytes(b"x")
    (tmp_path / "unet" / "notes.txt").write_text("not a model")
    assert comfy.list_models("diffusion_models") == ["sub/a.safetensors"]
    assert comfy.model_path("diffusion_models", "sub/a.safetensors") == str(tmp_path / "unet" / "sub" / "a.safetensors")
    with pytest.raises(FileNotFoundError, match="b.safetensors"):
        comfy.model_path("diffusion_models", "b.safetensors")
    assert comfy.register_get_route("/x", lambda q: (200, {})) is False
    comfy.check_interrupted()  # no-op
    assert comfy.torch_device() == torch.device("cpu")


@pytest.fixture
def fake_comfyui(monkeypatch):
    """Stand-ins for ComfyUI's modules, to check comfy.py calls the real services' APIs."""
    log = []

    class Interrupted(Exception):
        pass

    mm = types.ModuleType("comfy.model_management")
    mm.get_torch_device = lambda: torch.device("cpu")
    mm.intermediate_device = lambda: torch.device("cpu")
    mm.unload_all_models = lambda: log.append(("unload_all",))
    mm.free_memory = lambda n, dev: log.append(("free", n))
    mm.soft_empty_cache = lambda: log.append(("empty",))
    mm.interrupted = False

    def throw():
        if mm.interrupted:
            raise Interrupted()

    mm.throw_exception_if_processing_interrupted = throw
    utils = types.ModuleType("comfy.utils")

    class ProgressBar(Recorder):
        pass

    utils.ProgressBar = ProgressBar
    folder_paths = types.ModuleType("folder_paths")
    folder_paths.get_filename_list = lambda folder: [f"{folder}.safetensors"]
    folder_paths.get_full_path = lambda folder, name: f"/m/{folder}/{name}" if name != "gone" else None
    server = types.ModuleType("server")

    class Routes:
        def get(self, path):
            def deco(fn):
                log.append(("route", path, fn))
                return fn
            return deco

    class Instance:
        routes = Routes()

        def send_progress_text(self, text, node_id):
            log.append(("text", node_id, text))

    server.PromptServer = types.SimpleNamespace(instance=Instance())
    aiohttp = types.ModuleType("aiohttp")
    aiohttp.web = types.SimpleNamespace(json_response=lambda body, status: (status, body))
    root = types.ModuleType("comfy")
    root.__path__ = []
    for name, mod in {"comfy": root, "comfy.model_management": mm, "comfy.utils": utils,
                      "folder_paths": folder_paths, "server": server, "aiohttp": aiohttp}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return types.SimpleNamespace(log=log, mm=mm, Interrupted=Interrupted, ProgressBar=ProgressBar)


def test_comfy_uses_comfyui_services_when_present(fake_comfyui):
    import asyncio

    log = fake_comfyui.log
    assert comfy.in_comfyui()
    assert comfy.list_models("loras") == ["loras.safetensors"]
    assert comfy.model_path("vae", "v.safetensors") == "/m/vae/v.safetensors"
    with pytest.raises(FileNotFoundError, match="gone"):
        comfy.model_path("vae", "gone")
    assert isinstance(comfy.progress_bar(7), fake_comfyui.ProgressBar)
    comfy.free_vram_for_new_model()
    comfy.free_memory(1234)
    comfy.free_memory(None)
    assert log == [("unload_all",), ("empty",), ("free", 1234), ("empty",), ("unload_all",), ("empty",)]
    comfy.send_text("KV 3 MiB", "5")
    assert log[-1] == ("text", "5", "KV 3 MiB")
    comfy.check_interrupted()
    fake_comfyui.mm.interrupted = True
    with pytest.raises(fake_comfyui.Interrupted):
        comfy.check_interrupted()

    routes = node_module("routes")
    assert routes.register() is True
    _, path, handler = log[-1]
    assert path == "/fademem/plan"
    request = types.SimpleNamespace(rel_url=types.SimpleNamespace(query={"frames": "9", "budget": "4"}))
    status, body = asyncio.run(handler(request))
    assert status == 200 and sum(s for _, s in body["entries"]) == 9
    bad = types.SimpleNamespace(rel_url=types.SimpleNamespace(query={"beta": "2"}))
    assert asyncio.run(handler(bad))[0] == 400


def test_route_handler_runs_off_the_event_loop_thread(fake_comfyui):
    import asyncio
    import threading

    threads = []

    def handler(query):
        threads.append(threading.get_ident())
        return 200, {"ok": True}

    assert comfy.register_get_route("/x", handler) is True
    _, _, get = fake_comfyui.log[-1]

    async def call():
        loop_thread = threading.get_ident()
        request = types.SimpleNamespace(rel_url=types.SimpleNamespace(query={}))
        return loop_thread, await get(request)

    loop_thread, (status, body) = asyncio.run(call())
    assert (status, body) == (200, {"ok": True})
    assert threads and threads[0] != loop_thread
