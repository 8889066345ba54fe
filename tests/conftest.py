"""Fixtures shared by the test modules; the helpers they use live in ``tests/support/``.

Helpers are imported by their full name (``from tests.support.pack import load_pack``): pyproject's
pytest config puts the repository root on ``sys.path`` once (``pythonpath = ["."]``), so no test
depends on its own folder being importable.  Everything here is built in-process from random
weights: no download.
"""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def model():
    """The tiny random causal Wan (``tiny_model(seed=0)``), fresh for every test module."""
    from fademem_core.model.loading import tiny_model

    return tiny_model(seed=0)


@pytest.fixture(scope="module")
def world_model():
    """A tiny-world architecture model (``spec.init_transformer(0)``) moved off its
    zero-initialised output layers by seeded noise, so that its outputs differ by input."""
    import torch

    from fademem_core.model.causal_wan import CausalWan
    from fademem_core.tinyworld.spec import init_transformer

    tr = init_transformer(0)
    with torch.no_grad():
        for p in tr.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    return CausalWan(tr)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """That tiny model written as a safetensors checkpoint."""
    from fademem_core.model.loading import save_model, tiny_model

    return save_model(tiny_model(seed=0), tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


@pytest.fixture(scope="session")
def tiny_wan_dir(tmp_path_factory) -> Path:
    """A diffusers-format Wan folder: tiny umT5 text encoder, tokenizer and Wan VAE."""
    from tests.support.tiny_assets import write_tiny_wan_dir

    return write_tiny_wan_dir(tmp_path_factory.mktemp("wan"))


@pytest.fixture(scope="module")
def tiny_vae():
    """A reduced-width diffusers ``AutoencoderKLWan`` (random weights, the real layer structure)."""
    from tests.support.tiny_assets import make_vae

    return make_vae()


@pytest.fixture(scope="module")
def comfy(tmp_path_factory):
    """A real ComfyUI (needs COMFYUI_PATH) with the pack, the test-only nodes and the tiny model."""
    from tests.support.comfy_host import HELPER, TINY, make_base, start_comfy
    from tests.support.pack import ROOT

    base = make_base(tmp_path_factory.mktemp("comfy_base"), ROOT, HELPER, TINY)
    (base / "models" / "vae").mkdir(parents=True)  # exists at start-up: the list sees new files
    with start_comfy(base) as server:
        yield server
