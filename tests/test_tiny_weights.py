"""The shipped tiny-world weights: load, run in the engine, and draw the prompted scene."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors import safe_open

from fademem_core import FullCache, SinkWindow, generate, load_model
from fademem_core.tinyworld import WEIGHTS, probes, world
from fademem_core.tinyworld.reference import reference_rollout
from fademem_core.tinyworld.train import MODEL_CONFIG

RECORD = WEIGHTS.with_suffix(".json")


@pytest.fixture(scope="module")
def model():
    return load_model(WEIGHTS, device="cpu", dtype=torch.float32)


def test_weights_are_small_and_documented() -> None:
    assert WEIGHTS.is_file() and WEIGHTS.stat().st_size < 5 * 2**20
    rec = json.loads(RECORD.read_text())
    assert rec["config"] == MODEL_CONFIG
    steps = rec["training"]["steps"]
    assert steps >= 100 and f"--steps {steps}" in rec["command"]
    assert rec["training"]["clip_frames"] <= 21 and rec["training"]["chunk"] == 3
    with safe_open(str(WEIGHTS), "pt") as f:
        stored = json.loads(f.metadata()["fademem_config"])
    assert stored == MODEL_CONFIG


def test_loads_with_the_recorded_architecture(model) -> None:
    assert model.num_layers == MODEL_CONFIG["num_layers"]
    assert model.heads == MODEL_CONFIG["num_attention_heads"]
    assert model.head_dim == MODEL_CONFIG["attention_head_dim"]
    assert model.text_dim == MODEL_CONFIG["text_dim"]


def test_engine_rollout_equals_the_training_forward(model) -> None:
    # independent reference: recomputing the whole history under the block-causal mask
    text = torch.cat([world.scene_prompt(world.sample_scene(i)) for i in (1, 2)])
    a = generate(model, text, FullCache(), 9, 64, 64, seed=5)
    b = reference_rollout(model.transformer, text, 9, seed=5)
    torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-4)


def test_rollout_draws_the_prompted_identities_in_the_first_chunks(model) -> None:
    scenes = [world.sample_scene(500 + i) for i in range(12)]
    text = torch.cat([world.scene_prompt(s) for s in scenes])
    z = generate(model, text, SinkWindow(sink=3, window=12), 9, 64, 64, seed=0)
    fam_ok, cls_ok, cls_n, phantom, resid = [], 0, 0, [], []
    for s, v in zip(scenes, z):
        r = probes.read_frames(v)
        fam_ok.append(np.mean(r.params.family == s.family))
        resid.append(r.residual.mean())
        for slot, want in enumerate(s.classes):
            seen = r.visibility[:, slot] >= 0.5
            if want is None:
                phantom.append(np.mean(seen))
            else:
                cls_ok += int(np.sum(r.cls[seen, slot] == want))
                cls_n += int(np.sum(seen))
    # chance level for the class is 1/6; a frame of pure noise has residual ~1.  The background
    # family is NOT asserted: the shipped model does not render the texture channels well
    # enough for the family probe (about chance, see docs/sections/consistency.md).
    assert len(fam_ok) == len(scenes)
    assert cls_n >= 20 and cls_ok / cls_n >= CLASS_MIN, (cls_ok, cls_n)
    assert np.mean(phantom) <= PHANTOM_MAX, phantom
    assert np.mean(resid) <= RESIDUAL_MAX, resid


# measured on the shipped weights (2 CPU cores): class 0.62 over 85 seen sprite-frames,
# phantom 0.0, residual 0.15; thresholds leave a margin for BLAS differences
CLASS_MIN = 0.45
PHANTOM_MAX = 0.2
RESIDUAL_MAX = 0.3
