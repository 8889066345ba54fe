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


def test_first_chunk_steps_follow_chunks_at_the_drawn_share(monkeypatch) -> None:
    model, ema, opt, clips, text = _parts(seed=6, frames=15)
    taken = []
    real = loop.first_chunk_step

    def spy(model_, ema_, opt_, clips_, text_, gen_, lr, *a):
        taken.append((clips_, lr))
        return real(model_, ema_, opt_, clips_, text_, gen_, lr, *a)

    monkeypatch.setattr(loop, "first_chunk_step", spy)
    lrs = [1e-3, 2e-3, 3e-3, 4e-3, 5e-3]
    losses = loop.walk_episode(model, ema, opt, clips, text, FullCache(), torch.Generator().manual_seed(0),
                               lambda step: lrs[step], first=1.0)
    assert len(losses) == 5 and ema.steps == 10  # a chunk's step, then one on the first chunk, 5 times
    assert [lr for _, lr in taken] == lrs and all(c is clips for c, _ in taken)
    taken.clear()
    m, e, o, c, t = _parts(seed=6, frames=15)
    loop.walk_episode(m, e, o, c, t, FullCache(), torch.Generator().manual_seed(0), lambda step: 1e-3)
    assert not taken and e.steps == 5  # the default takes none
    counts = []
    for seed in range(20):
        m, e, o, c, t = _parts(seed=6, frames=15)
        loop.walk_episode(m, e, o, c, t, FullCache(), torch.Generator().manual_seed(seed), lambda step: 1e-3,
                          first=0.4)
        counts.append(e.steps - 5)
    share = np.mean(counts) / 5  # 100 draws at 0.4: sigma 0.049
    assert abs(share - 0.4) < 4 * 0.049, counts


def test_a_first_chunk_step_descends_the_loss_of_the_first_chunk_seen_alone() -> None:
    model, ema, opt, clips, text = _parts(seed=7, frames=9)
    gen = torch.Generator().manual_seed(3)
    state = gen.get_state()
    loss = loop.first_chunk_step(model, ema, opt, clips, text, gen, 1e-3, context_noise=0.0)
    # written out: one sigma, no context noise drawn twice, then the noise; the chunk sees nothing
    # but itself, so its velocity is one plain forward of the noisy chunk with an empty memory
    ref_model, _, _, _, _ = _parts(seed=7, frames=9)
    g = torch.Generator().manual_seed(0)
    g.set_state(state)
    u = torch.rand(2, generator=g, dtype=torch.float64)
    pick = torch.rand(2, generator=g) < 0.75
    sig = torch.where(pick, 5 * u / (1 + 4 * u), u).clamp(1e-3, 1.0).float()
    torch.rand(2, 1, generator=g), torch.rand(2, 1, generator=g)
    part = clips[:, :, :3]
    noise = torch.randn(part.shape, generator=g)
    s = sig[:, None, None, None, None]
    cache = FullCache().make_cache(ref_model.geometry(2, 64, 64), 3, max_frames=3)
    with torch.no_grad():
        v = ref_model.forward_chunk((1 - s) * part + s * noise, sig * 1000.0, ref_model.encode_text(text),
                                    cache, cache.begin_chunk(0, 3), write=False)
    cache.close()
    w = torch.tensor([1.0] * 6 + [4.0] * 10)
    want = ((((v - (noise - part)) ** 2).mean(dim=(0, 2, 3, 4)) * w).sum() / w.sum()).item()
    assert loss == pytest.approx(want, rel=1e-4, abs=1e-6) and ema.steps == 1


def test_lr_warms_up_then_falls_to_a_tenth() -> None:
    total, peak = 1000, 2e-3
    lr = [loop.lr_at(s, total, peak) for s in range(total + 50)]
    assert lr[0] == pytest.approx(peak / 100) and lr[99] == pytest.approx(peak)  # warm-up: 100 steps
    assert lr[100] == pytest.approx(peak) and lr[total] == pytest.approx(peak / 10)
    assert lr[-1] == pytest.approx(peak / 10) and all(a >= b for a, b in zip(lr[99:], lr[100:]))
    mid = 100 + 450  # halfway through the cosine: 0.1 + 0.9 * 0.5
    assert lr[mid] == pytest.approx(peak * 0.55)
