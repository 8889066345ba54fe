"""The only module of the pack that touches ComfyUI's runtime services.

Every ComfyUI import happens lazily inside a function, and each service has a plain fallback so
the node classes run (and are tested) in plain Python without ComfyUI: no progress bar, no
interruption, CPU device, model folders under ``$FADEMEM_MODELS_DIR`` (default ``./models``).
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable

log = logging.getLogger("fademem.nodes")

# ComfyUI folder name -> sub-folders searched by the fallback (ComfyUI maps "diffusion_models"
# onto both models/unet and models/diffusion_models, and "text_encoders" onto models/clip too).
_FALLBACK_FOLDERS = {
    "diffusion_models": ("diffusion_models", "unet"),
    "loras": ("loras",),
    "text_encoders": ("text_encoders", "clip"),
    "vae": ("vae",),
}
_MODEL_EXTENSIONS = (".safetensors", ".pt", ".pth", ".ckpt", ".bin", ".sft")


def _comfy(module: str) -> Any | None:
    """Import a ComfyUI module if we run inside ComfyUI, else None."""
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        return None


def in_comfyui() -> bool:
    """True when ComfyUI's model management is importable (we run inside ComfyUI)."""
    return _comfy("comfy.model_management") is not None


# --------------------------------------------------------------------------- model folders
def models_root() -> str:
    """Root of the fallback model folders (outside ComfyUI)."""
    return os.environ.get("FADEMEM_MODELS_DIR", os.path.join(os.getcwd(), "models"))


def list_models(folder: str) -> list[str]:
    """File names ComfyUI lists for ``folder`` ("diffusion_models", "loras", ...), sorted."""
    folder_paths = _comfy("folder_paths")
    if folder_paths is not None and hasattr(folder_paths, "get_filename_list"):
        return list(folder_paths.get_filename_list(folder))
    names: set[str] = set()
    for sub in _FALLBACK_FOLDERS.get(folder, (folder,)):
        base = os.path.join(models_root(), sub)
        for dirpath, _dirs, files in os.walk(base, followlinks=True):
            for f in files:
                if f.lower().endswith(_MODEL_EXTENSIONS):
                    names.add(os.path.relpath(os.path.join(dirpath, f), base).replace(os.sep, "/"))
    return sorted(names)


def model_path(folder: str, name: str) -> str:
    """Full path of ``name`` in ``folder``; FileNotFoundError naming both when it is missing."""
    folder_paths = _comfy("folder_paths")
    if folder_paths is not None and hasattr(folder_paths, "get_full_path"):
        path = folder_paths.get_full_path(folder, name)
        if path is None:
            raise FileNotFoundError(f"model file {name!r} not found in ComfyUI's {folder!r} folders")
        return path
    for sub in _FALLBACK_FOLDERS.get(folder, (folder,)):
        path = os.path.join(models_root(), sub, name)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        f"model file {name!r} not found in {folder!r} under {models_root()!r} (set FADEMEM_MODELS_DIR)"
    )


# --------------------------------------------------------------------------- devices and memory
def torch_device():
    """The device ComfyUI computes on (CPU outside ComfyUI)."""
    import torch

    mm = _comfy("comfy.model_management")
    return mm.get_torch_device() if mm is not None else torch.device("cpu")


def output_device():
    """Where node outputs (latents, images) live: ComfyUI's intermediate device, else CPU."""
    import torch

    mm = _comfy("comfy.model_management")
    return mm.intermediate_device() if mm is not None else torch.device("cpu")


def free_vram_for_new_model() -> None:
    """Unload every model ComfyUI holds and empty the allocator cache before a large load."""
    mm = _comfy("comfy.model_management")
    if mm is None:
        return
    mm.unload_all_models()
    mm.soft_empty_cache()


def free_memory(nbytes: int | None) -> None:
    """Make ``nbytes`` free on the compute device by unloading ComfyUI's models (all if None)."""
    mm = _comfy("comfy.model_management")
    if mm is None:
        return
    if nbytes is None:
        mm.unload_all_models()
    else:
        mm.free_memory(int(nbytes), mm.get_torch_device())
    mm.soft_empty_cache()


def soft_empty_cache() -> None:
    """Return freed accelerator memory to the driver (no-op outside ComfyUI)."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.soft_empty_cache()


def check_interrupted() -> None:
    """Raise ComfyUI's interruption exception if the user pressed Cancel (no-op outside)."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.throw_exception_if_processing_interrupted()


# --------------------------------------------------------------------------- progress and text
class _PlainProgress:
    """Progress fallback: remembers the last update (used by tests and the CLI-less path)."""

    def __init__(self, total: int):
        self.total = total
        self.value = 0
        self.previews = 0

    def update_absolute(self, value: int, total: int | None = None, preview: Any = None) -> None:
        self.value = value
        if total is not None:
            self.total = total
        if preview is not None:
            self.previews += 1


def progress_bar(total: int):
    """ComfyUI's ProgressBar(total) inside ComfyUI, else a plain recorder with the same method."""
    utils = _comfy("comfy.utils")
    if utils is not None and hasattr(utils, "ProgressBar"):
        return utils.ProgressBar(total)
    return _PlainProgress(total)


def preview_tuple(image) -> tuple[str, Any, int]:
    """The ("JPEG", PIL image, max size) triple ProgressBar.update_absolute takes as preview."""
    return ("JPEG", image, 512)


def latent_rgb_factors() -> tuple[list[list[float]], list[float]] | None:
    """ComfyUI's Wan 2.1 latent -> RGB projection (for model-space latents), if available."""
    formats = _comfy("comfy.latent_formats")
    fmt = getattr(formats, "Wan21", None) if formats is not None else None
    if fmt is None:
        return None
    f = fmt()
    factors = getattr(f, "latent_rgb_factors", None)
    if factors is None:
        return None
    bias = getattr(f, "latent_rgb_factors_bias", None) or [0.0, 0.0, 0.0]
    return factors, bias


def send_text(text: str, node_id: str | None) -> None:
    """Show ``text`` on the node (ComfyUI's progress text); logged outside ComfyUI."""
    server = _comfy("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None) if server else None
    if instance is not None and node_id is not None and hasattr(instance, "send_progress_text"):
        instance.send_progress_text(text, node_id)
    else:
        log.info("%s", text)


# --------------------------------------------------------------------------- HTTP routes
def register_get_route(path: str, handler: Callable[[dict[str, str]], tuple[int, dict]]) -> bool:
    """Register GET ``path`` on ComfyUI's server; ``handler(query) -> (status, json)``.

    Returns False (and does nothing) outside ComfyUI.  The handler runs in the event loop's
    default thread pool, so a request never holds up the server's other requests.
    """
    server = _comfy("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None) if server else None
    routes = getattr(instance, "routes", None)
    if routes is None:
        return False
    from aiohttp import web  # ComfyUI's own dependency

    @routes.get(path)
    async def _get(request):  # noqa: ANN001 - aiohttp request
        import asyncio

        query = dict(request.rel_url.query)
        status, body = await asyncio.get_running_loop().run_in_executor(None, handler, query)
        return web.json_response(body, status=status)

    return True
