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
    # chance levels: family 1/4, class 1/6; a frame of pure noise has residual ~1
    assert np.mean(fam_ok) >= FAMILY_MIN, fam_ok
    assert cls_n >= 20 and cls_ok / cls_n >= CLASS_MIN, (cls_ok, cls_n)
    assert np.mean(phantom) <= PHANTOM_MAX, phantom
    assert np.mean(resid) <= RESIDUAL_MAX, resid


def test_prompt_controls_the_class(model) -> None:
    # same rollout settings, prompts that differ only in sprite A's class (3 samples each)
    a = world.prompt_embedding(0, (0, None))
    b = world.prompt_embedding(0, (3, None))
    z = generate(model, torch.cat([a] * 3 + [b] * 3), SinkWindow(sink=3, window=12), 12, 64, 64, seed=1)
    got = {0: [], 3: []}
    for i, v in enumerate(z):
        r = probes.read_frames(v)
        got[0 if i < 3 else 3].extend(r.cls[r.visibility[:, 0] >= 0.5, 0].tolist())
    assert len(got[0]) >= 5 and len(got[3]) >= 5, got
    assert np.mean(np.array(got[0]) == 0) > 0.6 and np.mean(np.array(got[3]) == 3) > 0.6, got


FAMILY_MIN = 0.8
CLASS_MIN = 0.7
PHANTOM_MAX = 0.2
RESIDUAL_MAX = 0.05
