"""The training loops: every chunk trained against the memory, loss falls, own chunks committed."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fademem_core.memory.policies import FadeMem, FullCache
from fademem_core.tinyworld import loop
from fademem_core.tinyworld.losses import CONTEXT_NOISE


def _parts(lr: float = 1e-3, seed: int = 0, batch: int = 2, frames: int = 9):
    model = loop.start_model(None, 0)
    ema = loop.Ema(model.transformer, 0.9)
    opt = torch.optim.AdamW(model.transformer.parameters(), lr=lr)
    clips, text = loop.make_episode(np.random.default_rng(seed), batch, frames, model.text_dim)
    return model, ema, opt, clips, text


@pytest.mark.parametrize("policy", [FullCache(), FadeMem(budget=3, beta=0.3)])
def test_episode_trains_every_chunk_against_the_memory(policy) -> None:
    model, ema, opt, clips, text = _parts(frames=15)
    before = {k: v.clone() for k, v in model.transformer.state_dict().items()}
    gen = torch.Generator().manual_seed(0)
    losses = loop.walk_episode(model, ema, opt, clips, text, policy, gen, lambda step: 1e-3)
    assert len(losses) == 5 and all(np.isfinite(losses))  # one step per chunk of 3
    after = model.transformer.state_dict()
    for name in ("condition_embedder.text_embedder.linear_1.weight", "blocks.0.attn1.to_k.weight",
                 "blocks.3.attn1.to_v.weight", "proj_out.weight"):
        assert not torch.equal(before[name], after[name]), name  # text and memory paths train
    assert ema.steps == 5


def test_training_lowers_the_loss_on_a_fixed_episode() -> None:
    model, ema, opt, clips, text = _parts(lr=3e-3, seed=1, batch=4)
    first = last = None
    for i in range(8):
        gen = torch.Generator().manual_seed(0)  # the same noise every pass
        losses = loop.walk_episode(model, ema, opt, clips, text, FullCache(), gen, lambda step: 3e-3)
        first = np.mean(losses) if first is None else first
        last = np.mean(losses)
    assert last < 0.7 * first, (first, last)


@pytest.mark.parametrize("own", [0.0, 1.0])
def test_own_chunks_are_what_the_walk_commits(monkeypatch, own) -> None:
    model, ema, opt, clips, text = _parts(seed=4)
    sampled, committed, tops = [], [], []
    real_own, real_commit = loop.own_chunk, loop.commit_chunk

    def spy_own(*a):
        out = real_own(*a)
        sampled.append(out)
        return out

    def spy_commit(model_, clip, *a):
        committed.append(clip)
        tops.append(a[-1])
        return real_commit(model_, clip, *a)

    monkeypatch.setattr(loop, "own_chunk", spy_own)
    monkeypatch.setattr(loop, "commit_chunk", spy_commit)
    losses = loop.walk_episode(model, ema, opt, clips, text, FullCache(), torch.Generator().manual_seed(0),
                               lambda step: 1e-3, own=own, context_noise=0.25)
    assert len(losses) == 3 and len(committed) == 3 and tops == [0.25] * 3
    if own:
        assert len(sampled) == 3 and all(c is s for c, s in zip(committed, sampled))
        assert all(not torch.equal(c, clips[:, :, 3 * i:3 * i + 3]) for i, c in enumerate(committed))
    else:
        assert not sampled
        assert all(torch.equal(c, clips[:, :, 3 * i:3 * i + 3]) for i, c in enumerate(committed))


def test_the_walks_context_noise_changes_what_later_chunks_see() -> None:
    def walk(top: float) -> list[float]:
        model, ema, opt, clips, text = _parts(seed=5)
        return loop.walk_episode(model, ema, opt, clips, text, FullCache(), torch.Generator().manual_seed(0),
                                 lambda step: 1e-3, context_noise=top)

    default, other = walk(CONTEXT_NOISE), walk(0.6)
    assert default[0] == other[0]  # the first chunk sees no memory
    assert default[1:] != pytest.approx(other[1:], rel=1e-5)


def test_lr_warms_up_then_falls_to_a_tenth() -> None:
    total, peak = 1000, 2e-3
    lr = [loop.lr_at(s, total, peak) for s in range(total + 50)]
    assert lr[0] == pytest.approx(peak / 100) and lr[99] == pytest.approx(peak)  # warm-up: 100 steps
    assert lr[100] == pytest.approx(peak) and lr[total] == pytest.approx(peak / 10)
    assert lr[-1] == pytest.approx(peak / 10) and all(a >= b for a, b in zip(lr[99:], lr[100:]))
    mid = 100 + 450  # halfway through the cosine: 0.1 + 0.9 * 0.5
    assert lr[mid] == pytest.approx(peak * 0.55)
