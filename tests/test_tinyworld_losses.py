"""The tiny world model's losses and noise laws: the laws as written, the memory and the context seen."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from fademem_core.tinyworld import losses as tl
from fademem_core.tinyworld.loop import make_episode, start_model
from fademem_core.tinyworld.spec import CHUNK, warp


def test_noise_levels_follow_the_shifted_uniform_law() -> None:
    gen = torch.Generator().manual_seed(0)
    sig = tl.noise_levels(gen, 20000).double()
    assert float(sig.min()) >= 1e-3 and float(sig.max()) <= 1.0
    # the 75 % shifted share: P(sigma <= warp(0.5)) = P(u <= 0.5) = 0.5 for that share, and for
    # the uniform share P(sigma <= 5/6) = 5/6: 0.75 * 0.5 + 0.25 * 5/6
    cut = float(warp(0.5))
    assert cut == pytest.approx(5 * 0.5 / (1 + 4 * 0.5))
    assert float((sig <= cut).double().mean()) == pytest.approx(0.75 * 0.5 + 0.25 * cut, abs=0.015)


@pytest.mark.parametrize("top", [0.0, 0.1, 0.3, 0.95])
def test_context_noise_is_uniform_up_to_its_top_and_zero_for_30_percent(top) -> None:
    shape = (400, 50)
    got = tl._context_noise(torch.Generator().manual_seed(5), shape, top)
    # the law written out: one uniform draw scaled to the top, then one draw for the zero share
    ref = torch.Generator().manual_seed(5)
    u, z = torch.rand(*shape, generator=ref), torch.rand(*shape, generator=ref)
    assert torch.equal(got, torch.where(z < 0.3, torch.zeros(shape), u * top))
    assert float(got.max()) <= top
    if top:
        assert float((got == 0).double().mean()) == pytest.approx(0.3, abs=0.01)
        assert float(got[got > 0].mean()) == pytest.approx(top / 2, rel=0.02)


@pytest.fixture(scope="module")
def moved():
    model = start_model(None, 0)
    with torch.no_grad():  # move off the zero-initialised output layers so outputs differ
        for p in model.transformer.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_windowed_loss_sees_its_memory(moved) -> None:
    clips, text = make_episode(np.random.default_rng(2), 2, 30, moved.text_dim)
    window, past = clips[:, :, 21:27], [2, 9, 14]

    def loss(mem: torch.Tensor, win: torch.Tensor) -> float:
        gen = torch.Generator().manual_seed(0)
        with torch.no_grad():
            return float(tl.teacher_forcing_loss(moved, win, text, gen, mem, 21, past))

    base = loss(clips[:, :, past], window)
    assert np.isfinite(base)
    assert loss(clips[:, :, past] + 0.5, window) != pytest.approx(base, rel=1e-4)  # memory seen
    with pytest.raises(ValueError, match="memory positions"):
        tl.teacher_forcing_loss(moved, window, text, torch.Generator(), clips[:, :, past], 21, [2, 9])


def test_corrupted_context_changes_what_later_chunks_see_not_the_targets(moved) -> None:
    clips, text = make_episode(np.random.default_rng(3), 2, 9, moved.text_dim)

    def loss(**kw) -> float:
        with torch.no_grad():
            return float(tl.teacher_forcing_loss(moved, clips, text, torch.Generator().manual_seed(0), **kw))

    plain = loss()
    assert loss(corrupt=0.0) == plain  # no extra random draws when off
    assert loss(corrupt=1.0) != pytest.approx(plain, rel=1e-4)


def test_the_texture_weight_weights_the_texture_planes_of_the_loss(moved) -> None:
    """The loss with a channel weight is the weighted mean of the per-channel losses, written
    out: weighting channels 4, 5 by 3 on a pass whose error sits only there moves the loss to
    3x on that share, and the shipped weight is ``channel_weight()`` exactly."""
    clips, text = make_episode(np.random.default_rng(8), 2, 6, moved.text_dim)

    def per(weight) -> float:
        with torch.no_grad():
            return float(tl.teacher_forcing_loss(moved, clips, text, torch.Generator().manual_seed(0), weight=weight))

    assert per(tl.channel_weight()) == per(tl.CHANNEL_WEIGHT)
    one_hot = [per(torch.eye(16)[c]) for c in range(16)]  # each channel's own mean error
    w = tl.channel_weight(3.0)
    want = sum(float(w[c]) * one_hot[c] for c in range(16)) / float(w.sum())
    assert per(w) == pytest.approx(want, rel=1e-5)
    assert w[[4, 5]].tolist() == [3.0, 3.0] and w[:4].tolist() == [1.0] * 4 and w[6:].tolist() == [4.0] * 10
    with pytest.raises(ValueError, match="texture weight must be a finite number > 0, got -1"):
        tl.channel_weight(-1)


def test_the_context_noise_top_is_what_the_context_gets(moved) -> None:
    clips, text = make_episode(np.random.default_rng(6), 2, 9, moved.text_dim)

    def loss(**kw) -> float:
        with torch.no_grad():
            return float(tl.teacher_forcing_loss(moved, clips, text, torch.Generator().manual_seed(0), **kw))

    assert loss(context_noise=tl.CONTEXT_NOISE) == loss()  # the default is the constant
    # the same draws, only the context's noise scaled: a deterministic pass, so any change is it
    assert loss(context_noise=0.5) != loss() and loss(context_noise=0.0) != loss()


@pytest.mark.parametrize("first", [None, 0.7])
def test_memory_window_draws_sorted_frames_before_the_window(first) -> None:
    rng = np.random.default_rng(0)
    starts = []
    for _ in range(400):
        start, past = tl.memory_window(rng, 240, 12, 8, *(() if first is None else (first,)))
        starts.append(start)
        assert start % CHUNK == 0 and 0 <= start <= 228
        assert past == sorted(set(past)) and len(past) == min(8, start)
        assert all(0 <= p < start for p in past)
    share0 = np.mean(np.array(starts) == 0)
    want = (0.25 if first is None else first) * (1 - 1 / 77) + 1 / 77  # the share, plus uniform draws of 0
    assert abs(share0 - want) < 4 * np.sqrt(want * (1 - want) / 400)  # default: a quarter train the first chunk
    assert max(starts) > 200
