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


def send_event(event: str, data: dict) -> None:
    """Send a server event to the browser that queued the running prompt (no-op outside
    ComfyUI); the pack's web extension listens for it with ``api.addEventListener``."""
    server = _comfy("server")
    instance = getattr(getattr(server, "PromptServer", None), "instance", None) if server else None
    if instance is not None and hasattr(instance, "send_sync"):
        instance.send_sync(event, data, getattr(instance, "client_id", None))


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


# --------------------------------------------------------------------------- interruption
def interrupt_exception() -> tuple[type[BaseException], ...]:
    """ComfyUI's Cancel exception as a one-tuple (for ``except``), empty outside ComfyUI."""
    mm = _comfy("comfy.model_management")
    exc = getattr(mm, "InterruptProcessingException", None) if mm is not None else None
    return (exc,) if exc is not None else ()


def pass_interrupt_on() -> None:
    """Set ComfyUI's Cancel flag again, so the nodes after ours stop as well (no-op outside)."""
    mm = _comfy("comfy.model_management")
    if mm is not None:
        mm.interrupt_current_processing(True)


# --------------------------------------------------------------------------- saving videos
def output_directory() -> str:
    """ComfyUI's output folder; outside ComfyUI ``$FADEMEM_OUTPUT_DIR`` (default ``./output``)."""
    folder_paths = _comfy("folder_paths")
    if folder_paths is not None and hasattr(folder_paths, "get_output_directory"):
        return folder_paths.get_output_directory()
    return os.environ.get("FADEMEM_OUTPUT_DIR", os.path.join(os.getcwd(), "output"))


def next_video_path(filename_prefix: str, width: int, height: int) -> str:
    """The path core Save Video would use next: ``<output>/<prefix>_00001_.mp4``, counting up.

    Inside ComfyUI the name comes from ``folder_paths.get_save_image_path`` (so ``%date%``-style
    variables, subfolders and the output-folder guard behave as in core); outside, the same
    ``<prefix>_<counter:05>_`` rule is applied to the fallback output folder.
    """
    out = output_directory()
    folder_paths = _comfy("folder_paths")
    if folder_paths is not None and hasattr(folder_paths, "get_save_image_path"):
        folder, name, counter, _sub, _prefix = folder_paths.get_save_image_path(
            filename_prefix, out, width, height)
        return os.path.join(folder, f"{name}_{counter:05}_.mp4")
    folder = os.path.join(out, os.path.dirname(os.path.normpath(filename_prefix)))
    name = os.path.basename(os.path.normpath(filename_prefix))
    os.makedirs(folder, exist_ok=True)
    used = [int(f[len(name) + 1:].split("_")[0]) for f in os.listdir(folder)
            if f.startswith(name + "_") and f[len(name) + 1:].split("_")[0].isdigit()]
    return os.path.join(folder, f"{name}_{max(used, default=0) + 1:05}_.mp4")


def temp_directory() -> str:
    """ComfyUI's temp folder (emptied at its start); outside ComfyUI ``$FADEMEM_TEMP_DIR``
    (default ``<system temp>/fademem``)."""
    folder_paths = _comfy("folder_paths")
    if folder_paths is not None and hasattr(folder_paths, "get_temp_directory"):
        return folder_paths.get_temp_directory()
    import tempfile

    return os.environ.get("FADEMEM_TEMP_DIR", os.path.join(tempfile.gettempdir(), "fademem"))


def live_folder() -> str:
    """A new, empty folder for one run's live chunk files: ``<temp>/fademem_live/run_*``."""
    import tempfile

    root = os.path.join(temp_directory(), "fademem_live")
    os.makedirs(root, exist_ok=True)
    return tempfile.mkdtemp(prefix="run_", dir=root)


def view_entry(path: str) -> dict[str, str]:
    """The ``{"filename", "subfolder", "type"}`` entry ``/view`` serves ``path`` by: type
    ``"temp"`` for a file in the temp folder, else ``"output"``."""
    kind, root = "output", output_directory()
    temp = temp_directory()
    if os.path.commonpath([os.path.abspath(path), os.path.abspath(temp)]) == os.path.abspath(temp):
        kind, root = "temp", temp
    rel = os.path.relpath(path, root)
    return {"filename": os.path.basename(rel), "subfolder": os.path.dirname(rel).replace(os.sep, "/"),
            "type": kind}


def saved_result(path: str) -> dict[str, str]:
    """The ``{"filename", "subfolder", "type": "output"}`` entry the frontend shows a file by."""
    return {**view_entry(path), "type": "output"}


def video_metadata(prompt: Any, extra_pnginfo: Any) -> dict[str, str]:
    """Container tags as core Save Video writes them: the prompt and the workflow as JSON, unless
    ComfyUI runs with ``--disable-metadata``."""
    import json

    cli_args = _comfy("comfy.cli_args")
    if cli_args is not None and getattr(cli_args.args, "disable_metadata", False):
        return {}
    tags: dict[str, str] = {}
    if isinstance(extra_pnginfo, dict):
        tags.update({k: json.dumps(v) for k, v in extra_pnginfo.items()})
    if prompt is not None:
        tags["prompt"] = json.dumps(prompt)
    return tags


# --------------------------------------------------------------------------- core models
def load_models(patchers: list[Any], reserve_bytes: int | None = None) -> None:
    """Have ComfyUI load ``patchers`` onto the compute device together, fully, with their
    patches (LoRA) applied, keeping ``reserve_bytes`` free beside them (None: unload the rest).

    One call for everything a run needs, so loading one model never evicts another."""
    mm = _comfy("comfy.model_management")
    if mm is None or not patchers:
        return
    if reserve_bytes is None:
        mm.unload_all_models()
    # force_full_load: every weight on the device and patched (no lazily patched low-VRAM layers)
    mm.load_models_gpu(list(patchers), memory_required=int(reserve_bytes or 0), force_full_load=True)


def is_core_model(model: Any) -> bool:
    """True for a core ``MODEL`` (a ModelPatcher: ``.model.diffusion_model`` plus its patches)."""
    return hasattr(model, "patches") and hasattr(getattr(model, "model", None), "diffusion_model")


def core_model_weights(patcher: Any) -> tuple[dict[str, Any], Any]:
    """The weights a core ``MODEL`` holds now (its own tensors, no copies; patched once
    :func:`load_models` loaded it) and the dtype ComfyUI computes it in (None: the weights')."""
    model = patcher.model
    return model.diffusion_model.state_dict(), getattr(model, "manual_cast_dtype", None)


# --------------------------------------------------------------------------- core VAE
def vae_weights(vae: Any, reserve_bytes: int | None = None, together: tuple[Any, ...] = ()) -> dict[str, Any]:
    """The weights of a core ``VAE`` (Load VAE) in their original layout, on its compute device.

    ComfyUI is asked to load the VAE first (with the core models in ``together``, so neither
    evicts the other), keeping ``reserve_bytes`` free beside it (the KV memory the rollout will
    allocate), so its model management counts the memory and the tensors handed out are the
    ones on the device (not copies).
    """
    patcher = getattr(vae, "patcher", None)
    load_models(([patcher] if patcher is not None else []) + list(together), reserve_bytes or 0)
    return vae.first_stage_model.state_dict()
